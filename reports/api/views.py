"""Report endpoints under /api/v1/reports/: JSON, or CSV / XLSX streamed with ``format=``.

Every report reads through the ``reporting`` alias (``reports.db``). ``format`` is also
DRF's format override: the export renderers below exist so that content negotiation
accepts ``csv`` and ``xlsx``; the views answer those with a streamed response of their own.
"""

from __future__ import annotations

from contextlib import closing
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_in_scope
from core.api.schema import ERRORS, BillingAutoSchema
from core.api.views import ScopedViewMixin
from core.errors import NotFoundInScope
from invoicing.documents import PDF_MIMETYPE
from reports import standard
from reports.api import serializers as s
from reports.exports import XLSX_TYPE, export_response
from reports.pdf import statement_pdf
from reports.selectors import projection_lag

REQUIRED = {"get": ("reports", "reports.view_reports")}


class _JSONRenderer(JSONRenderer):
    """DRF's JSON renderer that passes a body already rendered (bytes) through as it is."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        return super().render(data, accepted_media_type, renderer_context)


class _ExportRenderer(BaseRenderer):
    """Never renders: the views stream these formats themselves."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        return _JSONRenderer().render(data)  # errors (400, 403, ...) stay JSON


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
    renderer_classes = [_JSONRenderer, CsvRenderer, XlsxRenderer]
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


