from django.contrib.admin.apps import AdminConfig


class BillingAdminConfig(AdminConfig):
    """``django.contrib.admin`` with the project's site (``billing_site.admin``)."""

    default_site = "billing_site.admin.BillingAdminSite"
