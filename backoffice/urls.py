from django.urls import path

from backoffice import views

app_name = "backoffice"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("search/", views.search, name="search"),
    path("roles/", views.roles, name="roles"),
    path("clients/", views.clients, name="clients"),
    path("clients/<int:pk>/", views.client, name="client"),
    path("accounts/<int:pk>/", views.account, name="account"),
]
