"""transfer_post: funds from one payer to another, the sender checked like a debit."""

from decimal import Decimal

import pytest

from accounts.services import account_block, account_close
from ledger.exceptions import (
    AccountBlocked,
    AccountClosed,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidOperation,
)
from ledger.models import Entry, Transaction
from ledger.services import debit_post, hold_create, transfer_post

pytestmark = pytest.mark.django_db

D = Decimal


def entries_of(txn: Transaction) -> list[tuple]:
    return list(
        Entry.objects.filter(transaction_id=txn.pk)
        .order_by("id")
        .values_list("account_id", "subaccount_id", "amount", "balance_after")
    )


def test_transfer_post_moves_funds_between_payers(make_account, fund, clock):
    sender, receiver = make_account(), make_account()
    fund(sender, "100.00")
    fund(receiver, "5.00")
    txn = transfer_post(
        from_account=sender, to_account=receiver, amount="30.00", memo="gift", metadata={"a": 1}
    )
    sender.refresh_from_db()
    receiver.refresh_from_db()
    assert (sender.balance, receiver.balance) == (D("70.00"), D("35.00"))
    assert entries_of(txn) == [
        (sender.pk, None, D("-30.00"), D("70.00")),
        (receiver.pk, None, D("30.00"), D("35.00")),
    ]
    stored = Transaction.objects.get(pk=txn.pk)
    assert (stored.kind, stored.account_id, stored.counter_account_id, stored.amount) == (
        "transfer",
        sender.pk,
        receiver.pk,
        D("30.00"),
    )
    assert (stored.memo, stored.metadata) == ("gift", {"a": 1})
    assert (sender.spent_day, sender.spent_day_on) == (D("30.00"), clock.today)
    assert receiver.spent_day == D("0.00")


def test_transfer_post_between_subaccounts_of_different_payers(make_account, fund):
    payer_a, payer_b = make_account(), make_account()
    sub_a = make_account(parent=payer_a)
    sub_b = make_account(parent=make_account(parent=payer_b))
    fund(payer_a, "50.00")
    txn = transfer_post(from_account=sub_a, to_account=sub_b, amount="20.00")
    payer_a.refresh_from_db()
    payer_b.refresh_from_db()
    assert (payer_a.balance, payer_b.balance) == (D("30.00"), D("20.00"))
    assert entries_of(txn) == [
        (payer_a.pk, sub_a.pk, D("-20.00"), D("30.00")),
        (payer_b.pk, sub_b.pk, D("20.00"), D("20.00")),
    ]


def test_transfer_post_on_credit_and_into_a_blocked_account(make_account, clock):
    sender = make_account(credit_limit=D("100.00"))
    receiver = make_account()
    account_block(account=receiver, reason="dispute")  # receiving is still allowed
    transfer_post(from_account=sender, to_account=receiver, amount="100.00")
    sender.refresh_from_db()
    receiver.refresh_from_db()
    assert (sender.balance, sender.negative_since) == (D("-100.00"), clock.now)
    assert (receiver.balance, receiver.negative_since) == (D("100.00"), None)


def test_transfer_post_repays_the_receivers_debt(make_account, brand):
    sender, receiver = make_account(credit_limit=D("10.00")), make_account(credit_limit=D("10.00"))
    debit_post(account=receiver, amount="10.00", brand=brand)
    transfer_post(from_account=sender, to_account=receiver, amount="10.00")
    sender.refresh_from_db()
    receiver.refresh_from_db()
    assert (receiver.balance, receiver.negative_since) == (D("0.00"), None)
    assert sender.negative_since is not None


@pytest.mark.parametrize(
    ("hold", "amount", "available"), [(None, "50.01", "50.00"), ("20.00", "30.01", "30.00")]
)
def test_transfer_post_insufficient_funds(
    make_account, brand, fund, refused, hold, amount, available
):
    sender, receiver = make_account(), make_account()
    fund(sender, "50.00")
    if hold:
        hold_create(account=sender, amount=hold, brand=brand)
    with refused(InsufficientFunds, "insufficient_funds") as info:
        transfer_post(from_account=sender, to_account=receiver, amount=amount)
    assert info.value.details["available"] == available


@pytest.mark.parametrize("side", ["sender", "sender_payer"])
def test_transfer_post_blocked_sender_is_refused(make_account, fund, refused, side):
    payer = make_account()
    sender = make_account(parent=payer)
    receiver = make_account()
    fund(payer, "50.00")
    account_block(account=sender if side == "sender" else payer, reason="frozen")
    with refused(AccountBlocked, "account_blocked"):
        transfer_post(from_account=sender, to_account=receiver, amount="1.00")


@pytest.mark.parametrize("side", ["sender", "receiver"])
def test_transfer_post_closed_account_is_refused(make_account, fund, refused, side):
    payer = make_account()
    sender, receiver = make_account(parent=payer), make_account(parent=make_account())
    fund(payer, "50.00")
    closed = sender if side == "sender" else receiver
    account_close(account=closed)
    with refused(AccountClosed, "account_closed") as info:
        transfer_post(from_account=sender, to_account=receiver, amount="1.00")
    assert info.value.details["account"] == closed.number


def test_transfer_post_currency_mismatch(make_account, fund, refused):
    sender, dollars = make_account(), make_account(currency="USD")
    fund(sender, "50.00")
    with refused(CurrencyMismatch, "currency_mismatch") as info:
        transfer_post(from_account=sender, to_account=dollars, amount="1.00")
    assert info.value.details == {"from_currency": "RUB", "to_currency": "USD"}
    roubles = make_account()
    with refused(CurrencyMismatch, "currency_mismatch"):
        transfer_post(from_account=sender, to_account=roubles, amount="1.00", currency="USD")


@pytest.mark.parametrize("pair", ["same_account", "payer_to_sub", "sibling_subs"])
def test_transfer_post_within_one_payer_is_refused(make_account, fund, refused, pair):
    payer = make_account()
    first, second = make_account(parent=payer), make_account(parent=payer)
    fund(payer, "50.00")
    source, target = {
        "same_account": (payer, payer),
        "payer_to_sub": (payer, first),
        "sibling_subs": (first, second),
    }[pair]
    with refused(InvalidOperation, "invalid_operation"):
        transfer_post(from_account=source, to_account=target, amount="1.00")
