"""transaction_reverse: a mirror transaction, once, giving write-off room back when current."""

from decimal import Decimal

import pytest

from accounts.services import account_close
from ledger.exceptions import (
    AccountClosed,
    AlreadyReversed,
    InvalidOperation,
    WriteOffLimitExceeded,
)
from ledger.models import Entry, Transaction
from ledger.services import (
    Caller,
    ValidationFailed,
    accrual_post,
    adjustment_post,
    debit_post,
    hold_capture,
    hold_create,
    payment_post,
    refund_post,
    transaction_reverse,
    transfer_post,
)

pytestmark = pytest.mark.django_db

D = Decimal


def legs(txn) -> list[tuple]:
    """(account, sub-account, amount) of each entry, sorted so that mirrors compare easily."""
    return sorted(
        Entry.objects.filter(transaction_id=txn.pk).values_list(
            "account_id", "subaccount_id", "amount"
        ),
        key=lambda leg: (leg[0], leg[1] or 0),
    )


def mirrored(txn) -> list[tuple]:
    return [(account, sub, -amount) for account, sub, amount in legs(txn)]


def balances(*accounts) -> list[Decimal]:
    for acc in accounts:
        acc.refresh_from_db()
    return [acc.balance for acc in accounts]


@pytest.mark.parametrize(
    "kind", ["payment", "debit", "accrual", "refund", "transfer", "hold_capture", "adjustment"]
)
def test_transaction_reverse_mirrors_every_kind(
    kind, make_account, brand, service, fund, staff_user, clock
):
    payer = make_account()
    employee = make_account(parent=payer)
    other = make_account()
    fund(payer, "500.00")
    before = balances(payer, other)
    original = {
        "payment": lambda: payment_post(account=employee, amount="40.00", channel="cash"),
        "debit": lambda: debit_post(account=employee, amount="40.00", brand=brand, service=service),
        "accrual": lambda: accrual_post(account=employee, amount="40.00", brand=brand),
        "refund": lambda: refund_post(account=payer, amount="40.00"),
        "transfer": lambda: transfer_post(from_account=employee, to_account=other, amount="40.00"),
        "hold_capture": lambda: hold_capture(
            hold=hold_create(account=employee, amount="60.00", brand=brand), amount="40.00"
        ),
        "adjustment": lambda: adjustment_post(
            account=employee, amount="-40.00", reason="typo", caller=Caller.for_user(staff_user)
        ),
    }[kind]()
    assert balances(payer, other) != before
    clock.advance(minutes=3)
    reversal = transaction_reverse(
        transaction_obj=original, reason="  posted by mistake ", caller=Caller.for_user(staff_user)
    )
    assert balances(payer, other) == before
    assert legs(reversal) == mirrored(original)
    stored = Transaction.objects.get(pk=reversal.pk)
    assert (stored.kind, stored.reversal_of_id, stored.amount, stored.memo) == (
        "reversal",
        original.pk,
        original.amount,
        "posted by mistake",
    )
    assert (stored.account_id, stored.counter_account_id) == (
        original.account_id,
        original.counter_account_id,
    )
    assert stored.metadata == {"reversed_kind": kind}
    assert (stored.created_at, stored.created_by_id) == (clock.now, staff_user.pk)
    assert Transaction.objects.get(pk=original.pk).reversed_by == stored
    # Every client entry of the reversal continues the payer's balance_after chain.
    payer_entry = Entry.objects.filter(transaction_id=reversal.pk, account_id=payer.pk).first()
    if payer_entry is not None:
        assert payer_entry.balance_after == payer.balance


def test_transaction_reverse_of_a_payment_may_create_debt(account, clock):
    payment = payment_post(account=account, amount="100.00")
    refund_post(account=account, amount="60.00")  # spent meanwhile: the reversal leaves debt
    transaction_reverse(transaction_obj=payment.pk, reason="chargeback")
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (D("-60.00"), clock.now)


