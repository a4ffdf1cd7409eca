"""The projections' figures computed in Python from the ledger's rows (independent of the
projector's SQL), and the projections' rows as dictionaries, for comparison."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.utils import timezone

from ledger.models import Entry
from reports.models import AccountDayTurnover, AccountMonthTurnover, DailyTurnover

ZERO = Decimal("0.00")


def _add(table: dict, key: tuple, amount: Decimal) -> None:
    credit, debit, count = table[key]
    if amount > 0:
        credit += amount
    else:
        debit -= amount
    table[key] = (credit, debit, count + 1)


def ledger_figures() -> dict[str, dict]:
    daily: dict = defaultdict(lambda: (ZERO, ZERO, 0))
    month: dict = defaultdict(lambda: (ZERO, ZERO, 0))
    day: dict = defaultdict(lambda: (ZERO, ZERO, 0))
    for entry in Entry.objects.select_related("transaction").order_by("id"):
        txn = entry.transaction
        on = timezone.localtime(entry.created_at).date()
        if entry.balance_after is not None:
            key = (on, txn.brand_id, txn.service_id, txn.kind, entry.currency)
            _add(daily, key, entry.amount)
        _add(
            month, (entry.account_id, on.replace(day=1), txn.brand_id, entry.currency), entry.amount
        )
        _add(day, (entry.account_id, on, txn.brand_id, entry.currency), entry.amount)
    return {"daily": dict(daily), "month": dict(month), "day": dict(day)}


def projection_figures() -> dict[str, dict]:
    def rows(model, *keys):
        return {
            tuple(getattr(r, k) for k in keys): (r.credit, r.debit, r.entries)
            for r in model.objects.all()
        }

    return {
        "daily": rows(DailyTurnover, "day", "brand_id", "service_id", "kind", "currency"),
        "month": rows(AccountMonthTurnover, "account_id", "month", "brand_id", "currency"),
        "day": rows(AccountDayTurnover, "account_id", "day", "brand_id", "currency"),
    }
