import sys

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views import defaults

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
    # The partner API first: its requests are the hot ones, and a pattern tried in vain
    # costs each of them (the staff UI's patterns are many; "api/" is one prefix for them).
    path("api/", include("billing_site.api.urls")),
    # The staff UI at the root (dashboard; anonymous users are sent to the login page).
    path("", include("backoffice.urls")),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/", include("accounts.urls")),
    path("ledger/", include("ledger.urls")),
    path("invoicing/", include("invoicing.urls")),
    path("approvals/", include("approvals.urls")),
    path("reports/", include("reports.urls")),
    # The Django admin stays for data maintenance.
    path("admin/", admin.site.urls),
    # The online payment gateway's callbacks (signed; not part of the partner API).
    path("payments/", include("payments.urls")),
]
