import sys

from django.contrib import admin
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView

from core.faults import database_connection_lost, unavailable_response


def server_error(request):
    """A lost database connection anywhere in the request (middleware included) is a 503
    with Retry-After (core.faults); anything else the usual 500."""
    exc = sys.exc_info()[1]
    if exc is not None and database_connection_lost(exc):
        return unavailable_response(request)
    return defaults.server_error(request)


handler500 = server_error

urlpatterns = [
    # The staff UI will live at the root; until then it is the admin.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("admin/", admin.site.urls),
    path("api/", include("billing_site.api.urls")),
]
