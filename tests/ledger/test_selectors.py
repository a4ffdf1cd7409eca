"""Reads: account_balance (now and at a past moment), history with keyset pagination."""

from datetime import timedelta
from decimal import Decimal

import pytest

from ledger.selectors import (
    account_balance,
    account_history,
    balance_at,
    held_at,
    transactions_for_account,
)
from ledger.services import (
    debit_post,
    hold_capture,
    hold_create,
    hold_void,
    payment_post,
    transfer_post,
)

pytestmark = pytest.mark.django_db

D = Decimal


def figures(view) -> tuple:
    return (view.balance, view.held, view.available, view.credit_limit, view.credit_available)


# --------------------------------------------------------------------------- account_balance


def test_account_balance_of_a_payer(make_account, brand, fund, clock):
    account = make_account(credit_limit=D("50.00"))
    fund(account, "100.00")
    hold_create(account=account, amount="30.00", brand=brand)
    view = account_balance(account)
    assert figures(view) == (D("100.00"), D("30.00"), D("120.00"), D("50.00"), D("50.00"))
    assert (view.payer.pk, view.currency, view.as_of, view.write_off_remaining) == (
        account.pk,
        "RUB",
        clock.now,
        None,
    )


@pytest.mark.parametrize(
    ("debit", "hold", "expected"),
    [
        # (balance, held, available, credit limit, credit available)
        ("20.00", None, ("-20.00", "0.00", "80.00", "100.00", "80.00")),
        ("20.00", "10.00", ("-20.00", "10.00", "70.00", "100.00", "70.00")),
        ("100.00", None, ("-100.00", "0.00", "0.00", "100.00", "0.00")),
    ],
)
def test_account_balance_with_credit_in_use(make_account, brand, debit, hold, expected):
    account = make_account(credit_limit=D("100.00"))
    debit_post(account=account, amount=debit, brand=brand)
    if hold:
        hold_create(account=account, amount=hold, brand=brand)
    assert figures(account_balance(account)) == tuple(D(v) for v in expected)


def test_account_balance_expired_credit_is_not_available(make_account, fund, clock):
    account = make_account(credit_limit=D("100.00"), credit_expires_at=clock.today)
    fund(account, "50.00")
    view = account_balance(account)
    assert (view.available, view.credit_available) == (D("150.00"), D("100.00"))
    clock.advance(days=1)
    view = account_balance(account)
    assert figures(view) == (D("50.00"), D("0.00"), D("50.00"), D("100.00"), D("0.00"))


def test_account_balance_credit_period_over_hides_the_credit(make_account, brand, clock):
    account = make_account(credit_limit=D("100.00"), credit_period_days=5)
    debit_post(account=account, amount="40.00", brand=brand)
    assert (account_balance(account).available, account_balance(account).credit_available) == (
        D("60.00"),
        D("60.00"),
    )
    clock.advance(days=5)
    view = account_balance(account)
    # No usable credit: nothing may be spent until the debt is repaid (available is
    # never shown below zero; the debt is in the balance).
    assert figures(view) == (D("-40.00"), D("0.00"), D("0.00"), D("100.00"), D("0.00"))


def test_account_balance_of_a_subaccount_shows_payer_funds_and_chain_limit_room(
    chain3, brand, fund, clock
):
    payer, department, employee = chain3
    payer.credit_limit = D("200.00")
    payer.save(update_fields=["credit_limit"])
    department.write_off_limit_month = D("60.00")
    department.save(update_fields=["write_off_limit_month"])
    employee.write_off_limit_day = D("100.00")
    employee.write_off_limit_transaction = D("45.00")
    employee.save(update_fields=["write_off_limit_day", "write_off_limit_transaction"])
    fund(payer, "100.00")
    debit_post(account=employee, amount="30.00", brand=brand)
    hold_create(account=payer, amount="10.00", brand=brand)
    view = account_balance(employee)
    assert view.payer.pk == payer.pk
    assert view.account.pk == employee.pk
    assert figures(view) == (D("70.00"), D("10.00"), D("260.00"), D("200.00"), D("200.00"))
    # employee: transaction 45, day 100 - 30 = 70; department: month 60 - 30 = 30.
    assert view.write_off_remaining == D("30.00")
    assert account_balance(department).write_off_remaining == D("30.00")
    assert account_balance(payer).write_off_remaining is None
    debit_post(account=employee, amount="30.00", brand=brand)
    assert account_balance(employee).write_off_remaining == D("0.00")
    # Next month the department's room is whole again; the employee's per-transaction cap binds.
    clock.set(2026, 4, 1, 10, 0)
    assert account_balance(employee).write_off_remaining == D("45.00")


# --------------------------------------------------------------------------- past moments


