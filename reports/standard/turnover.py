"""Turnover sheet: opening, credit, debit and closing per account, brand or service.

Read from the projections only (``reports.models``): per brand and service from the
daily turnover; per account from the monthly turnover for the whole months of the
period and the daily account turnover for its partial months at either end.
"""

from __future__ import annotations

import heapq
from datetime import date, timedelta
from typing import Any

from core.api.scope import Scope
from reports.models import AccountDayTurnover, AccountMonthTurnover, DailyTurnover
from reports.standard.base import ZERO, Column, Report, ReportError, check_period, fetch

GROUPS = ("account", "brand", "service")

COLUMNS = [
    Column("id", "Id", "int"),
    Column("key", "Key"),
    Column("currency", "Currency"),
    Column("opening", "Opening", "money"),
    Column("credit", "Credit (in)", "money"),
    Column("debit", "Debit (out)", "money"),
    Column("closing", "Closing", "money"),
]


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _full_months(date_from: date, date_to: date) -> tuple[date, date]:
    """[first, after): the whole months inside the period; empty as (month of from) twice."""
    first = date_from if date_from.day == 1 else _next_month(date_from)
    after_to = date_to + timedelta(days=1)
    after = after_to if after_to.day == 1 else _month_start(date_to)
    if first >= after:
        return _month_start(date_from), _month_start(date_from)
    return first, after


def _brand_sql(scope: Scope, brand_id: int | None, column: str = "x.brand_id") -> str:
    parts = []
    if brand_id is not None:
        parts.append(f"{column} = %(brand)s")
    if scope.brand_ids is not None:
        parts.append(f"{column} = ANY(%(scope_brands)s)")
    return " AND ".join(parts) or "TRUE"


def _by_account(scope: Scope, date_from: date, date_to: date, brand_id, currency) -> list[tuple]:
    first, after = _full_months(date_from, date_to)
    # A partner's sheet: its accounts, its brands' postings, and on its accounts not
    # shared with other brands also the postings that carry no brand (payments).
    if scope.brand_ids is None:
        visible = "TRUE"
    else:
        visible = f"""
            EXISTS (SELECT 1 FROM accounts_account_brands ab
                     WHERE ab.account_id = x.account_id AND ab.brand_id = ANY(%(scope_brands)s))
            AND ({_brand_sql(scope, None)} OR (x.brand_id IS NULL AND %(brand)s::bigint IS NULL
                 AND NOT EXISTS (SELECT 1 FROM accounts_account_brands ab
                                  WHERE ab.account_id = x.account_id
                                    AND NOT ab.brand_id = ANY(%(scope_brands)s))))
        """
    brand = "x.brand_id = %(brand)s" if brand_id is not None else "TRUE"
    sql = f"""
    WITH moves AS (
        SELECT x.account_id, x.currency,
               CASE WHEN x.month < %(from_month)s THEN x.credit - x.debit ELSE 0 END AS opening,
               CASE WHEN x.month >= %(first)s THEN x.credit ELSE 0 END AS credit,
               CASE WHEN x.month >= %(first)s THEN x.debit ELSE 0 END AS debit
          FROM {AccountMonthTurnover._meta.db_table} x
         WHERE x.month < %(after)s AND ({brand}) AND ({visible})
        UNION ALL
        SELECT x.account_id, x.currency,
               CASE WHEN x.day < %(from)s THEN x.credit - x.debit ELSE 0 END,
               CASE WHEN x.day >= %(from)s THEN x.credit ELSE 0 END,
               CASE WHEN x.day >= %(from)s THEN x.debit ELSE 0 END
          FROM {AccountDayTurnover._meta.db_table} x
         WHERE ((x.day >= %(from_month)s AND x.day < %(first)s)
                OR (x.day >= %(after)s AND x.day <= %(to)s))
           AND ({brand}) AND ({visible})
    )
    SELECT a.id, a.number, m.currency, SUM(m.opening)::numeric(18, 2),
           SUM(m.credit)::numeric(18, 2), SUM(m.debit)::numeric(18, 2)
      FROM moves m JOIN accounts_account a ON a.id = m.account_id AND a.kind = 'client'
     WHERE (%(currency)s::text IS NULL OR m.currency = %(currency)s)
     GROUP BY a.id, a.number, m.currency
    HAVING SUM(m.opening) <> 0 OR SUM(m.credit) <> 0 OR SUM(m.debit) <> 0
     ORDER BY a.number, m.currency
    """
    return fetch(
        sql,
        {
            "from": date_from,
            "to": date_to,
            "from_month": _month_start(date_from),
            "first": first,
            "after": after,
            "brand": brand_id,
            "scope_brands": sorted(scope.brand_ids or ()),
            "currency": currency,
        },
    )


