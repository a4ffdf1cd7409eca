from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("<int:pk>/", views.detail, name="request"),
    path("<int:pk>/<slug:decision>/", views.decide, name="decide"),
]
