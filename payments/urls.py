from django.urls import path

from payments import views

app_name = "payments"
urlpatterns = [
    path("gateway/callback/", views.gateway_callback, name="gateway-callback"),
]
