"""Debt aging: per account in debt at the end of a day, the debt and its age bucket.

The debt is the payer's negative balance. Its age is that of the oldest charge it
still contains: payments settle the oldest charges first (as invoicing allocates them),
so the debt is made of the most recent charges; walking an account's daily charges
back from the day, the day at which they add up to the debt is the oldest unpaid one.
For accounts billed by invoices that is the oldest unpaid invoice's charge. Read from
the daily and monthly account projections.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from core.api.scope import Scope
from reports.models import AccountDayTurnover, AccountMonthTurnover
from reports.standard.base import ZERO, Column, Report, ReportError, cents, fetch

BUCKETS = ("0-30", "31-60", "61-90", "90+")

COLUMNS = [
    Column("number", "Account"),
    Column("currency", "Currency"),
    Column("debt", "Debt", "money"),
    Column("oldest_unpaid_on", "Oldest unpaid charge", "date"),
    Column("age_days", "Age (days)", "int"),
    Column("bucket", "Bucket"),
]


def bucket_of(age_days: int) -> str:
    if age_days <= 30:
        return "0-30"
    if age_days <= 60:
        return "31-60"
    if age_days <= 90:
        return "61-90"
    return "90+"


def _scope_sql(scope: Scope) -> str:
    if scope.brand_ids is None:
        return "TRUE"
    # A partner sees the debt of its accounts that no other brand shares.
    return """
        EXISTS (SELECT 1 FROM accounts_account_brands ab
                 WHERE ab.account_id = a.id AND ab.brand_id = ANY(%(scope_brands)s))
        AND NOT EXISTS (SELECT 1 FROM accounts_account_brands ab
                         WHERE ab.account_id = a.id AND NOT ab.brand_id = ANY(%(scope_brands)s))
    """


def debt_aging(scope: Scope, *, at: date, currency: str | None = None) -> Report:
    month = at.replace(day=1)
    sql = f"""
    WITH balances AS (
        SELECT account_id, currency, SUM(net) AS balance FROM (
            SELECT account_id, currency, credit - debit AS net
              FROM {AccountMonthTurnover._meta.db_table} WHERE month < %(month)s
            UNION ALL
            SELECT account_id, currency, credit - debit
              FROM {AccountDayTurnover._meta.db_table}
             WHERE day >= %(month)s AND day <= %(at)s
        ) moves
        WHERE (%(currency)s::text IS NULL OR currency = %(currency)s)
        GROUP BY account_id, currency
        HAVING SUM(net) < 0
    ),
    charges AS (
        SELECT d.account_id, d.currency, d.day,
               SUM(SUM(d.debit)) OVER (PARTITION BY d.account_id, d.currency
                                       ORDER BY d.day DESC) AS back_to_here
          FROM {AccountDayTurnover._meta.db_table} d
          JOIN balances b ON b.account_id = d.account_id AND b.currency = d.currency
         WHERE d.day <= %(at)s AND d.debit > 0
         GROUP BY d.account_id, d.currency, d.day
    ),
    oldest AS (
        SELECT c.account_id, c.currency, max(c.day) AS day
          FROM charges c JOIN balances b ON b.account_id = c.account_id
                                        AND b.currency = c.currency
         WHERE c.back_to_here >= -b.balance
         GROUP BY c.account_id, c.currency
    )
    SELECT a.id, a.number, b.currency, -b.balance, o.day
      FROM balances b
      JOIN accounts_account a ON a.id = b.account_id AND a.kind = 'client'
      LEFT JOIN oldest o ON o.account_id = b.account_id AND o.currency = b.currency
     WHERE {_scope_sql(scope)}
     ORDER BY a.number, b.currency
    """
    raw = fetch(
        sql,
        {
            "month": month,
            "at": at,
            "currency": currency,
            "scope_brands": sorted(scope.brand_ids or ()),
        },
    )
    currencies = sorted({r[2] for r in raw})
    if len(currencies) > 1:
        raise ReportError(
            f"The debts are in several currencies ({', '.join(currencies)}):"
            " choose one with currency=.",
            code="currency_required",
            field="currency",
            currencies=currencies,
        )
    rows = []
    totals: dict[str, Decimal] = {bucket: ZERO for bucket in BUCKETS}
    for account_id, number, cur, debt, oldest in raw:
        age = (at - oldest).days if oldest is not None else 0
        bucket = bucket_of(age)
        rows.append(
            {
                "account": account_id,
                "number": number,
                "currency": cur,
                "debt": cents(debt),
                "oldest_unpaid_on": oldest,
                "age_days": age,
                "bucket": bucket,
            }
        )
        totals[bucket] += cents(debt)
    return Report(
        name="debt_aging",
        title=f"Debt aging at {at}",
        columns=COLUMNS,
        rows=rows,
        totals={"debt": sum(totals.values(), ZERO), "buckets": totals},
        header={"at": at},
        chart={
            "type": "bar",
            "labels": list(BUCKETS),
            "series": [{"name": "Debt", "data": [str(totals[b]) for b in BUCKETS]}],
        },
    )
