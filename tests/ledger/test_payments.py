"""Money in and out without a brand: payment_post, refund_post, adjustment_post."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from accounts.models import Account
from accounts.services import account_block, account_close
from ledger.exceptions import (
    AccountClosed,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidOperation,
    PermissionDenied,
)
from ledger.models import Entry, Transaction
from ledger.selectors import system_account_balance
from ledger.services import (
    Caller,
    ValidationFailed,
    adjustment_post,
    debit_post,
    hold_create,
    payment_post,
    refund_post,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def system_account(key: str) -> Account:
    return Account.objects.get(system_key=key)


def entries_of(txn: Transaction) -> list[tuple]:
    """(account id, sub-account id, amount, balance_after) of each entry, in posting order."""
    return list(
        Entry.objects.filter(transaction_id=txn.pk)
        .order_by("id")
        .values_list("account_id", "subaccount_id", "amount", "balance_after")
    )


# --------------------------------------------------------------------------- payment_post


def test_payment_post_credits_client_and_debits_channel_clearing(account, clock):
    first = payment_post(
        account=account, amount="150.25", channel="card", external_id="gw-1", memo="top-up"
    )
    second = payment_post(account=account, amount=Decimal("49.75"), channel="card")
    account.refresh_from_db()
    assert account.balance == Decimal("200.00")
    assert account.negative_since is None
    clearing = system_account("clearing:RUB:card")
    assert entries_of(first) == [
        (account.pk, None, Decimal("150.25"), Decimal("150.25")),
        (clearing.pk, None, Decimal("-150.25"), None),
    ]
    assert entries_of(second)[0] == (account.pk, None, Decimal("49.75"), Decimal("200.00"))
    assert system_account_balance(clearing) == Decimal("-200.00")
    stored = Transaction.objects.get(pk=first.pk)
    assert (stored.kind, stored.amount, stored.currency, stored.channel) == (
        "payment",
        Decimal("150.25"),
        "RUB",
        "card",
    )
    assert (stored.external_id, stored.memo, stored.caller, stored.created_at) == (
        "gw-1",
        "top-up",
        "system",
        clock.now,
    )
    assert first.replayed is False


@pytest.mark.parametrize("channel", [c for c, _ in Account.Channel.choices])
def test_payment_post_each_channel_has_its_own_clearing_account(account, channel):
    payment_post(account=account, amount="10.00", channel=channel)
    assert system_account_balance(system_account(f"clearing:RUB:{channel}")) == Decimal("-10.00")


def test_payment_post_to_subaccount_lands_on_root_payer(chain3):
    payer, department, employee = chain3
    txn = payment_post(account=employee, amount="300.00", channel="bank")
    for acc in chain3:
        acc.refresh_from_db()
    assert (payer.balance, department.balance, employee.balance) == (
        Decimal("300.00"),
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert entries_of(txn)[0] == (payer.pk, employee.pk, Decimal("300.00"), Decimal("300.00"))
    assert Transaction.objects.get(pk=txn.pk).account_id == employee.pk


def test_payment_post_accepted_on_blocked_account_and_clears_debt(account, brand, clock):
    account.credit_limit = Decimal("100.00")
    account.save(update_fields=["credit_limit"])
    debit_post(account=account, amount="80.00", brand=brand)
    went_negative = clock.now
    account.refresh_from_db()
    assert account.negative_since == went_negative
    account_block(account=account, reason="debt")
    clock.advance(days=1)
    payment_post(account=account, amount="50.00")  # a partial repayment keeps the debt's age
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (Decimal("-30.00"), went_negative)
    payment_post(account=account, amount="30.00")
    account.refresh_from_db()
    assert (account.balance, account.negative_since, account.status) == (
        Decimal("0.00"),
        None,
        Account.Status.BLOCKED,
    )


def test_payment_post_refused_on_closed_account(account, refused):
    account_close(account=account)
    with refused(AccountClosed, "account_closed") as info:
        payment_post(account=account, amount="10.00")
    assert info.value.details["account"] == account.number


def test_payment_post_refused_on_closed_subaccount(make_account, refused):
    payer = make_account()
    sub = make_account(parent=payer)
    account_close(account=sub)
    with refused(AccountClosed, "account_closed"):
        payment_post(account=sub, amount="10.00")


def test_payment_post_currency_mismatch(account, refused):
    with refused(CurrencyMismatch, "currency_mismatch") as info:
        payment_post(account=account, amount="10.00", currency="USD")
    assert info.value.details["account_currency"] == "RUB"


def test_payment_post_unknown_channel_is_a_validation_error(account, refused):
    with refused(ValidationFailed, "validation_error") as info:
        payment_post(account=account, amount="10.00", channel="pigeon")
    assert info.value.details["field"] == "channel"


def test_payment_post_to_system_account_is_refused(account, refused):
    payment_post(account=account, amount="1.00", channel="bank")
    clearing = system_account("clearing:RUB:bank")
    with refused(InvalidOperation, "invalid_operation"):
        payment_post(account=clearing, amount="10.00")


# --------------------------------------------------------------------------- refund_post


def test_refund_post_pays_back_own_funds_to_refunds_payable(account, fund):
    fund(account, "100.00")
    txn = refund_post(account=account, amount="40.00", channel="bank", memo="overpaid")
    account.refresh_from_db()
    assert account.balance == Decimal("60.00")
    refunds = system_account("refunds:RUB:bank")
    assert entries_of(txn) == [
        (account.pk, None, Decimal("-40.00"), Decimal("60.00")),
        (refunds.pk, None, Decimal("40.00"), None),
    ]
    assert system_account_balance(refunds) == Decimal("40.00")
    assert Transaction.objects.get(pk=txn.pk).kind == "refund"


def test_refund_post_whole_balance_on_blocked_account(account, fund):
    fund(account, "25.00")
    account_block(account=account, reason="client leaving")
    refund_post(account=account, amount="25.00")
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (Decimal("0.00"), None)


@pytest.mark.parametrize(
    ("credit_limit", "hold", "amount", "available"),
    [
        ("0.00", None, "100.01", "100.00"),  # more than the balance
        ("500.00", None, "100.01", "100.00"),  # credit is never refunded
        ("0.00", "70.00", "30.01", "30.00"),  # held funds are not the client's to take
    ],
)
def test_refund_post_insufficient_own_funds(
    account, brand, fund, refused, credit_limit, hold, amount, available
):
    account.credit_limit = Decimal(credit_limit)
    account.save(update_fields=["credit_limit"])
    fund(account, "100.00")
    if hold:
        hold_create(account=account, amount=hold, brand=brand)
    with refused(InsufficientFunds, "insufficient_funds") as info:
        refund_post(account=account, amount=amount)
    assert info.value.details["available"] == available


def test_refund_post_from_subaccount_is_refused(make_account, fund, refused):
    payer = make_account()
    sub = make_account(parent=payer)
    fund(payer, "100.00")
    with refused(InvalidOperation, "invalid_operation") as info:
        refund_post(account=sub, amount="10.00")
    assert info.value.details["payer"] == payer.number


def test_refund_post_refused_on_closed_account(account, refused):
    account_close(account=account)
    with refused(AccountClosed, "account_closed"):
        refund_post(account=account, amount="1.00")


def test_refund_post_currency_mismatch_and_bad_channel(account, fund, refused):
    fund(account, "10.00")
    with refused(CurrencyMismatch, "currency_mismatch"):
        refund_post(account=account, amount="1.00", currency="EUR")
    with refused(ValidationFailed, "validation_error"):
        refund_post(account=account, amount="1.00", channel="crypto")


# --------------------------------------------------------------------------- adjustment_post


@pytest.mark.parametrize(
    ("amount", "balance", "direction"),
    [
        ("15.50", "115.50", "credit"),
        ("-130.00", "-30.00", "debit"),
        (Decimal("-0.01"), "99.99", "debit"),
    ],
)
def test_adjustment_post_signed_amounts(
    account, fund, staff_user, clock, amount, balance, direction
):
    fund(account, "100.00")
    txn = adjustment_post(
        account=account,
        amount=amount,
        reason="  bank statement correction  ",
        caller=Caller.for_user(staff_user, request_id="req-7"),
    )
    account.refresh_from_db()
    assert account.balance == Decimal(balance)
    assert account.negative_since == (clock.now if account.balance < 0 else None)
    delta = Decimal(balance) - Decimal("100.00")
    adjustments = system_account("adjustments:RUB")
    assert entries_of(txn) == [
        (account.pk, None, delta, Decimal(balance)),
        (adjustments.pk, None, -delta, None),
    ]
    stored = Transaction.objects.get(pk=txn.pk)
    assert (stored.kind, stored.amount, stored.memo) == (
        "adjustment",
        abs(delta),
        "bank statement correction",
    )
    assert stored.metadata == {"direction": direction}
    assert (stored.caller, stored.created_by_id, stored.request_id) == (
        f"user:{staff_user.pk}",
        staff_user.pk,
        "req-7",
    )


def test_adjustment_post_on_subaccount_lands_on_payer(chain3, staff_user):
    payer, _, employee = chain3
    txn = adjustment_post(
        account=employee, amount="-5.00", reason="fix", caller=Caller.for_user(staff_user)
    )
    payer.refresh_from_db()
    assert payer.balance == Decimal("-5.00")
    assert entries_of(txn)[0] == (payer.pk, employee.pk, Decimal("-5.00"), Decimal("-5.00"))


def test_adjustment_post_allowed_on_blocked_refused_on_closed(make_account, staff_user, refused):
    blocked, closed = make_account(), make_account()
    account_block(account=blocked, reason="audit")
    account_close(account=closed)
    caller = Caller.for_user(staff_user)
    adjustment_post(account=blocked, amount="1.00", reason="fix", caller=caller)
    blocked.refresh_from_db()
    assert blocked.balance == Decimal("1.00")
    with refused(AccountClosed, "account_closed"):
        adjustment_post(account=closed, amount="1.00", reason="fix", caller=caller)


@pytest.mark.parametrize("who", ["nobody", "partner", "not_staff", "staff_without_perm"])
def test_adjustment_post_permission_denied(account, refused, who):
    perm = Permission.objects.get(codename="post_adjustment")
    if who == "nobody":
        caller = Caller()
    elif who == "partner":
        caller = Caller.for_partner(1)
    elif who == "not_staff":
        user = UserFactory(is_staff=False)
        user.user_permissions.add(perm)
        caller = Caller.for_user(user)
    else:
        caller = Caller.for_user(UserFactory(is_staff=True))
    with refused(PermissionDenied, "permission_denied"):
        adjustment_post(account=account, amount="10.00", reason="why", caller=caller)


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_adjustment_post_needs_a_reason(account, staff_user, refused, reason):
    with refused(ValidationFailed, "validation_error") as info:
        adjustment_post(
            account=account, amount="1.00", reason=reason, caller=Caller.for_user(staff_user)
        )
    assert info.value.details["field"] == "reason"


@pytest.mark.parametrize(
    "amount",
    [
        "0",
        "-0.00",
        "1.001",
        "-1.001",
        "NaN",
        "-Infinity",
        "Infinity",
        2.5,
        -2.5,
        "abc",
        "",
        None,
        "1e30",
    ],
)
def test_adjustment_post_invalid_amount(account, staff_user, refused, amount):
    with refused(InvalidAmount, "invalid_amount"):
        adjustment_post(
            account=account, amount=amount, reason="fix", caller=Caller.for_user(staff_user)
        )
