from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class BillingAdminConfig(AdminConfig):
    """``django.contrib.admin`` with the project's site (``billing_site.admin``)."""

    default_site = "billing_site.admin.BillingAdminSite"


class BillingSiteConfig(AppConfig):
    """The project package as an app: its management commands (``migrate`` as the owner,
    ``setup_db_roles``)."""

    name = "billing_site"
    label = "billing_site"
    verbose_name = "Billing site"
