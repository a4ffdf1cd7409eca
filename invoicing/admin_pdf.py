"""The invoice PDF in the admin: a download view and a link to it on the invoice pages.

A mixin, so whichever ``InvoiceAdmin`` the app registers keeps the download.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from invoicing.documents import PDF_MIMETYPE, invoice_pdf, invoice_pdf_filename


class InvoicePdfAdminMixin:
    """Adds ``<id>/pdf/`` (staff with view permission) and the ``pdf_link`` field."""

    def get_urls(self) -> list:
        opts = self.model._meta  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(self.pdf_view)  # type: ignore[attr-defined]
        return [
            path("<path:object_id>/pdf/", view, name=f"{opts.app_label}_{opts.model_name}_pdf"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def pdf_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        invoice = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if invoice is None:
            raise Http404("No such invoice.")
        if not self.has_view_permission(request, invoice):  # type: ignore[attr-defined]
            raise PermissionDenied
        response = HttpResponse(invoice_pdf(invoice=invoice.pk), content_type=PDF_MIMETYPE)
        filename = invoice_pdf_filename(invoice.number, invoice.pk)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def pdf_link(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "—"
        url = reverse("admin:invoicing_invoice_pdf", args=[obj.pk])
        return format_html('<a href="{}">Download PDF</a>', url)

    pdf_link.short_description = "PDF"  # type: ignore[attr-defined]
