"""A payment's external id is posted once per payer scope, refused by a unique index.

The scope is the partner for a partner's postings and the channel for staff and
the system. The single service and ``post_bulk`` turn the unique violation (or
the look-up on the same index) into ``DuplicatePayment`` naming the original;
the idempotency key decides first, so a true replay stays a replay.
"""

from __future__ import annotations

import importlib
from decimal import Decimal
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.state import StateApps

from accounts.services import account_close
from core.caller import Caller
from core.db import as_database_owner
from ledger.exceptions import DuplicatePayment, IdempotencyConflict
from ledger.models import PAYER_SCOPE_SQL, Transaction, payer_scope
from ledger.services import PaymentItem, RefundItem, payment_post, post_bulk, refund_post
from ledger.services import bulk as bulk_module
from ledger.services.sql import PAYMENT_EXTERNAL_ID_CONSTRAINT
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PARTNER_1 = Caller.for_partner(1)
PARTNER_2 = Caller.for_partner(2)


@pytest.fixture
def staff():
    return Caller.for_user(UserFactory(is_staff=True))


@pytest.fixture
def other_staff():
    return Caller.for_user(UserFactory(is_staff=True))


def pay(account, external_id="bank-001", channel="bank", amount="100.00", **kwargs):
    return payment_post(
        account=account, amount=amount, channel=channel, external_id=external_id, **kwargs
    )


def test_the_same_external_id_again_is_refused_naming_the_original(account, refused):
    original = pay(account)
    with refused(DuplicatePayment, "duplicate_payment") as info:
        pay(account, amount="55.00")
    assert info.value.status == 409
    assert info.value.details == {"transaction": original.pk, "external_id": "bank-001"}
    assert str(original.pk) in info.value.message and "bank-001" in info.value.message
    account.refresh_from_db()
    assert account.balance == Decimal("100.00")


def test_an_idempotency_key_does_not_make_a_second_posting_of_it(account, refused):
    original = pay(account, idempotency_key="first")
    with refused(DuplicatePayment) as info:
        pay(account, idempotency_key="second")
    assert info.value.details["transaction"] == original.pk


def test_a_true_replay_is_still_a_replay_and_a_changed_body_a_conflict(account, refused):
    original = pay(account, idempotency_key="k-1")
    again = pay(account, idempotency_key="k-1")
    assert again.pk == original.pk and again.replayed
    with refused(IdempotencyConflict, "idempotency_conflict"):
        pay(account, amount="99.00", idempotency_key="k-1")


def test_a_payment_without_an_external_id_is_never_a_duplicate(account):
    pay(account, external_id="")
    pay(account, external_id="")
    assert Transaction.objects.filter(kind="payment").count() == 2


def test_staff_share_one_namespace_per_channel(account, make_account, staff, other_staff):
    pay(account, caller=staff)
    with pytest.raises(DuplicatePayment):
        pay(make_account(), caller=other_staff)  # another user, another account: still it
    with pytest.raises(DuplicatePayment):
        pay(account)  # the system is staff's namespace too
    pay(account, channel="card", caller=other_staff)  # another channel: another payment


def test_each_partner_has_its_own_namespace_across_channels(account):
    one = pay(account, caller=PARTNER_1)
    two = pay(account, caller=PARTNER_2)
    staff = pay(account)
    assert len({one.pk, two.pk, staff.pk}) == 3
    with pytest.raises(DuplicatePayment) as info:
        pay(account, channel="card", caller=PARTNER_1)
    assert info.value.details["transaction"] == one.pk


def test_a_duplicate_is_named_before_a_business_refusal(account, refused):
    """A payment sent again after its account was closed is a duplicate, not account_closed."""
    original = pay(account, amount="10.00")
    payment_post(account=account, amount="10.00", channel="bank")  # without an external id
    refund_post(account=account, amount="20.00", channel="bank")
    account_close(account=account)
    with refused(DuplicatePayment) as info:
        pay(account, amount="10.00")
    assert info.value.details["transaction"] == original.pk


def test_the_database_refuses_a_second_row_whoever_writes_it(account):
    """The guard is the unique index, not the service: a raw copy of the row is refused."""
    original = pay(account)
    columns = [f.column for f in Transaction._meta.concrete_fields if not f.primary_key]
    with (
        pytest.raises(IntegrityError) as info,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"INSERT INTO ledger_transaction ({', '.join(columns)})"
            f" SELECT {', '.join(columns)} FROM ledger_transaction WHERE id = %s",
            [original.pk],
        )
    assert info.value.__cause__.diag.constraint_name == PAYMENT_EXTERNAL_ID_CONSTRAINT


def test_the_python_scope_is_the_index_expression():
    migration = importlib.import_module("ledger.migrations.0004_payment_external_id_unique")
    assert migration.SCOPE == PAYER_SCOPE_SQL
    with connection.cursor() as cursor:
        for ref, channel in [("partner:7", "bank"), ("user:3", "card"), ("system", "cash")]:
            cursor.execute(
                f"SELECT {PAYER_SCOPE_SQL} FROM (SELECT %s AS caller, %s AS channel) t",
                [ref, channel],
            )
            assert cursor.fetchone()[0] == payer_scope(ref, channel)


