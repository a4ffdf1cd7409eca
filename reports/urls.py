from django.urls import path

from reports import adhoc_views, sheet_views, views

app_name = "reports"

urlpatterns = [
    path("", views.index, name="index"),
    path("builder/", adhoc_views.builder, name="builder"),
    path("sheets/", sheet_views.sheets, name="sheets"),
    path("sheets/<slug:slug>/", sheet_views.sheet_import, name="sheet_import"),
    path("sheets/<slug:slug>/export/", sheet_views.sheet_export, name="sheet_export"),
    path("<slug:slug>/", views.report, name="report"),
]
