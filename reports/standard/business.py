"""Revenue, payments by channel and agent, invoice-run summary and settlements per brand.

Revenue comes from the daily turnover projection; the others read their own tables
(ledger payments by their creation time index, invoices, invoice allocations)
through the reporting alias. Payment agents arrive with the payments app: until
then a payment's agent is the ``agent`` key of its metadata.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from core.api.scope import Scope
from reports.models import DailyTurnover
from reports.standard.base import (
    ZERO,
    Column,
    Report,
    cents,
    check_period,
    day_start,
    fetch,
    next_day_start,
)

# Kinds whose client-side debits are income of the brand (credit notes and reversals of
# them give it back); payments, transfers and refunds move the client's own money.
REVENUE_KINDS = ("debit", "accrual", "hold_capture", "credit_note", "reversal", "adjustment")


def _scope_brands(scope: Scope, column: str) -> str:
    return "TRUE" if scope.brand_ids is None else f"{column} = ANY(%(scope_brands)s)"


def _params(scope: Scope, **extra: Any) -> dict[str, Any]:
    return {"scope_brands": sorted(scope.brand_ids or ()), **extra}


def revenue(scope: Scope, *, date_from: date, date_to: date, brand_id: int | None = None) -> Report:
    """Net charges per brand and service: client debits less credits of the charge kinds."""
    check_period(date_from, date_to)
    raw = fetch(
        f"""
        SELECT b.id, b.code, s.code, x.currency,
               SUM(x.debit) AS charged, SUM(x.credit) AS returned, SUM(x.entries)
          FROM {DailyTurnover._meta.db_table} x
          JOIN brands_brand b ON b.id = x.brand_id
          LEFT JOIN brands_service s ON s.id = x.service_id
         WHERE x.day >= %(from)s AND x.day <= %(to)s AND x.kind = ANY(%(kinds)s)
           AND (%(brand)s::bigint IS NULL OR x.brand_id = %(brand)s)
           AND {_scope_brands(scope, "x.brand_id")}
         GROUP BY b.id, b.code, s.code, x.currency
         ORDER BY b.code, s.code NULLS FIRST, x.currency
        """,
        _params(
            scope,
            **{"from": date_from, "to": date_to},
            kinds=list(REVENUE_KINDS),
            brand=brand_id,
        ),
    )
    rows = []
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for _brand_id, brand, service, currency, charged, returned, entries in raw:
        net = cents(charged) - cents(returned)
        rows.append(
            {
                "brand": brand,
                "service": service or "",
                "currency": currency,
                "charged": cents(charged),
                "returned": cents(returned),
                "revenue": net,
                "entries": entries,
            }
        )
        totals[currency] += net
    return Report(
        name="revenue",
        title=f"Revenue by brand and service, {date_from} to {date_to}",
        columns=[
            Column("brand", "Brand"),
            Column("service", "Service"),
            Column("currency", "Currency"),
            Column("charged", "Charged", "money"),
            Column("returned", "Returned", "money"),
            Column("revenue", "Revenue", "money"),
            Column("entries", "Entries", "int"),
        ],
        rows=rows,
        totals={"revenue": dict(totals)},
        chart={
            "type": "bar",
            "labels": [f"{r['brand']}/{r['service']}".rstrip("/") for r in rows],
            "series": [{"name": "Revenue", "data": [str(r["revenue"]) for r in rows]}],
        },
    )


def payments_by_channel(scope: Scope, *, date_from: date, date_to: date) -> Report:
    """Payments received per channel and agent (count, amount, reversed)."""
    check_period(date_from, date_to)
    visible = (
        "TRUE"
        if scope.brand_ids is None
        else """EXISTS (SELECT 1 FROM accounts_account_brands ab
                         WHERE ab.account_id = t.account_id
                           AND ab.brand_id = ANY(%(scope_brands)s))"""
    )
    raw = fetch(
        f"""
        SELECT t.channel, COALESCE(t.metadata->>'agent', ''), t.currency, count(*),
               SUM(t.amount), COALESCE(SUM(t.amount) FILTER (WHERE r.id IS NOT NULL), 0)
          FROM ledger_transaction t
          LEFT JOIN ledger_transaction r ON r.reversal_of_id = t.id
         WHERE t.kind = 'payment' AND t.created_at >= %(start)s AND t.created_at < %(end)s
           AND {visible}
         GROUP BY 1, 2, 3
         ORDER BY 1, 2, 3
        """,
        _params(scope, start=day_start(date_from), end=next_day_start(date_to)),
    )
    rows = [
        {
            "channel": channel or "other",
            "agent": agent,
            "currency": currency,
            "payments": count,
            "amount": cents(amount),
            "reversed": cents(reversed_amount),
        }
        for channel, agent, currency, count, amount, reversed_amount in raw
    ]
    by_channel: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        by_channel[row["channel"]] += row["amount"]
    return Report(
        name="payments",
        title=f"Payments by channel and agent, {date_from} to {date_to}",
        columns=[
            Column("channel", "Channel"),
            Column("agent", "Agent"),
            Column("currency", "Currency"),
            Column("payments", "Payments", "int"),
            Column("amount", "Amount", "money"),
            Column("reversed", "Reversed", "money"),
        ],
        rows=rows,
        totals={
            "payments": sum(r["payments"] for r in rows),
            "amount": sum((r["amount"] for r in rows), ZERO),
        },
        chart={
            "type": "pie",
            "labels": list(by_channel),
            "series": [{"name": "Amount", "data": [str(v) for v in by_channel.values()]}],
        },
    )


def invoice_runs(scope: Scope, *, date_from: date, date_to: date) -> Report:
    """Invoice runs started in the period: progress, invoices issued and their totals."""
    check_period(date_from, date_to)
    raw = fetch(
        f"""
        SELECT r.id, p.code, COALESCE(b.code, ''), r.mode, r.status, r.total, r.processed,
               r.failed, count(i.id), COALESCE(SUM(i.total), 0), COALESCE(SUM(i.vat), 0),
               r.started_at, r.finished_at
          FROM invoicing_invoicerun r
          JOIN invoicing_billingperiod p ON p.id = r.period_id
          LEFT JOIN brands_brand b ON b.id = r.brand_id
          LEFT JOIN invoicing_invoice i ON i.run_id = r.id AND i.status <> 'void'
         WHERE r.created_at >= %(start)s AND r.created_at < %(end)s
           AND {"TRUE" if scope.brand_ids is None else "r.brand_id = ANY(%(scope_brands)s)"}
         GROUP BY r.id, p.code, b.code
         ORDER BY r.id
        """,
        _params(scope, start=day_start(date_from), end=next_day_start(date_to)),
    )
    keys = (
        "run", "period", "brand", "mode", "status", "accounts", "processed", "failed",
        "invoices", "total", "vat", "started_at", "finished_at",
    )  # fmt: skip
    rows = []
    for values in raw:
        row = dict(zip(keys, values, strict=True))
        row["total"], row["vat"] = cents(row["total"]), cents(row["vat"])
        rows.append(row)
    return Report(
        name="invoice_runs",
        title=f"Invoice runs, {date_from} to {date_to}",
        columns=[
            Column("run", "Run", "int"),
            Column("period", "Period"),
            Column("brand", "Brand"),
            Column("mode", "Mode"),
            Column("status", "Status"),
            Column("accounts", "Accounts", "int"),
            Column("processed", "Processed", "int"),
            Column("failed", "Failed", "int"),
            Column("invoices", "Invoices", "int"),
            Column("total", "Total", "money"),
            Column("vat", "VAT", "money"),
            Column("started_at", "Started", "datetime"),
            Column("finished_at", "Finished", "datetime"),
        ],
        rows=rows,
        totals={
            "invoices": sum(r["invoices"] for r in rows),
            "total": sum((r["total"] for r in rows), ZERO),
        },
        chart={
            "type": "bar",
            "labels": [f"#{r['run']} {r['period']}" for r in rows],
            "series": [{"name": "Total", "data": [str(r["total"]) for r in rows]}],
        },
    )


def settlements(
    scope: Scope, *, date_from: date, date_to: date, commission_percent: Decimal = ZERO
) -> Report:
    """What was collected for each brand in the period (payments allocated to its invoices),
    less the operator's commission (a percentage, half-up to the cent per brand)."""
    check_period(date_from, date_to)
    raw = fetch(
        f"""
        SELECT b.id, b.code, i.currency, count(DISTINCT a.transaction_id), SUM(a.amount)
          FROM invoicing_invoiceallocation a
          JOIN invoicing_invoice i ON i.id = a.invoice_id
          JOIN brands_brand b ON b.id = i.brand_id
         WHERE a.created_at >= %(start)s AND a.created_at < %(end)s
           AND {_scope_brands(scope, "i.brand_id")}
         GROUP BY b.id, b.code, i.currency
         ORDER BY b.code, i.currency
        """,
        _params(scope, start=day_start(date_from), end=next_day_start(date_to)),
    )
    rate = Decimal(commission_percent) / Decimal(100)
    rows = []
    for _brand_id, brand, currency, payments, collected in raw:
        collected = cents(collected)
        commission = cents(collected * rate)
        rows.append(
            {
                "brand": brand,
                "currency": currency,
                "payments": payments,
                "collected": collected,
                "commission": commission,
                "to_transfer": collected - commission,
            }
        )
    return Report(
        name="settlements",
        title=f"Settlements per brand, {date_from} to {date_to}",
        columns=[
            Column("brand", "Brand"),
            Column("currency", "Currency"),
            Column("payments", "Payments", "int"),
            Column("collected", "Collected", "money"),
            Column("commission", "Commission", "money"),
            Column("to_transfer", "To transfer", "money"),
        ],
        rows=rows,
        totals={"collected": sum((r["collected"] for r in rows), ZERO)},
        header={"commission_percent": commission_percent},
        chart={
            "type": "bar",
            "labels": [r["brand"] for r in rows],
            "series": [{"name": "To transfer", "data": [str(r["to_transfer"]) for r in rows]}],
        },
    )
