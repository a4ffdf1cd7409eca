"""Account statement: opening balance, the movements of the period, closing balance."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import Q, Sum

from accounts.models import Account
from accounts.selectors import account_is_shared
from core.api.scope import Scope
from ledger.models import Entry
from reports.db import reporting_alias
from reports.standard.base import (
    ZERO,
    Column,
    Report,
    check_period,
    day_start,
    next_day_start,
)

COLUMNS = [
    Column("created_at", "Date and time", "datetime"),
    Column("kind", "Operation"),
    Column("amount", "Amount", "money"),
    Column("balance_after", "Balance after", "money"),
    Column("memo", "Memo"),
]


def _balance_before(account: Account, moment) -> Decimal:
    """The payer's balance right before ``moment`` (one index lookup)."""
    value = (
        Entry.objects.using(reporting_alias())
        .filter(account_id=account.pk, balance_after__isnull=False, created_at__lt=moment)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    return ZERO if value is None else value


def statement(scope: Scope, account: Account, date_from: date, date_to: date) -> Report:
    """The statement of ``account`` (already found in ``scope``) for the days given, inclusive.

    A root account's opening and closing are its balance before the first day and at
    the end of the last (``balance_after`` lookups); a sub-account's (its own postings,
    drawn on the payer) and a partner's view of a shared account (only the postings it
    may read) are the sums of what the statement shows. ``credit`` is money in,
    ``debit`` money out.
    """
    check_period(date_from, date_to)
    start, end = day_start(date_from), next_day_start(date_to)
    entries = Entry.objects.using(reporting_alias()).select_related(None)
    partial = account.parent_id is not None or account_is_shared(scope, account.pk)
    if account.parent_id is not None:
        entries = entries.filter(subaccount_id=account.pk)
    else:
        entries = entries.filter(account_id=account.pk)
    if scope.brand_ids is not None and account_is_shared(scope, account.pk):
        entries = entries.filter(
            Q(transaction__brand_id__in=scope.brand_ids) | Q(transaction__caller=scope.caller.ref)
        )
    period = entries.filter(created_at__gte=start, created_at__lt=end)
    rows = list(
        period.order_by("created_at", "id").values_list(
            "created_at", "transaction__kind", "amount", "balance_after", "transaction__memo"
        )
    )
    credit = sum((r[2] for r in rows if r[2] > 0), ZERO)
    debit = -sum((r[2] for r in rows if r[2] < 0), ZERO)
    if partial:
        opening = entries.filter(created_at__lt=start).aggregate(s=Sum("amount"))["s"] or ZERO
        closing = opening + credit - debit
    else:
        opening = _balance_before(account, start)
        closing = rows[-1][3] if rows else opening
    return Report(
        name="statement",
        title=f"Statement of account {account.number}, {date_from} to {date_to}",
        columns=COLUMNS,
        rows=[
            {
                "created_at": r[0],
                "kind": r[1],
                "amount": r[2],
                "balance_after": None if partial else r[3],
                "memo": r[4],
            }
            for r in rows
        ],
        header={
            "account": account.number,
            "currency": account.currency,
            "from": date_from,
            "to": date_to,
            "opening": opening,
            "closing": closing,
        },
        totals={"credit": credit, "debit": debit},
        chart={
            "type": "line",
            "labels": [r[0].isoformat() for r in rows],
            "series": [{"name": "Balance", "data": [str(r[3]) for r in rows]}]
            if not partial
            else [],
        },
    )
