"""Staff UI of reports: the index, each standard report with its filters, a Chart.js chart
of the service's chart series, its rows and totals, and the same report exported (CSV or
XLSX streamed by ``reports.exports``); the projections' lag on every page.

Every page needs ``reports.view_reports``, the permission the reports API checks.
The reports are the services the API calls (``reports.standard``), as staff see them
(every brand).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Account
from core.errors import DomainError
from core.ui import bootstrap, staff_scope, staff_view
from core.ui_errors import refusal_message
from reports import staff_forms as f
from reports import standard
from reports.exports import export_response
from reports.selectors import projection_lag

PERMISSION = "reports.view_reports"
SHOWN_ROWS = 500


@dataclass(frozen=True)
class StandardReport:
    slug: str
    title: Any
    description: Any
    form: type
    build: Callable[[Any, dict[str, Any]], standard.Report]


def _statement(scope: Any, q: dict[str, Any]) -> standard.Report:
    account = Account.objects.filter(number=q["account"].strip()).first()
    if account is None:
        raise DomainError(str(_("No account with this number.")))
    return standard.statement(scope, account, q["date_from"], q["date_to"])


REPORTS = {
    r.slug: r
    for r in [
        StandardReport(
            "turnover",
            _("Turnover"),
            _("Opening, credit, debit and closing per account, brand or service."),
            f.TurnoverForm,
            lambda scope, q: standard.turnover(
                scope,
                date_from=q["date_from"],
                date_to=q["date_to"],
                group_by=q["group_by"],
                brand_id=q.get("brand"),
                currency=q.get("currency") or None,
            ),
        ),
        StandardReport(
            "debt-aging",
            _("Debt aging"),
            _("Client debt by the age of its oldest unpaid charge."),
            f.DebtAgingForm,
            lambda scope, q: standard.debt_aging(
                scope, at=q.get("at") or timezone.localdate(), currency=q.get("currency") or None
            ),
        ),
        StandardReport(
            "revenue",
            _("Revenue"),
            _("Revenue by brand and service."),
            f.RevenueForm,
            lambda scope, q: standard.revenue(
                scope, date_from=q["date_from"], date_to=q["date_to"], brand_id=q.get("brand")
            ),
        ),
        StandardReport(
            "payments",
            _("Payments by channel"),
            _("Payments received by channel and agent."),
            f.PeriodForm,
            lambda scope, q: standard.payments_by_channel(
                scope, date_from=q["date_from"], date_to=q["date_to"]
            ),
        ),
        StandardReport(
            "invoice-runs",
            _("Invoice runs"),
            _("Invoice runs of the period with their totals."),
            f.PeriodForm,
            lambda scope, q: standard.invoice_runs(
                scope, date_from=q["date_from"], date_to=q["date_to"]
            ),
        ),
        StandardReport(
            "settlements",
            _("Settlements"),
            _("What was collected per brand and what is to transfer."),
            f.SettlementsForm,
            lambda scope, q: standard.settlements(
                scope,
                date_from=q["date_from"],
                date_to=q["date_to"],
                commission_percent=q.get("commission") or Decimal("0"),
            ),
        ),
        StandardReport(
            "statement",
            _("Account statement"),
            _("An account's entries of the period with opening and closing balances."),
            f.StatementForm,
            _statement,
        ),
    ]
}

# The services' column labels, in the user's language.
COLUMN_LABELS = {
    "Accounts": _("Accounts"),
    "Age (days)": _("Age (days)"),
    "Agent": _("Agent"),
    "Amount": _("Amount"),
    "Balance after": _("Balance after"),
    "Brand": _("Brand"),
    "Bucket": _("Bucket"),
    "Channel": _("Channel"),
    "Charged": _("Charged"),
    "Closing": _("Closing"),
    "Collected": _("Collected"),
    "Commission": _("Commission"),
    "Date and time": _("Date and time"),
    "Credit (in)": _("Credit (in)"),
    "Currency": _("Currency"),
    "Debit (out)": _("Debit (out)"),
    "Debt": _("Debt"),
    "Entries": _("Entries"),
    "Failed": _("Failed"),
    "Finished": _("Finished"),
    "Id": _("Id"),
    "Invoices": _("Invoices"),
    "Key": _("Key"),
    "Operation": _("Operation"),
    "Memo": _("Memo"),
    "Mode": _("Mode"),
    "Account": _("Account"),
    "Oldest unpaid charge": _("Oldest unpaid charge"),
    "Opening": _("Opening"),
    "Payments": _("Payments"),
    "Period": _("Period"),
    "Processed": _("Processed"),
    "Returned": _("Returned"),
    "Revenue": _("Revenue"),
    "Reversed": _("Reversed"),
    "Run": _("Run"),
    "Service": _("Service"),
    "Started": _("Started"),
    "Status": _("Status"),
    "To transfer": _("To transfer"),
    "Total": _("Total"),
    "VAT": _("VAT"),
}


def _flat(totals: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Totals (possibly nested: per currency, per bucket) as label/value pairs."""
    pairs: list[tuple[str, Any]] = []
    for key, value in totals.items():
        label = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs.extend(_flat(value, f"{label} · "))
        else:
            pairs.append((label, value))
    return pairs


@staff_view(PERMISSION)
def index(request: Any) -> HttpResponse:
    return render(
        request, "reports/index.html", {"reports": REPORTS.values(), "lag": projection_lag()}
    )


@staff_view(PERMISSION)
def report(request: Any, slug: str) -> HttpResponse:
    spec = REPORTS.get(slug)
    if spec is None:
        raise Http404
    query = request.GET.copy()
    fmt = query.pop("export", [None])[-1]
    form = bootstrap(spec.form(query or None), small=True)
    context: dict[str, Any] = {"spec": spec, "form": form, "lag": projection_lag()}
    if form.is_bound and form.is_valid():
        try:
            built = spec.build(staff_scope(request), form.cleaned_data)
        except DomainError as error:
            form.add_error(None, refusal_message(error))
        else:
            if fmt in ("csv", "xlsx"):
                return export_response(built, fmt, f"{built.name}-{timezone.localdate()}")
            rows = list(islice(iter(built.rows), SHOWN_ROWS + 1))
            context.update(
                report=built,
                columns=[
                    (c.key, COLUMN_LABELS.get(c.label, c.label), c.kind) for c in built.columns
                ],
                rows=[
                    [(row.get(c.key), c.kind) for c in built.columns] for row in rows[:SHOWN_ROWS]
                ],
                more_rows=len(rows) > SHOWN_ROWS,
                totals=_flat(built.totals),
                header=_flat(built.header),
                chart=built.chart,
                export_query=query.urlencode(),
            )
    return render(request, "reports/report.html", context)
