"""Penalties: daily rate on overdue debt after the grace days, capped, idempotent per day."""

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing import services
from invoicing.models import Invoice, PenaltyAccrual
from ledger.models import Transaction


@pytest.fixture
def overdue(account, brand, service, subscribe, bill):
    subscribe(account, service, "flat", price="1000.00")
    services.penalty_policy_set(
        brand=brand, daily_rate_percent="0.1", grace_days=2, cap_percent="0.5"
    )
    bill("2026-01")
    return Invoice.objects.get()


def penalties():
    return list(PenaltyAccrual.objects.order_by("accrued_on").values_list("accrued_on", "amount"))


def test_penalty_starts_after_the_grace_days(overdue):
    due = overdue.due_date
    outcome = services.penalties_accrue(on=due + timedelta(days=1))
    overdue.refresh_from_db()
    assert overdue.status == "overdue"
    assert (outcome.overdue_marked, outcome.accrued) == (1, 0)
    services.penalties_accrue(on=due + timedelta(days=2))
    assert penalties() == []
    outcome = services.penalties_accrue(on=due + timedelta(days=3))
    assert outcome.accrued == 1
    assert penalties() == [(due + timedelta(days=3), Decimal("1.00"))]
    txn = Transaction.objects.get(kind="accrual", metadata__penalty=True)
    assert (txn.subject_type, txn.subject_id, txn.amount) == (
        "invoice",
        str(overdue.pk),
        Decimal("1.00"),
    )


def test_penalty_accrued_once_per_day(account, overdue):
    day = overdue.due_date + timedelta(days=5)
    services.penalties_accrue(on=day)
    account.refresh_from_db()
    balance = account.balance
    again = services.penalties_accrue(on=day)
    account.refresh_from_db()
    assert again.accrued == 0
    assert account.balance == balance
    assert len(penalties()) == 1


def test_penalty_on_the_outstanding_amount_and_capped(account, overdue, pay):
    start = overdue.due_date + timedelta(days=3)
    services.penalties_accrue(on=start)
    pay(account, "500.00")  # half paid: the base halves
    services.penalties_accrue(on=start + timedelta(days=1))
    assert [amount for _day, amount in penalties()] == [Decimal("1.00"), Decimal("0.50")]
    for offset in range(2, 20):
        services.penalties_accrue(on=start + timedelta(days=offset))
    # The cap is 0.5 % of the invoice total: 5.00 in all, never more.
    assert sum(amount for _day, amount in penalties()) == Decimal("5.00")


def test_no_penalty_without_a_policy_or_once_paid(account, brand, overdue, pay):
    brand.penalty_policy.delete()
    services.penalties_accrue(on=overdue.due_date + timedelta(days=10))
    assert penalties() == []
    services.penalty_policy_set(brand=brand, daily_rate_percent="0.1")
    pay(account, "1000.00")
    services.penalties_accrue(on=overdue.due_date + timedelta(days=11))
    assert penalties() == []
