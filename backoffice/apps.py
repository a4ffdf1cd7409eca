from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackofficeConfig(AppConfig):
    """The staff UI's cross-app pages: dashboard, search, client and account pages, roles."""

    name = "backoffice"
    verbose_name = _("Staff back-office")
