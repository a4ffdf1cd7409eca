from django.urls import path

from ledger import views

app_name = "ledger"

urlpatterns = [
    path("accounts/<int:pk>/post/<slug:operation>/", views.post, name="post"),
    path("transactions/<int:pk>/reverse/", views.reverse, name="reverse"),
    path("holds/<int:pk>/<slug:action>/", views.hold, name="hold"),
]