def test_the_migration_refuses_to_build_the_index_over_stored_duplicates(account):
    migration = importlib.import_module("ledger.migrations.0004_payment_external_id_unique")
    original = pay(account)
    columns = [f.column for f in Transaction._meta.concrete_fields if not f.primary_key]
    # As before this migration (no index), then rolled back: the copy has no entries. The
    # migration runs as the owner (the runtime role may not drop an index).
    with as_database_owner(), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {PAYMENT_EXTERNAL_ID_CONSTRAINT}")
        cursor.execute(
            f"INSERT INTO ledger_transaction ({', '.join(columns)})"
            f" SELECT {', '.join(columns)} FROM ledger_transaction WHERE id = %s RETURNING id",
            [original.pk],
        )
        copy_id = cursor.fetchone()[0]
        editor = mock.Mock(connection=connection)
        with pytest.raises(RuntimeError) as info:
            migration.refuse_existing_duplicates(StateApps([], {}), editor)
        transaction.set_rollback(True)
    assert f"[{original.pk}, {copy_id}]" in str(info.value)
    assert "channel:bank external_id='bank-001'" in str(info.value)


# --------------------------------------------------------------------------- post_bulk


def item(account, external_id="bank-001", **fields):
    fields.setdefault("channel", "bank")
    fields.setdefault("amount", "10.00")
    return PaymentItem(account_id=account.pk, external_id=external_id, **fields)


def test_bulk_refuses_a_duplicate_of_the_database_alone(account, make_account):
    original = pay(account)
    other = make_account()
    results = post_bulk([item(other, "fresh-1"), item(other), item(other, "fresh-2")])
    assert isinstance(results[0], Transaction) and isinstance(results[2], Transaction)
    assert isinstance(results[1], DuplicatePayment)
    assert results[1].details == {"transaction": original.pk, "external_id": "bank-001"}
    other.refresh_from_db()
    assert other.balance == Decimal("20.00")


def test_bulk_refuses_a_duplicate_within_the_call_naming_the_first(account, make_account):
    other = make_account()
    results = post_bulk(
        [item(account, "dup"), item(other, "dup"), item(account, "dup", channel="card")]
    )
    first, second, third = results
    assert isinstance(first, Transaction) and isinstance(third, Transaction)
    assert isinstance(second, DuplicatePayment)
    assert second.details["transaction"] == first.pk
    assert str(first.pk) in second.message
    assert Transaction.objects.filter(kind="payment", external_id="dup").count() == 2


def test_bulk_a_refused_first_leaves_the_external_id_to_the_next(account, make_account):
    closed = make_account()
    account_close(account=closed)
    results = post_bulk([item(closed, "x-1"), item(account, "x-1")])
    assert results[0].code == "account_closed"
    assert isinstance(results[1], Transaction) and results[1].external_id == "x-1"


def test_bulk_partners_and_staff_scopes(account, staff):
    results = post_bulk(
        [
            item(account, "s", caller=PARTNER_1),
            item(account, "s", caller=PARTNER_2),
            item(account, "s", caller=staff),
            item(account, "s", caller=PARTNER_1, channel="card"),
            item(account, "s"),  # the system: staff's namespace for the channel
        ]
    )
    assert [type(r).__name__ for r in results] == [
        "Transaction",
        "Transaction",
        "Transaction",
        "DuplicatePayment",
        "DuplicatePayment",
    ]
    assert results[3].details["transaction"] == results[0].pk
    assert results[4].details["transaction"] == results[2].pk


def test_bulk_the_key_decides_before_the_duplicate(account):
    original = pay(account, idempotency_key="k")
    replayed, conflict, duplicate = post_bulk(
        [
            item(account, amount="100.00", idempotency_key="k"),
            item(account, amount="1.00", idempotency_key="k"),
            item(account, amount="100.00", idempotency_key="other"),
        ]
    )
    assert replayed.replayed and replayed.pk == original.pk
    assert conflict.code == "idempotency_conflict"
    assert duplicate.code == "duplicate_payment"


def test_bulk_runs_again_when_the_index_refuses_what_the_look_up_missed(account, make_account):
    """A concurrent posting that stores an external id between the look-up and the COPY
    (simulated: the first look-up misses it) makes the call run again, not fail."""
    original = pay(account)
    other = make_account()
    looked_up = []
    real = bulk_module.payments_posted

    def stale_first_time(keys):
        keys = list(keys)
        looked_up.append(keys)
        return {} if len(looked_up) == 1 else real(keys)

    with mock.patch.object(bulk_module, "payments_posted", stale_first_time):
        results = post_bulk([item(other, "new-1"), item(other), item(other, "new-2")])
    assert len(looked_up) == 2
    assert results[1].code == "duplicate_payment"
    assert results[1].details["transaction"] == original.pk
    assert [r.external_id for r in (results[0], results[2])] == ["new-1", "new-2"]
    other.refresh_from_db()
    assert other.balance == Decimal("20.00")


def test_bulk_other_kinds_are_untouched_by_payment_duplicates(account):
    pay(account)
    results = post_bulk([RefundItem(account_id=account.pk, amount="1.00", channel="bank")])
    assert isinstance(results[0], Transaction)
