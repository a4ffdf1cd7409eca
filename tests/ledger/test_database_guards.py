"""The ledger guards itself in the database, whoever connects.

Real SQL over real logins: the runtime role the application connects as may insert ledger
rows but not update, delete or truncate them, nor disable their triggers; an unbalanced
transaction is refused at the statement that writes it (a statement-level trigger over the
written rows); the owner cannot
TRUNCATE a ledger table either.
"""

import psycopg
import pytest
from django.db import connection
from psycopg import errors

from ledger.models import Entry, Transaction
from ledger.services import payment_post
from tests.dbfaults import owner_connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runtime_sql(runtime_role):
    """An autocommit psycopg connection logged in as the runtime role itself."""
    role, password = runtime_role
    settings_dict = connection.settings_dict
    params = {
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
        "user": role,
        "password": password,
        "dbname": settings_dict["NAME"],
        "autocommit": True,
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (role, role)
        yield conn


@pytest.fixture
def posted(account):
    txn = payment_post(account=account, amount="10.00", idempotency_key="guarded")
    return txn


def _entries(txn) -> list:
    return sorted(Entry.objects.filter(transaction=txn).values_list("amount", flat=True))


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE ledger_entry",
        "TRUNCATE ledger_transaction CASCADE",
        "TRUNCATE ledger_hold CASCADE",
        "TRUNCATE ledger_idempotencykey",
        "UPDATE ledger_entry SET amount = amount * 2",
        "UPDATE ledger_transaction SET memo = 'rewritten'",
        "UPDATE ledger_hold SET amount = amount + 1",
        "DELETE FROM ledger_entry",
        "DELETE FROM ledger_transaction",
        "DELETE FROM ledger_idempotencykey",
        "DELETE FROM ledger_hold",
        "ALTER TABLE ledger_entry DISABLE TRIGGER ALL",
        "ALTER TABLE ledger_entry DISABLE TRIGGER USER",
        "ALTER TABLE ledger_transaction DISABLE TRIGGER USER",
        "DROP TRIGGER ledger_entry_balanced ON ledger_entry",
        "DROP FUNCTION ledger_entry_balanced() CASCADE",
        "SET session_replication_role = replica",
    ],
)
def test_the_runtime_role_cannot_rewrite_or_unguard_the_ledger(runtime_sql, posted, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        runtime_sql.execute(statement)
    assert _entries(posted) == [-10, 10]
    assert Transaction.objects.get(pk=posted.pk).memo == ""


def test_the_runtime_role_may_insert_and_read_ledger_rows(runtime_sql, posted):
    count = runtime_sql.execute(
        "SELECT count(*) FROM ledger_entry WHERE transaction_id = %s", [posted.pk]
    ).fetchone()
    assert count == (2,)


def _unbalanced_insert(
    conn, account_id: int, legs: list[int], one_statement: bool = False, currencies=None
) -> int:
    txn_id = conn.execute(
        "INSERT INTO ledger_transaction (kind, account_id, amount, currency, channel,"
        " subject_type, subject_id, metadata, memo, external_id, caller, request_id, created_at)"
        " VALUES ('adjustment', %s, 5, 'RUB', '', '', '', '{}', '', '', 'test:raw', '', now())"
        " RETURNING id",
        [account_id],
    ).fetchone()[0]
    rows = [
        (txn_id, account_id, amount, currency)
        for amount, currency in zip(legs, currencies or ["RUB"] * len(legs), strict=True)
    ]
    insert = "INSERT INTO ledger_entry (transaction_id, account_id, amount, currency, created_at)"
    if one_statement:
        values = ", ".join("(%s, %s, %s, %s, now())" for _ in rows)
        conn.execute(f"{insert} VALUES {values}", [v for row in rows for v in row])
    else:
        for row in rows:
            conn.execute(f"{insert} VALUES (%s, %s, %s, %s, now())", row)
    return txn_id


def test_an_unbalanced_transaction_is_refused_at_its_statement(runtime_sql, account):
    before = (Transaction.objects.count(), Entry.objects.count())
    reached = []
    with (
        pytest.raises(errors.CheckViolation, match="does not sum to zero"),
        runtime_sql.transaction(),
    ):
        _unbalanced_insert(runtime_sql, account.pk, [5])
        reached.append(True)  # never: the INSERT itself is refused
    assert reached == []
    assert (Transaction.objects.count(), Entry.objects.count()) == before


def test_no_session_setting_skips_the_zero_sum_check(runtime_sql, account):
    """pgtrigger's triggers step aside for ``SET pgtrigger.ignore`` (any role may set it);
    the zero-sum trigger is written by hand and does not."""
    trigger_names = [
        name
        for (name,) in runtime_sql.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger_entry'::regclass"
            " AND NOT tgisinternal"
        ).fetchall()
    ]
    assert "ledger_entry_balanced" in trigger_names
    before = (Transaction.objects.count(), Entry.objects.count())
    with pytest.raises(errors.CheckViolation), runtime_sql.transaction():
        ignored = ",".join(f"ledger_entry:{name}" for name in trigger_names)
        runtime_sql.execute("SELECT set_config('pgtrigger.ignore', %s, true)", [ignored])
        runtime_sql.execute("SET LOCAL pgtrigger.enabled = off")
        _unbalanced_insert(runtime_sql, account.pk, [5])
    assert (Transaction.objects.count(), Entry.objects.count()) == before


