"""Idempotency keys: same key + same request replays, a different request conflicts, keys are
scoped per caller and bound to one operation, and a refused request leaves no key behind."""

from dataclasses import dataclass
from decimal import Decimal

import pytest

from accounts.models import Account
from accounts.services import account_block
from ledger.exceptions import IdempotencyConflict, InsufficientFunds
from ledger.models import Hold, IdempotencyKey, Transaction
from ledger.services import (
    Caller,
    ValidationFailed,
    accrual_post,
    adjustment_post,
    debit_post,
    hold_capture,
    hold_create,
    hold_void,
    payment_post,
    refund_post,
    transaction_reverse,
    transfer_post,
)

pytestmark = pytest.mark.django_db

D = Decimal


@dataclass
class World:
    account: Account
    other: Account
    brand: object
    hold: Hold
    spare_hold: Hold
    debit: Transaction
    spare_debit: Transaction
    caller: Caller


@pytest.fixture
def world(make_account, brand, fund, staff_user):
    account, other = make_account(), make_account()
    fund(account, "1000.00")
    return World(
        account=account,
        other=other,
        brand=brand,
        hold=hold_create(account=account, amount="50.00", brand=brand),
        spare_hold=hold_create(account=account, amount="50.00", brand=brand),
        debit=debit_post(account=account, amount="10.00", brand=brand),
        spare_debit=debit_post(account=account, amount="10.00", brand=brand),
        # A staff user: the only kind of caller every operation (adjustments too) accepts.
        caller=Caller.for_user(staff_user),
    )


def _amount(alt: bool) -> str:
    return "11.00" if alt else "10.00"


# Each operation called with ``alt=False`` twice is the same request; ``alt=True`` differs.
OPERATIONS = {
    "payment": lambda w, key, alt, caller: payment_post(
        account=w.account, amount=_amount(alt), channel="bank", caller=caller, idempotency_key=key
    ),
    "debit": lambda w, key, alt, caller: debit_post(
        account=w.account, amount=_amount(alt), brand=w.brand, caller=caller, idempotency_key=key
    ),
    "accrual": lambda w, key, alt, caller: accrual_post(
        account=w.account, amount=_amount(alt), brand=w.brand, caller=caller, idempotency_key=key
    ),
    "transfer": lambda w, key, alt, caller: transfer_post(
        from_account=w.account,
        to_account=w.other,
        amount=_amount(alt),
        caller=caller,
        idempotency_key=key,
    ),
    "refund": lambda w, key, alt, caller: refund_post(
        account=w.account, amount=_amount(alt), caller=caller, idempotency_key=key
    ),
    "adjustment": lambda w, key, alt, caller: adjustment_post(
        account=w.account, amount=_amount(alt), reason="fix", caller=caller, idempotency_key=key
    ),
    "hold_create": lambda w, key, alt, caller: hold_create(
        account=w.account, amount=_amount(alt), brand=w.brand, caller=caller, idempotency_key=key
    ),
    "hold_capture": lambda w, key, alt, caller: hold_capture(
        hold=w.hold, amount="20.00" if alt else None, caller=caller, idempotency_key=key
    ),
    "hold_void": lambda w, key, alt, caller: hold_void(
        hold=w.spare_hold if alt else w.hold, caller=caller, idempotency_key=key
    ),
    "reversal": lambda w, key, alt, caller: transaction_reverse(
        transaction_obj=w.spare_debit if alt else w.debit,
        reason="oops",
        caller=caller,
        idempotency_key=key,
    ),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_idempotency_same_key_same_request_replays_the_original(world, snapshot, operation):
    run = OPERATIONS[operation]
    first = run(world, "key-1", False, world.caller)
    after_first = snapshot()
    second = run(world, "key-1", False, world.caller)
    assert (type(second), second.pk) == (type(first), first.pk)
    assert (first.replayed, second.replayed) == (False, True)
    assert snapshot() == after_first  # nothing new: no transaction, entry, hold, key, balance
    record = IdempotencyKey.objects.get(caller=world.caller.ref, key="key-1")
    assert record.operation == operation
    linked = record.transaction_id if isinstance(first, Transaction) else record.hold_id
    assert linked == first.pk


@pytest.mark.parametrize("operation", OPERATIONS)
def test_idempotency_same_key_different_request_conflicts(world, refused, operation):
    run = OPERATIONS[operation]
    run(world, "key-2", False, world.caller)
    with refused(IdempotencyConflict, "idempotency_conflict") as info:
        run(world, "key-2", True, world.caller)
    assert info.value.details["key"] == "key-2"


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op != "payment"])
def test_idempotency_key_of_one_operation_cannot_be_reused_for_another(world, refused, operation):
    OPERATIONS["payment"](world, "shared", False, world.caller)
    with refused(IdempotencyConflict, "idempotency_conflict") as info:
        OPERATIONS[operation](world, "shared", False, world.caller)
    assert info.value.details["operation"] == "payment"


