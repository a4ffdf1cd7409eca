from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("<int:pk>/status/<slug:action>/", views.status, name="status"),
]