@pytest.mark.parametrize(
    "legs, currencies",
    [([5, -4], None), ([5, -5, 1], None), ([5, -5], ["RUB", "USD"])],
    ids=["short", "one_leg_too_many", "per_currency"],
)
def test_the_zero_sum_check_covers_each_statement(runtime_sql, account, legs, currencies):
    """The entries one statement writes sum to zero per transaction and currency; legs that
    would balance only with a later statement are refused at the first one."""
    before = (Transaction.objects.count(), Entry.objects.count())
    with pytest.raises(errors.CheckViolation), runtime_sql.transaction():
        _unbalanced_insert(runtime_sql, account.pk, legs, one_statement=True, currencies=currencies)
    with pytest.raises(errors.CheckViolation), runtime_sql.transaction():
        _unbalanced_insert(runtime_sql, account.pk, [5, -5])  # +5 alone, then -5
    assert (Transaction.objects.count(), Entry.objects.count()) == before
    with runtime_sql.transaction():
        _unbalanced_insert(runtime_sql, account.pk, [5, -5], one_statement=True)
        # Balanced, but written behind the services' back (no balances): do not keep it.
        raise psycopg.Rollback()
    assert not Transaction.objects.filter(caller="test:raw").exists()


def test_one_unbalanced_transaction_in_a_copy_refuses_the_whole_copy(runtime_sql, account):
    """A batch (the bulk writer's COPY) with many balanced transactions and one that is
    not: the statement is refused and nothing of it stays."""
    before = (Transaction.objects.count(), Entry.objects.count())
    with (
        pytest.raises(errors.CheckViolation, match="does not sum to zero"),
        runtime_sql.transaction(),
    ):
        txn_ids = [_unbalanced_insert(runtime_sql, account.pk, []) for _ in range(50)]
        with runtime_sql.cursor().copy(
            "COPY ledger_entry (transaction_id, account_id, amount, currency, created_at)"
            " FROM STDIN"
        ) as copy:
            for n, txn_id in enumerate(txn_ids):
                credit = 7 if n == 37 else 6
                for amount in (-6, credit):
                    copy.write_row((txn_id, account.pk, amount, "RUB", "2026-01-01T00:00Z"))
    assert (Transaction.objects.count(), Entry.objects.count()) == before


def test_the_owner_cannot_truncate_a_ledger_table_either(posted):
    with owner_connect() as owner:
        for table in ("ledger_entry", "ledger_transaction", "ledger_hold", "ledger_idempotencykey"):
            with (
                pytest.raises(errors.InsufficientPrivilege, match="Cannot truncate"),
                owner.transaction(),
            ):
                owner.execute(f"TRUNCATE {table} CASCADE")
    assert _entries(posted) == [-10, 10]