def test_idempotency_keys_are_scoped_per_caller(world, staff_user):
    callers = [Caller.for_partner(1), Caller.for_partner(2), Caller.for_user(staff_user), Caller()]
    first = [OPERATIONS["payment"](world, "same-key", False, c) for c in callers]
    assert len({t.pk for t in first}) == 4
    assert not any(t.replayed for t in first)
    again = [OPERATIONS["payment"](world, "same-key", False, c) for c in callers]
    assert [t.pk for t in again] == [t.pk for t in first]
    assert all(t.replayed for t in again)
    world.account.refresh_from_db()
    # 1000 funded - 2 debits of 10, + four payments of 10.
    assert world.account.balance == D("1020.00")
    assert sorted(
        IdempotencyKey.objects.filter(key="same-key").values_list("caller", flat=True)
    ) == sorted(c.ref for c in callers)
    assert {Transaction.objects.get(pk=t.pk).caller for t in first} == {c.ref for c in callers}


def test_idempotency_replay_survives_later_state_changes(world):
    debit = OPERATIONS["debit"](world, "order-9", False, world.caller)
    capture = OPERATIONS["hold_capture"](world, "cap-1", False, world.caller)
    account_block(account=world.account, reason="fraud")
    # A retry after the account was blocked / the hold was captured still gets the original.
    assert OPERATIONS["debit"](world, "order-9", False, world.caller).pk == debit.pk
    assert OPERATIONS["hold_capture"](world, "cap-1", False, world.caller).pk == capture.pk


@pytest.mark.parametrize(
    ("spelling", "again"), [("10", "10.00"), ("10.00", D("10")), (D("10.0"), " 10 ")]
)
def test_idempotency_same_amount_spelled_differently_is_the_same_request(world, spelling, again):
    first = payment_post(account=world.account, amount=spelling, idempotency_key="k")
    second = payment_post(account=world.account, amount=again, idempotency_key="k")
    assert (second.pk, second.replayed) == (first.pk, True)


def test_idempotency_refused_request_leaves_no_key_and_can_be_retried(make_account, brand, refused):
    account = make_account()
    with refused(InsufficientFunds):
        debit_post(account=account, amount="5.00", brand=brand, idempotency_key="retry-me")
    assert not IdempotencyKey.objects.filter(key="retry-me").exists()
    payment_post(account=account, amount="5.00")
    txn = debit_post(account=account, amount="5.00", brand=brand, idempotency_key="retry-me")
    assert txn.replayed is False
    account.refresh_from_db()
    assert account.balance == D("0.00")


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_idempotency_key_length_is_validated(world, refused, key):
    with refused(ValidationFailed, "validation_error") as info:
        OPERATIONS["payment"](world, key, False, world.caller)
    assert info.value.details["field"] == "idempotency_key"


def test_idempotency_key_of_255_characters_is_accepted(world):
    key = "k" * 255
    first = OPERATIONS["payment"](world, key, False, world.caller)
    assert OPERATIONS["payment"](world, key, False, world.caller).pk == first.pk


def test_a_seen_key_found_by_the_write_replays_and_leaves_nothing(account, brand, fund, snapshot):
    """The key is not looked up before posting: a seen key whose request could post again
    (funds left) is stopped by the key's unique index, rolled back, then replayed."""
    fund(account)
    caller = Caller(ref="partner:9")
    first = debit_post(
        account=account, amount=D("10.00"), brand=brand, caller=caller, idempotency_key="w-1"
    )
    before = snapshot()
    again = debit_post(
        account=account, amount=D("10.00"), brand=brand, caller=caller, idempotency_key="w-1"
    )
    assert again.replayed and again.pk == first.pk
    assert snapshot() == before
    with pytest.raises(IdempotencyConflict):
        debit_post(
            account=account, amount=D("11.00"), brand=brand, caller=caller, idempotency_key="w-1"
        )
    assert snapshot() == before
