"""Report endpoints under /api/v1/reports/: JSON, or CSV / XLSX streamed with ``format=``.

Every report reads through the ``reporting`` alias (``reports.db``). ``format`` is also
DRF's format override: the export renderers below exist so that content negotiation
accepts ``csv`` and ``xlsx``; the views answer those with a streamed response of their own.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_in_scope
from core.api.schema import ERRORS
from core.api.views import ScopedViewMixin
from core.errors import NotFoundInScope
from reports import standard
from reports.api import serializers as s
from reports.exports import XLSX_TYPE, export_response
from reports.selectors import projection_lag

REQUIRED = {"get": ("reports", "reports.view_reports")}


class _ExportRenderer(BaseRenderer):
    """Never renders: the views stream these formats themselves."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        return JSONRenderer().render(data)  # errors (400, 403, ...) stay JSON


class CsvRenderer(_ExportRenderer):
    media_type = "text/csv"
    format = "csv"


class XlsxRenderer(_ExportRenderer):
    media_type = XLSX_TYPE
    format = "xlsx"


FORMAT = OpenApiParameter(
    "format",
    OpenApiTypes.STR,
    enum=["json", "csv", "xlsx"],
    description="json (default), or a streamed csv / xlsx file of the rows.",
)


def _responses(serializer: Any, *, not_found: bool = False) -> dict:
    """The JSON report, or its rows as a CSV or XLSX file; 404 for an object out of scope."""
    responses: dict = {
        (200, "application/json"): serializer,
        (200, "text/csv"): OpenApiTypes.STR,
        (200, XLSX_TYPE): OpenApiTypes.BINARY,
    }
    if not_found:
        responses[404] = ERRORS[404]
    return responses


def _date(name: str, required: bool = True, description: str = "") -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.DATE, required=required, description=description)


class _ReportView(ScopedViewMixin, APIView):
    required = REQUIRED
    renderer_classes = [JSONRenderer, CsvRenderer, XlsxRenderer]
    query_class: type[s._Query]

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        # An unknown ``format`` is a bad parameter (400), not DRF's 404.
        fmt = request.query_params.get("format")
        if fmt is not None and fmt not in ("json", "csv", "xlsx") and not force:
            raise ValidationError({"format": ["Use json, csv or xlsx."]})
        return super().perform_content_negotiation(request, force)

    def query(self, request: Any) -> dict[str, Any]:
        params = self.query_class(data=request.query_params)
        params.is_valid(raise_exception=True)
        return params.validated_data

    def answer(self, report: standard.Report, fmt: str, filename: str, data: dict) -> Any:
        if fmt == "json":
            return Response(data)
        return export_response(report, fmt, filename)


class StatementView(_ReportView):
    query_class = s.StatementQuery

    @extend_schema(
        operation_id="reports_statement",
        parameters=[
            OpenApiParameter("account", OpenApiTypes.INT, required=True),
            _date("from", description="First day (inclusive)."),
            _date("to", description="Last day (inclusive)."),
            FORMAT,
        ],
        responses=_responses(s.StatementSerializer, not_found=True),
    )
    def get(self, request: Any) -> Any:
        q = self.query(request)
        account = account_in_scope(self.scope, q["account"])
        if account is None:
            raise NotFoundInScope("account: not found.", account=["Not found."])
        report = standard.statement(self.scope, account, q["from"], q["to"])
        data = s.StatementSerializer(
            {
                "account": account.pk,
                "number": account.number,
                "currency": account.currency,
                "opening": report.header["opening"],
                "credit": report.totals["credit"],
                "debit": report.totals["debit"],
                "closing": report.header["closing"],
                "entries": report.rows,
            }
        ).data
        return self.answer(report, q["format"], f"statement-{account.number}", data)


class TurnoverView(_ReportView):
    query_class = s.TurnoverQuery

    @extend_schema(
        operation_id="reports_turnover",
        parameters=[
            _date("from"),
            _date("to"),
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=["account", "brand", "service"]),
            OpenApiParameter("brand", OpenApiTypes.INT),
            OpenApiParameter("currency", OpenApiTypes.STR),
            FORMAT,
        ],
        responses=_responses(s.TurnoverSerializer, not_found=True),
    )
    def get(self, request: Any) -> Any:
        q = self.query(request)
        brand = q.get("brand")
        if brand is not None and not self.scope.allows_brand(brand):
            raise NotFoundInScope("brand: not found.", brand=["Not found."])
        report = standard.turnover(
            self.scope,
            date_from=q["from"],
            date_to=q["to"],
            group_by=q["group_by"],
            brand_id=brand,
            currency=q.get("currency"),
        )
        data = s.TurnoverSerializer({"rows": report.rows, "totals": report.totals}).data
        return self.answer(report, q["format"], f"turnover-{q['from']}-{q['to']}", data)


class DebtAgingView(_ReportView):
    query_class = s.DebtAgingQuery

    @extend_schema(
        operation_id="reports_debt_aging",
        parameters=[
            _date("at", required=False, description="End of this day (default: today)."),
            OpenApiParameter("currency", OpenApiTypes.STR),
            FORMAT,
        ],
        responses=_responses(s.DebtAgingSerializer),
    )
    def get(self, request: Any) -> Any:
        q = self.query(request)
        report = standard.debt_aging(self.scope, at=q["at"], currency=q.get("currency"))
        totals = {
            "debt": str(report.totals["debt"]),
            "buckets": {k: str(v) for k, v in report.totals["buckets"].items()},
        }
        data = s.DebtAgingSerializer({"at": q["at"], "rows": report.rows, "totals": totals}).data
        return self.answer(report, q["format"], f"debt-aging-{q['at']}", data)


class ProjectionLagView(ScopedViewMixin, APIView):
    required = REQUIRED

    @extend_schema(operation_id="reports_lag", responses={200: s.ProjectionLagSerializer})
    def get(self, request: Any) -> Any:
        return Response(s.ProjectionLagSerializer(projection_lag()).data)
