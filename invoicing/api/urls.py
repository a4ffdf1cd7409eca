"""Billing endpoints of invoicing under /api/v1/ (see ``billing_site.api.urls``)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from invoicing.api.pdf import InvoicePdfView
from invoicing.api.views import (
    InvoiceRunViewSet,
    InvoiceViewSet,
    MeterReadingsView,
    SubscriptionViewSet,
    TariffViewSet,
    UsageView,
)

router = SimpleRouter()
router.register("tariffs", TariffViewSet, basename="tariff")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("invoice-runs", InvoiceRunViewSet, basename="invoice-run")
router.register("invoices", InvoiceViewSet, basename="invoice")

urlpatterns = [
    path("invoices/<int:pk>/pdf/", InvoicePdfView.as_view(), name="invoice-pdf"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("meter-readings/", MeterReadingsView.as_view(), name="meter-readings"),
    *router.urls,
]