def statement_data(account: Any, report: Any) -> Any:
    """The statement's API representation (``StatementSerializer``) of a built report."""
    return s.StatementSerializer(
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


# DRF's JSONRenderer escapes these two after json.dumps (JavaScript forbids them raw).
_LINE_SEPARATORS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def statement_json(scope: Any, account: Any, date_from: date, date_to: date) -> bytes:
    """The statement's JSON body, byte for byte what ``statement_data`` rendered by DRF's
    ``JSONRenderer`` gives, for ``account`` (already found in ``scope``).

    A client payer's, the common case and the long one (a busy account's month is
    thousands of movements), is encoded by orjson from the movements as the database
    prints them: the amounts as text (numeric(18, 2) prints two decimals, the API's money
    format), the timestamps in the current time zone, which orjson writes as
    ``isoformat()`` does ("Z" for a zero offset with ``OPT_UTC_Z``, the fraction only when
    there is one) and the strings escaped as ``json.dumps(ensure_ascii=False)`` does.
    Neither the serializer nor DRF's renderer runs: on a month of 8,242 movements they
    cost ~85% of the response. Any other account (a sub-account, a partner's view of a
    shared account, a system account), a time zone that is not a ``ZoneInfo`` or a period
    before 1970 (local mean time offsets carry seconds, which orjson does not print) goes
    through ``statement_data`` and DRF's renderer.
    """
    zone = timezone.get_current_timezone()
    found = None
    if isinstance(zone, ZoneInfo) and date_from.year >= 1970:
        found = standard.payer_stream(scope, account, date_from, date_to)
    if found is None:
        report = standard.statement(scope, account, date_from, date_to, chart=False)
        return _JSONRenderer().render(statement_data(account, report))
    # The movements are encoded a chunk at a time as they arrive, while the server reads
    # the next ones; the chunks' arrays are spliced into the body's "entries" at the end.
    parts: list[bytes] = []
    amounts: list[str] = []
    last_balance = found.opening
    with closing(found.chunks) as chunks:
        for chunk in chunks:
            parts.append(
                orjson.dumps(
                    [
                        {
                            "created_at": at.astimezone(zone),
                            "kind": kind,
                            "amount": amount,
                            "balance_after": balance,
                            "memo": memo,
                        }
                        for at, kind, amount, balance, memo in chunk
                    ],
                    option=orjson.OPT_UTC_Z,
                )[1:-1]
            )
            amounts += [row[2] for row in chunk]
            last_balance = Decimal(chunk[-1][3])
    credit, debit = standard.movement_sums(amounts)
    head = orjson.dumps(
        {
            "account": account.pk,
            "number": account.number,
            "currency": account.currency,
            "opening": s.money(found.opening),
            "credit": s.money(credit),
            "debit": s.money(debit),
            "closing": s.money(last_balance),
            "entries": [],
        }
    )
    body = b"".join((head[: -len(b"[]}")], b"[", b",".join(parts), b"]}"))
    for raw, escaped in _LINE_SEPARATORS:
        if raw in body:
            body = body.replace(raw, escaped)
    return body


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
        if q["format"] == "json":
            if "indent" in (request.accepted_media_type or ""):
                # DRF's "Accept: application/json; indent=N": indented by DRF, as before.
                report = standard.statement(self.scope, account, q["from"], q["to"], chart=False)
                return Response(statement_data(account, report))
            return Response(statement_json(self.scope, account, q["from"], q["to"]))
        report = standard.statement(self.scope, account, q["from"], q["to"])
        return export_response(report, q["format"], f"statement-{account.number}")


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


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def table_data(report: standard.Report) -> dict[str, Any]:
    return {
        "title": report.title,
        "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in report.columns],
        "rows": [_json_value(row) for row in report.rows],
        "totals": _json_value(report.totals),
        "chart": report.chart,
    }


class _TableView(_ReportView):
    """A standard report over a period, answered as a table."""

    query_class = s.PeriodQuery

    def build(self, q: dict[str, Any]) -> standard.Report:
        raise NotImplementedError

    def get(self, request: Any) -> Any:
        q = self.query(request)
        report = self.build(q)
        filename = f"{report.name}-{q['from']}-{q['to']}"
        return self.answer(report, q["format"], filename, table_data(report))


PERIOD = [_date("from"), _date("to")]


class RevenueView(_TableView):
    query_class = s.RevenueQuery

    @extend_schema(
        operation_id="reports_revenue",
        parameters=[*PERIOD, OpenApiParameter("brand", OpenApiTypes.INT), FORMAT],
        responses=_responses(s.TableReportSerializer, not_found=True),
    )
    def get(self, request: Any) -> Any:
        return super().get(request)

    def build(self, q: dict[str, Any]) -> standard.Report:
        brand = q.get("brand")
        if brand is not None and not self.scope.allows_brand(brand):
            raise NotFoundInScope("brand: not found.", brand=["Not found."])
        return standard.revenue(self.scope, date_from=q["from"], date_to=q["to"], brand_id=brand)


class PaymentsView(_TableView):
    @extend_schema(
        operation_id="reports_payments",
        parameters=[*PERIOD, FORMAT],
        responses=_responses(s.TableReportSerializer),
    )
    def get(self, request: Any) -> Any:
        return super().get(request)

    def build(self, q: dict[str, Any]) -> standard.Report:
        return standard.payments_by_channel(self.scope, date_from=q["from"], date_to=q["to"])


class InvoiceRunsView(_TableView):
    @extend_schema(
        operation_id="reports_invoice_runs",
        parameters=[*PERIOD, FORMAT],
        responses=_responses(s.TableReportSerializer),
    )
    def get(self, request: Any) -> Any:
        return super().get(request)

    def build(self, q: dict[str, Any]) -> standard.Report:
        return standard.invoice_runs(self.scope, date_from=q["from"], date_to=q["to"])


class SettlementsView(_TableView):
    query_class = s.SettlementsQuery

    @extend_schema(
        operation_id="reports_settlements",
        parameters=[*PERIOD, OpenApiParameter("commission", OpenApiTypes.DECIMAL), FORMAT],
        responses=_responses(s.TableReportSerializer),
    )
    def get(self, request: Any) -> Any:
        return super().get(request)

    def build(self, q: dict[str, Any]) -> standard.Report:
        return standard.settlements(
            self.scope,
            date_from=q["from"],
            date_to=q["to"],
            commission_percent=q.get("commission") or Decimal("0"),
        )


class PdfRenderer(_ExportRenderer):
    media_type = PDF_MIMETYPE
    format = "pdf"


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


class StatementPdfView(ScopedViewMixin, APIView):
    """The statement as a PDF document (``Accept: application/pdf`` or no ``Accept``)."""

    required = REQUIRED
    renderer_classes = [JSONRenderer, PdfRenderer]
    schema = PdfSchema()

    @extend_schema(
        operation_id="reports_statement_pdf",
        parameters=[
            OpenApiParameter("account", OpenApiTypes.INT, required=True),
            _date("from", description="First day (inclusive)."),
            _date("to", description="Last day (inclusive)."),
        ],
        responses={
            (200, PDF_MIMETYPE): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The statement as a PDF document."
            ),
            (404, "application/json"): ERRORS[404],
        },
    )
    def get(self, request: Any) -> Any:
        params = s.StatementQuery(data=request.query_params)
        params.is_valid(raise_exception=True)
        q = params.validated_data
        account = account_in_scope(self.scope, q["account"])
        if account is None:
            raise NotFoundInScope("account: not found.", account=["Not found."])
        report = standard.statement(self.scope, account, q["from"], q["to"], chart=False)
        response = HttpResponse(statement_pdf(report), content_type=PDF_MIMETYPE)
        response["Content-Disposition"] = (
            f'inline; filename="statement-{account.number}-{q["from"]}-{q["to"]}.pdf"'
        )
        return response

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, Response) and isinstance(
            getattr(request, "accepted_renderer", None), PdfRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