def _by_catalogue(
    scope: Scope, group_by: str, date_from: date, date_to: date, brand_id, currency
) -> list[tuple]:
    ident, key = (
        ("x.brand_id", "COALESCE(b.code, '(no brand)')")
        if group_by == "brand"
        else ("x.service_id", "COALESCE(b.code || '/' || s.code, '(no service)')")
    )
    sql = f"""
    SELECT {ident}, {key}, x.currency,
           SUM(CASE WHEN x.day < %(from)s THEN x.credit - x.debit ELSE 0 END)::numeric(18, 2),
           SUM(CASE WHEN x.day >= %(from)s THEN x.credit ELSE 0 END)::numeric(18, 2),
           SUM(CASE WHEN x.day >= %(from)s THEN x.debit ELSE 0 END)::numeric(18, 2)
      FROM {DailyTurnover._meta.db_table} x
      LEFT JOIN brands_service s ON s.id = x.service_id
      LEFT JOIN brands_brand b ON b.id = {"x.brand_id" if group_by == "brand" else "s.brand_id"}
     WHERE x.day <= %(to)s AND ({_brand_sql(scope, brand_id)})
       AND (%(currency)s::text IS NULL OR x.currency = %(currency)s)
     GROUP BY 1, 2, 3
     ORDER BY 2, 3
    """
    return fetch(
        sql,
        {
            "from": date_from,
            "to": date_to,
            "brand": brand_id,
            "scope_brands": sorted(scope.brand_ids or ()),
            "currency": currency,
        },
    )


def turnover(
    scope: Scope,
    *,
    date_from: date,
    date_to: date,
    group_by: str = "account",
    brand_id: int | None = None,
    currency: str | None = None,
) -> Report:
    """The turnover sheet of the period (days inclusive), grouped as asked.

    Totals are sums of one currency: when the rows hold several, ``currency`` must
    choose (``currency_required``).
    """
    check_period(date_from, date_to)
    if group_by not in GROUPS:
        raise ReportError(
            f"group_by is one of {', '.join(GROUPS)}.", code="invalid_group_by", field="group_by"
        )
    if group_by == "account":
        raw = _by_account(scope, date_from, date_to, brand_id, currency)
    else:
        raw = _by_catalogue(scope, group_by, date_from, date_to, brand_id, currency)
    currencies = sorted({r[2] for r in raw})
    if len(currencies) > 1:
        raise ReportError(
            f"The rows are in several currencies ({', '.join(currencies)}):"
            " choose one with currency=.",
            code="currency_required",
            field="currency",
            currencies=currencies,
        )
    # The sums come with two decimals (cast in SQL): tens of thousands of rows at month
    # end, so nothing per value here but the closing and the totals.
    rows: list[dict[str, Any]] = []
    t_opening = t_credit = t_debit = t_closing = ZERO
    for ident, key, cur, opening, credit, debit in raw:
        closing = opening + credit - debit
        rows.append(
            {
                "id": ident,
                "key": key,
                "currency": cur,
                "opening": opening,
                "credit": credit,
                "debit": debit,
                "closing": closing,
            }
        )
        t_opening += opening
        t_credit += credit
        t_debit += debit
        t_closing += closing
    totals = {"opening": t_opening, "credit": t_credit, "debit": t_debit, "closing": t_closing}
    top = heapq.nlargest(20, rows, key=lambda r: r["credit"] + r["debit"])
    return Report(
        name="turnover",
        title=f"Turnover by {group_by}, {date_from} to {date_to}",
        columns=COLUMNS,
        rows=rows,
        totals={**totals, "currency": currencies[0] if currencies else currency},
        header={"from": date_from, "to": date_to, "group_by": group_by},
        chart={
            "type": "bar",
            "labels": [r["key"] for r in top],
            "series": [
                {"name": "Credit", "data": [str(r["credit"]) for r in top]},
                {"name": "Debit", "data": [str(r["debit"]) for r in top]},
            ],
        },
    )