def test_account_balance_at_a_past_moment(make_account, brand, fund, clock):
    payer = make_account()
    employee = make_account(parent=payer)
    start = clock.now
    fund(payer, "100.00")
    t_debit = clock.advance(hours=1)
    debit_post(account=employee, amount="30.00", brand=brand)
    t_hold = clock.advance(hours=1)
    hold = hold_create(account=employee, amount="20.00", brand=brand)
    t_pay = clock.advance(hours=1)
    payment_post(account=payer, amount="10.00")
    t_capture = clock.advance(hours=1)
    hold_capture(hold=hold, amount="5.00")
    clock.advance(hours=1)

    def at(moment):
        view = account_balance(employee, at=moment)
        assert view.as_of == moment
        assert view.write_off_remaining is None
        return (view.balance, view.held, view.available)

    assert at(start - timedelta(seconds=1)) == (D("0.00"), D("0.00"), D("0.00"))
    assert at(start) == (D("100.00"), D("0.00"), D("100.00"))
    assert at(t_debit - timedelta(seconds=1)) == (D("100.00"), D("0.00"), D("100.00"))
    assert at(t_debit) == (D("70.00"), D("0.00"), D("70.00"))
    assert at(t_hold) == (D("70.00"), D("20.00"), D("50.00"))
    assert at(t_pay + timedelta(minutes=30)) == (D("80.00"), D("20.00"), D("60.00"))
    assert at(t_capture) == (D("75.00"), D("0.00"), D("75.00"))
    assert at(clock.now) == (D("75.00"), D("0.00"), D("75.00"))
    assert balance_at(payer, t_hold) == D("70.00")
    assert held_at(payer, t_capture - timedelta(seconds=1)) == D("20.00")


def test_balance_at_several_postings_in_the_same_instant_takes_the_last(account, fund, clock):
    fund(account, "10.00")
    fund(account, "5.00")
    assert balance_at(account, clock.now) == D("15.00")


# --------------------------------------------------------------------------- history


def test_account_history_keyset_pagination(account, brand, fund, clock):
    amounts = ["10.00", "20.00", "30.00", "40.00", "50.00"]
    for amount in amounts:
        fund(account, amount)
        clock.advance(minutes=1)
    pages = []
    before_id = None
    while True:
        page = account_history(account, before_id=before_id, limit=2)
        if not page:
            break
        pages.append([e.amount for e in page])
        before_id = page[-1].id
    assert pages == [
        [D("50.00"), D("40.00")],
        [D("30.00"), D("20.00")],
        [D("10.00")],
    ]
    newest = account_history(account, limit=1)[0]
    assert (newest.balance_after, newest.transaction.kind) == (D("150.00"), "payment")


def test_account_history_date_filters(account, brand, fund, clock):
    start = clock.now
    for amount in ["1.00", "2.00", "3.00", "4.00"]:
        fund(account, amount)
        clock.advance(days=1)
    window = account_history(
        account, created_from=start + timedelta(days=1), created_to=start + timedelta(days=3)
    )
    assert [e.amount for e in window] == [D("3.00"), D("2.00")]  # ``to`` is exclusive
    assert [e.amount for e in account_history(account, created_from=start + timedelta(days=3))] == [
        D("4.00")
    ]
    assert [
        e.amount for e in account_history(account, created_to=start + timedelta(seconds=1))
    ] == [D("1.00")]
    paged = account_history(account, created_from=start, before_id=window[0].id, limit=10)
    assert [e.amount for e in paged] == [D("2.00"), D("1.00")]


def test_account_history_of_subaccounts_and_their_payer(make_account, brand, fund, clock):
    payer = make_account()
    alice, bob = make_account(parent=payer), make_account(parent=payer)
    fund(payer, "100.00")
    t_alice = clock.advance(minutes=1)
    debit_post(account=alice, amount="11.00", brand=brand)
    clock.advance(minutes=1)
    debit_post(account=bob, amount="22.00", brand=brand)
    clock.advance(minutes=1)
    hold_void(hold=hold_create(account=alice, amount="5.00", brand=brand))  # no entries
    debit_post(account=alice, amount="33.00", brand=brand)

    alice_history = account_history(alice)
    assert [(e.amount, e.account_id, e.subaccount_id) for e in alice_history] == [
        (D("-33.00"), payer.pk, alice.pk),
        (D("-11.00"), payer.pk, alice.pk),
    ]
    assert [e.balance_after for e in alice_history] == [D("34.00"), D("89.00")]
    assert [e.amount for e in account_history(bob)] == [D("-22.00")]
    assert [e.amount for e in account_history(payer)] == [
        D("-33.00"),
        D("-22.00"),
        D("-11.00"),
        D("100.00"),
    ]
    assert [e.amount for e in account_history(alice, before_id=alice_history[0].id)] == [
        D("-11.00")
    ]
    assert [
        e.amount for e in account_history(alice, created_to=t_alice + timedelta(seconds=1))
    ] == [D("-11.00")]


def test_transactions_for_account_includes_transfers_both_ways(make_account, fund):
    first, second = make_account(), make_account()
    fund(first, "10.00")
    out = transfer_post(from_account=first, to_account=second, amount="4.00")
    back = transfer_post(from_account=second, to_account=first, amount="1.00")
    assert set(transactions_for_account(second).values_list("pk", flat=True)) == {out.pk, back.pk}
    assert transactions_for_account(first).count() == 3
