"""Limits up the payer chain: write-off limits per transaction/day/month, credit period and
credit expiry, and the ``negative_since`` marker they rely on. Time is moved with ``clock``."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.exceptions import (
    CreditLimitExpired,
    CreditPeriodExpired,
    InsufficientFunds,
    WriteOffLimitExceeded,
)
from ledger.services import (
    accrual_post,
    debit_post,
    hold_create,
    payment_post,
    transfer_post,
)

pytestmark = pytest.mark.django_db

D = Decimal


def limit(account, **limits) -> None:
    for name, value in limits.items():
        setattr(account, name, None if value is None else D(value))
    account.save(update_fields=list(limits))


def spent(account) -> tuple:
    account.refresh_from_db()
    return (account.spent_day, account.spent_day_on, account.spent_month, account.spent_month_on)


# --------------------------------------------------------------------------- write-off limits


@pytest.mark.parametrize("period", ["transaction", "day", "month"])
@pytest.mark.parametrize("level", [0, 1, 2], ids=["employee", "department", "payer"])
def test_debit_post_write_off_limit_exceeded_at_each_level(
    chain3, brand, fund, refused, clock, level, period
):
    payer, _, employee = chain3
    fund(payer, "10000.00")
    limited = chain3[::-1][level]
    limit(limited, **{f"write_off_limit_{period}": "100.00"})
    room = D("100.00")
    if period != "transaction":
        debit_post(account=employee, amount="60.00", brand=brand)
        room -= D("60.00")
        if period == "month":
            clock.advance(days=1)  # a new day of the same month: only the month counter binds
    too_much = room + D("0.01")
    with refused(WriteOffLimitExceeded, "write_off_limit_exceeded") as info:
        debit_post(account=employee, amount=too_much, brand=brand)
    assert info.value.details == {
        "account": limited.number,
        "period": period,
        "limit": "100.00",
        "remaining": str(room),
        "requested": str(too_much),
    }
    debit_post(account=employee, amount=room, brand=brand)  # exactly the room left is fine
    payer.refresh_from_db()
    assert payer.balance == D("10000.00") - D("100.00")


def test_debit_post_shared_department_limit_counts_every_employee(
    make_account, brand, fund, refused
):
    payer = make_account()
    department = make_account(parent=payer, write_off_limit_day=D("100.00"))
    alice = make_account(parent=department, write_off_limit_day=D("80.00"))
    bob = make_account(parent=department)
    fund(payer, "1000.00")
    debit_post(account=alice, amount="60.00", brand=brand)
    with refused(WriteOffLimitExceeded) as info:
        debit_post(account=bob, amount="40.01", brand=brand)
    assert info.value.details["account"] == department.number
    debit_post(account=bob, amount="40.00", brand=brand)
    # Alice's own limit is hers alone: Bob's spending did not touch it.
    assert spent(alice)[0] == D("60.00")
    assert spent(bob)[0] == D("40.00")
    assert spent(department)[0] == D("100.00")
    assert spent(payer)[0] == D("100.00")


def test_debit_post_limits_checked_before_funds(make_account, brand, refused):
    account = make_account(write_off_limit_transaction=D("10.00"))
    with refused(WriteOffLimitExceeded):
        debit_post(account=account, amount="20.00", brand=brand)


def test_write_off_counters_reset_on_a_new_day_and_a_new_month(make_account, brand, fund, clock):
    account = make_account(write_off_limit_day=D("100.00"), write_off_limit_month=D("250.00"))
    fund(account, "1000.00")
    clock.set(2026, 3, 30, 23, 59)
    debit_post(account=account, amount="100.00", brand=brand)
    with pytest.raises(WriteOffLimitExceeded) as info:
        debit_post(account=account, amount="0.01", brand=brand)
    assert info.value.details["period"] == "day"

    clock.set(2026, 3, 31, 0, 1)  # next day: day room is back, the month keeps counting
    debit_post(account=account, amount="100.00", brand=brand)
    assert spent(account) == (D("100.00"), clock.today, D("200.00"), clock.today.replace(day=1))
    with pytest.raises(WriteOffLimitExceeded) as info:
        debit_post(account=account, amount="50.01", brand=brand)  # day allows 0, month 50
    assert info.value.details["period"] == "day"

    # 21:30 UTC on 31 March is already 1 April in Moscow: a new business month.
    clock.now = datetime(2026, 3, 31, 21, 30, tzinfo=UTC)
    debit_post(account=account, amount="100.00", brand=brand)
    assert spent(account) == (
        D("100.00"),
        clock.today,
        D("100.00"),
        clock.today.replace(day=1),
    )
    assert clock.today.month == 4
    account.refresh_from_db()
    assert account.balance == D("700.00")


def test_transfer_post_counts_against_the_senders_limits(make_account, fund, refused):
    sender = make_account(write_off_limit_day=D("50.00"))
    receiver = make_account(write_off_limit_day=D("1.00"))
    fund(sender, "100.00")
    transfer_post(from_account=sender, to_account=receiver, amount="50.00")
    with refused(WriteOffLimitExceeded) as info:
        transfer_post(from_account=sender, to_account=receiver, amount="0.01")
    assert info.value.details["account"] == sender.number
    assert spent(receiver)[0] == D("0.00")  # receiving is not a write-off


# --------------------------------------------------------------------------- credit period


def test_debit_post_credit_period_expired(make_account, brand, refused, clock):
    account = make_account(credit_limit=D("100.00"), credit_period_days=10)
    debit_post(account=account, amount="50.00", brand=brand)
    went_negative = clock.now
    clock.advance(days=10, seconds=-1)  # the last second of the period
    debit_post(account=account, amount="10.00", brand=brand)
    clock.advance(seconds=1)
    with refused(CreditPeriodExpired, "credit_period_expired") as info:
        debit_post(account=account, amount="0.01", brand=brand)
    assert info.value.details == {"account": account.number, "balance": "-60.00"}
    with refused(CreditPeriodExpired, "credit_period_expired"):
        hold_create(account=account, amount="0.01", brand=brand)
    other = make_account()
    with refused(CreditPeriodExpired, "credit_period_expired"):
        transfer_post(from_account=account, to_account=other, amount="0.01")
    account.refresh_from_db()
    assert account.negative_since == went_negative

    # Paying back part of the debt does not restart the clock ...
    payment_post(account=account, amount="59.00")
    with refused(CreditPeriodExpired):
        debit_post(account=account, amount="0.01", brand=brand)
    # ... but paying it all back does, and the credit line is usable again.
    payment_post(account=account, amount="1.00")
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (D("0.00"), None)
    debit_post(account=account, amount="30.00", brand=brand)
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (D("-30.00"), clock.now)


def test_debit_post_credit_period_over_but_own_funds_still_spendable(make_account, brand, clock):
    account = make_account(credit_limit=D("100.00"), credit_period_days=0)
    accrual_post(account=account, amount="10.00", brand=brand)  # in debt since now
    payment_post(account=account, amount="40.00")  # +30, debt cleared
    debit_post(account=account, amount="30.00", brand=brand)  # own funds only
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (D("0.00"), None)


def test_debit_post_subaccount_credit_period_is_the_payers(chain3, brand, refused, clock):
    payer, _, employee = chain3
    limit(payer, credit_limit="500.00")
    payer.credit_period_days = 3
    payer.save(update_fields=["credit_period_days"])
    debit_post(account=employee, amount="100.00", brand=brand)
    clock.advance(days=3)
    with refused(CreditPeriodExpired) as info:
        debit_post(account=employee, amount="1.00", brand=brand)
    assert info.value.details["account"] == payer.number


# --------------------------------------------------------------------------- credit expiry


def test_debit_post_credit_limit_expired(make_account, brand, fund, refused, clock):
    account = make_account(credit_limit=D("100.00"), credit_expires_at=clock.today)
    fund(account, "20.00")
    debit_post(account=account, amount="50.00", brand=brand)  # valid through its expiry date
    clock.set(2026, 3, 15, 0, 0)
    with refused(CreditLimitExpired, "credit_limit_expired") as info:
        debit_post(account=account, amount="0.01", brand=brand)
    assert info.value.details == {"account": account.number, "balance": "-30.00"}
    with refused(CreditLimitExpired, "credit_limit_expired"):
        hold_create(account=account, amount="0.01", brand=brand)
    payment_post(account=account, amount="40.00")
    debit_post(account=account, amount="10.00", brand=brand)  # own funds are still spendable
    with refused(CreditLimitExpired, "credit_limit_expired"):
        debit_post(account=account, amount="0.01", brand=brand)


def test_debit_post_expiry_without_credit_limit_is_plain_insufficient_funds(
    make_account, brand, clock, refused
):
    account = make_account(credit_expires_at=clock.today - timedelta(days=1))
    with refused(InsufficientFunds, "insufficient_funds"):
        debit_post(account=account, amount="0.01", brand=brand)


# --------------------------------------------------------------------------- negative_since


def test_negative_since_follows_the_sign_of_the_balance(make_account, brand, clock):
    account = make_account()
    history = []
    steps = [
        (accrual_post, {"amount": "10.00", "brand": brand}),
        (accrual_post, {"amount": "5.00", "brand": brand}),
        (payment_post, {"amount": "14.99"}),
        (payment_post, {"amount": "0.01"}),
        (payment_post, {"amount": "1.00"}),
        (accrual_post, {"amount": "3.00", "brand": brand}),
    ]
    for service, kwargs in steps:
        service(account=account, **kwargs)
        account.refresh_from_db()
        history.append((account.balance, account.negative_since))
        clock.advance(hours=1)
    start = clock.now - timedelta(hours=len(steps))
    assert history == [
        (D("-10.00"), start),
        (D("-15.00"), start),
        (D("-0.01"), start),
        (D("0.00"), None),
        (D("1.00"), None),
        (D("-2.00"), start + timedelta(hours=5)),
    ]
