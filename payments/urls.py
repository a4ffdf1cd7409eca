from django.urls import path

from payments import views

app_name = "payments"
urlpatterns = [
    path("gateway/callback/", views.gateway_callback, name="gateway-callback"),
    # The staff UI of payment intake.
    path("agents/", views.agents, name="agents"),
    path("registries/", views.registries, name="registries"),
    path("registries/upload/", views.registry_upload, name="registry_upload"),
    path("registries/<int:pk>/", views.registry, name="registry"),
    path("suspense/", views.suspense, name="suspense"),
    path("suspense/<int:pk>/", views.suspense_item, name="suspense_item"),
]