def test_transaction_reverse_same_day_gives_write_off_room_back(chain3, brand, fund, refused):
    payer, department, employee = chain3
    department.write_off_limit_day = D("100.00")
    department.save(update_fields=["write_off_limit_day"])
    fund(payer, "500.00")
    debit = debit_post(account=employee, amount="100.00", brand=brand)
    with refused(WriteOffLimitExceeded):
        debit_post(account=employee, amount="0.01", brand=brand)
    transaction_reverse(transaction_obj=debit, reason="cancelled order")
    for acc in chain3:
        acc.refresh_from_db()
        assert (acc.spent_day, acc.spent_month) == (D("0.00"), D("0.00"))
    debit_post(account=employee, amount="100.00", brand=brand)
    payer.refresh_from_db()
    assert payer.balance == D("400.00")


def test_transaction_reverse_next_day_gives_back_only_month_room(make_account, brand, fund, clock):
    account = make_account(write_off_limit_day=D("100.00"), write_off_limit_month=D("150.00"))
    fund(account, "500.00")
    debit = debit_post(account=account, amount="100.00", brand=brand)
    clock.advance(days=1)
    debit_post(account=account, amount="30.00", brand=brand)
    transaction_reverse(transaction_obj=debit, reason="late cancellation")
    account.refresh_from_db()
    # Today's spending stays; this month's total loses the reversed 100.
    assert (account.spent_day, account.spent_month) == (D("30.00"), D("30.00"))
    assert account.balance == D("470.00")


def test_transaction_reverse_next_month_changes_no_counters(make_account, brand, fund, clock):
    account = make_account(write_off_limit_month=D("100.00"))
    fund(account, "500.00")
    clock.set(2026, 3, 31, 12, 0)
    debit = debit_post(account=account, amount="100.00", brand=brand)
    clock.set(2026, 4, 1, 12, 0)
    debit_post(account=account, amount="40.00", brand=brand)
    transaction_reverse(transaction_obj=debit, reason="old order")
    account.refresh_from_db()
    assert (account.spent_day, account.spent_month) == (D("40.00"), D("40.00"))


def test_transaction_reverse_only_once(account, brand, fund, refused):
    fund(account, "50.00")
    debit = debit_post(account=account, amount="10.00", brand=brand)
    reversal = transaction_reverse(transaction_obj=debit, reason="first")
    with refused(AlreadyReversed, "already_reversed") as info:
        transaction_reverse(transaction_obj=debit, reason="second")
    assert info.value.details == {"transaction": debit.pk}
    with refused(InvalidOperation, "invalid_operation"):
        transaction_reverse(transaction_obj=reversal, reason="undo the undo")


@pytest.mark.parametrize("reason", ["", "  ", None])
def test_transaction_reverse_needs_a_reason(account, fund, refused, reason):
    payment = fund(account, "10.00")
    with refused(ValidationFailed, "validation_error") as info:
        transaction_reverse(transaction_obj=payment, reason=reason)
    assert info.value.details["field"] == "reason"


def test_transaction_reverse_refused_when_an_account_is_closed(make_account, brand, fund, refused):
    payer = make_account()
    employee = make_account(parent=payer)
    fund(payer, "50.00")
    debit = debit_post(account=employee, amount="10.00", brand=brand)
    account_close(account=employee)
    with refused(AccountClosed, "account_closed") as info:
        transaction_reverse(transaction_obj=debit, reason="too late")
    assert info.value.details["account"] == employee.number


def test_transaction_reverse_transfer_into_closed_account_is_refused(make_account, fund, refused):
    sender, receiver = make_account(), make_account()
    fund(sender, "50.00")
    transfer = transfer_post(from_account=sender, to_account=receiver, amount="50.00")
    refund_post(account=receiver, amount="50.00")
    account_close(account=receiver)
    with refused(AccountClosed, "account_closed"):
        transaction_reverse(transaction_obj=transfer, reason="wrong recipient")
