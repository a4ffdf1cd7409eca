"""``GET /api/v1/invoices/{id}/pdf/``: the invoice document as ``application/pdf``.

Scope: a partner gets the invoices of its brands on accounts linked to them;
anything else is 404, as if it did not exist. Staff get every invoice.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import ERRORS, BillingAutoSchema
from core.api.views import NotFoundInScope, ScopedViewMixin
from invoicing.documents import PDF_MIMETYPE, invoice_pdf, invoice_pdf_filename
from invoicing.selectors import invoices_in_scope


class PdfRenderer(BaseRenderer):
    """Lets clients ask for ``Accept: application/pdf``; the view answers the bytes itself."""

    media_type = PDF_MIMETYPE
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        return data


class PdfSchema(BillingAutoSchema):
    """Errors are JSON even though the operation's success is a PDF; no ``?format=``."""

    def _get_format_parameters(self) -> list:
        return []

    def _get_response_for_code(
        self, serializer, status_code, media_types=None, direction="response"
    ):
        if not media_types and not str(status_code).startswith("2"):
            media_types = ["application/json"]
        return super()._get_response_for_code(serializer, status_code, media_types, direction)


class InvoicePdfView(ScopedViewMixin, APIView):
    renderer_classes = [JSONRenderer, PdfRenderer]
    schema = PdfSchema()
    required = {"get": ("read", "invoicing.view_invoice")}

    @extend_schema(
        operation_id="invoices_pdf_retrieve",
        tags=["invoices"],
        summary="The invoice as a PDF document",
        description=(
            "The invoice with the brand's requisites, the client, lines, VAT, totals, the "
            "balance brought forward, the amount due and a payment QR code (GOST R 56042-2014, "
            "`ST00012`). An issued invoice's document never changes; a draft or void one is "
            "marked as such and has no QR."
        ),
        responses={
            (200, PDF_MIMETYPE): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The PDF document."
            ),
            (404, "application/json"): ERRORS[404],
        },
    )
    def get(self, request: Any, pk: int) -> HttpResponse:
        invoice = invoices_in_scope(self.scope).filter(pk=pk).only("pk", "number").first()
        if invoice is None:
            raise NotFoundInScope("invoice: not found.")
        response = HttpResponse(invoice_pdf(invoice=invoice.pk), content_type=PDF_MIMETYPE)
        filename = invoice_pdf_filename(invoice.number, invoice.pk)
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        return response

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        # An error answered to "Accept: application/pdf" is still the API's JSON error.
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), PdfRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
