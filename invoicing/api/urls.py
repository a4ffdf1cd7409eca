"""Billing endpoints of invoicing under /api/v1/ (see ``billing_site.api.urls``)."""

from django.urls import path

from invoicing.api.pdf import InvoicePdfView

urlpatterns = [
    path("invoices/<int:pk>/pdf/", InvoicePdfView.as_view(), name="invoice-pdf"),
]
