from django.urls import path

from reports import adhoc_views, views

app_name = "reports"

urlpatterns = [
    path("", views.index, name="index"),
    path("builder/", adhoc_views.builder, name="builder"),
    path("<slug:slug>/", views.report, name="report"),
]
