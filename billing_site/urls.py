from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    # The staff UI will live at the root; until then it is the admin.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("api/", include("billing_site.api.urls")),
    # The online payment gateway's callbacks (signed; not part of the partner API).
    path("payments/", include("payments.urls")),
]
