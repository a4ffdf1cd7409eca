"""``manage.py ledger_verify`` and the database triggers that keep the ledger append-only."""

from contextlib import nullcontext
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from core.db import as_database_owner
from ledger.models import Entry, IdempotencyKey, Transaction
from ledger.services import (
    debit_post,
    hold_capture,
    hold_create,
    payment_post,
    transaction_reverse,
    transfer_post,
)
from ledger.verify import CHECKS, verify_ledger

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_ledger(make_account, brand, service, fund):
    """A little of everything: payments, debits on a sub-account, transfers, holds, a reversal."""
    payer, other = make_account(credit_limit=Decimal("100.00")), make_account()
    employee = make_account(parent=payer)
    fund(payer, "500.00")
    debit = debit_post(account=employee, amount="120.00", brand=brand, service=service)
    transfer_post(from_account=payer, to_account=other, amount="50.00")
    hold_capture(hold=hold_create(account=employee, amount="40.00", brand=brand), amount="25.00")
    hold_create(account=payer, amount="10.00", brand=brand)
    transaction_reverse(transaction_obj=debit, reason="cancelled")
    payment_post(account=other, amount="1.00", idempotency_key="p-1")
    return payer, other


def run_verify() -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("ledger_verify", stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_ledger_verify_passes_on_a_healthy_database(busy_ledger):
    code, out, err = run_verify()
    assert code == 0
    assert f"{len(CHECKS)}/{len(CHECKS)} ledger checks passed" in out
    assert err == ""


def test_ledger_verify_passes_on_an_empty_database(db):
    assert run_verify()[0] == 0


class Rollback(Exception):
    """Raised to leave a savepoint, undoing the damage a test did on purpose."""


@pytest.mark.parametrize(
    ("sql", "named", "broken_checks"),
    [
        (
            "UPDATE accounts_account SET balance = balance + 1 WHERE id = %(payer)s",
            "payer",
            {"client_balance_equals_entries"},
        ),
        (
            "UPDATE accounts_account SET held = held + 5 WHERE id = %(payer)s",
            "payer",
            {"held_equals_active_holds"},
        ),
        (
            "UPDATE accounts_account SET negative_since = now() WHERE id = %(other)s",
            "other",
            {"negative_since_matches_balance"},
        ),
        (
            # A stray, unbalanced entry appended to the last transaction. The zero-sum trigger
            # refuses it at its statement, so the damage is done with triggers off (the
            # superuser's session_replication_role), as a restore gone wrong would.
            "INSERT INTO ledger_entry"
            " (transaction_id, account_id, amount, currency, created_at, balance_after)"
            " SELECT MAX(id), %(other)s, 7, 'RUB', now(), 999 FROM ledger_transaction",
            "other",
            {
                "transaction_sums_to_zero",
                "currency_sums_to_zero",
                "client_balance_equals_entries",
                "balance_after_chain",
            },
        ),
    ],
    ids=["balance", "held", "negative_since", "unbalanced_entry"],
)
def test_ledger_verify_reports_a_broken_invariant_and_exits_non_zero(
    busy_ledger, sql, named, broken_checks
):
    payer, other = busy_ledger
    triggers_off = sql.startswith("INSERT INTO ledger_entry")
    with pytest.raises(Rollback), transaction.atomic():
        with as_database_owner() if triggers_off else nullcontext(), connection.cursor() as cursor:
            if triggers_off:
                cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(sql, {"payer": payer.pk, "other": other.pk})
            if triggers_off:
                cursor.execute("SET LOCAL session_replication_role = origin")
        code, out, err = run_verify()
        raise Rollback
    assert code == 1
    failed = {name for name in CHECKS if f"{name}:" in err}
    assert failed == broken_checks
    assert f"{len(CHECKS) - len(failed)}/{len(CHECKS)} ledger checks passed" in err
    assert {"payer": payer, "other": other}[named].number in err
    assert out == ""
    assert verify_ledger() == []  # the savepoint took the damage away again


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_entry SET amount = amount WHERE transaction_id = %(txn)s",
        "UPDATE ledger_entry SET balance_after = NULL WHERE transaction_id = %(txn)s",
        "DELETE FROM ledger_entry WHERE transaction_id = %(txn)s",
        "UPDATE ledger_transaction SET memo = 'rewritten' WHERE id = %(txn)s",
        "DELETE FROM ledger_transaction WHERE id = %(txn)s",
        "UPDATE ledger_idempotencykey SET request_hash = 'x' WHERE transaction_id = %(txn)s",
        "DELETE FROM ledger_idempotencykey WHERE transaction_id = %(txn)s",
    ],
)
@pytest.mark.parametrize(
    ("as_owner", "refusal"),
    [(False, "permission denied for table"), (True, "append_only")],
    ids=["runtime_role_lacks_the_privilege", "owner_stopped_by_the_trigger"],
)
def test_ledger_rows_are_append_only_in_the_database(account, sql, as_owner, refusal):
    txn = payment_post(account=account, amount="10.00", idempotency_key="k")
    with (
        pytest.raises(DatabaseError, match=refusal),
        as_database_owner() if as_owner else nullcontext(),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, {"txn": txn.pk})
    assert Entry.objects.filter(transaction_id=txn.pk).count() == 2
    assert Transaction.objects.get(pk=txn.pk).memo == ""


def test_ledger_rows_are_append_only_through_the_orm(account):
    txn = payment_post(account=account, amount="10.00", idempotency_key="k")
    attempts = [
        lambda: Entry.objects.filter(transaction_id=txn.pk).update(amount=0),
        lambda: Entry.objects.filter(transaction_id=txn.pk).delete(),
        lambda: Transaction.objects.filter(pk=txn.pk).update(memo="changed"),
        lambda: IdempotencyKey.objects.filter(key="k").delete(),
    ]
    for attempt in attempts:
        with pytest.raises(DatabaseError), transaction.atomic():
            attempt()
    assert sorted(Entry.objects.filter(transaction_id=txn.pk).values_list("amount", flat=True)) == [
        -10,
        10,
    ]
    assert IdempotencyKey.objects.filter(key="k").exists()
