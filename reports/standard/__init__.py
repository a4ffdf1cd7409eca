"""Standard reports. Each is a function taking the caller's scope and filters and returning
a ``reports.standard.base.Report``: columns, rows (an iterator: exports stream it),
totals and a chart series; the API, the exports and the staff screens use the same one."""

from reports.standard.aging import debt_aging
from reports.standard.base import Column, Report, ReportError
from reports.standard.business import invoice_runs, payments_by_channel, revenue, settlements
from reports.standard.statement import (
    PayerStream,
    movement_sums,
    payer_stream,
    statement,
)
from reports.standard.turnover import turnover

__all__ = [
    "Column",
    "PayerStream",
    "Report",
    "ReportError",
    "debt_aging",
    "invoice_runs",
    "movement_sums",
    "payer_stream",
    "payments_by_channel",
    "revenue",
    "settlements",
    "statement",
    "turnover",
]
