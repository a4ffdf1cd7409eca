"""The SQL the posting path runs, built once at import from the models' ``_meta``.

Table names, column lists and the SQL type of every column come from
``Transaction``, ``Entry``, ``IdempotencyKey``, ``Hold`` and ``Account``
(concrete fields' ``column``; types from ``field.cast_db_type(connection)``
with any type modifier dropped, so a too-long string or a too-precise number
is refused by the column, never silently cut by a cast). A model field added
without teaching the writer how to fill it fails here, at import, rather than
at the first posting.

Only text lives here; ``writer.py`` runs the statements that write and
``locking.py`` the one that locks.
"""

from __future__ import annotations

import functools
import re

from django.db import connection, models

from accounts.models import Account
from ledger.models import PAYER_SCOPE_SQL, Entry, Hold, IdempotencyKey, Transaction


def _sql_type(field: models.Field) -> str:
    return re.sub(r"\(.*\)", "", field.cast_db_type(connection)).strip()


def _columns(model: type[models.Model], *, with_pk: bool) -> dict[str, str]:
    """``{column: sql type}`` of the model's concrete fields, in declaration order.

    Columns the database fills itself (``db_default``: a transaction's ``xact_id``) are
    left out, so their default applies to every row the writer inserts or copies.
    """
    return {
        f.column: _sql_type(f)
        for f in model._meta.concrete_fields
        if (with_pk or not f.primary_key) and f.db_default is models.NOT_PROVIDED
    }


TXN_TABLE = Transaction._meta.db_table
ENTRY_TABLE = Entry._meta.db_table
KEY_TABLE = IdempotencyKey._meta.db_table
HOLD_TABLE = Hold._meta.db_table
ACCOUNT_TABLE = Account._meta.db_table
ACCOUNT_BRANDS_TABLE = Account.brands.through._meta.db_table

# Every column of a transaction but its id, filled from a posting's header.
TXN_COLUMNS = _columns(Transaction, with_pk=False)
TXN_COLUMNS_WITH_ID = _columns(Transaction, with_pk=True)
# Entry columns: those of a posting's leg, the transaction's id, and two copied from
# the transaction (currency and created_at).
ENTRY_COLUMNS = _columns(Entry, with_pk=False)
ENTRY_COLUMNS_WITH_ID = _columns(Entry, with_pk=True)
ENTRY_LEG_COLUMNS = ("account_id", "subaccount_id", "amount", "balance_after")
ENTRY_TXN_COLUMN = Entry._meta.get_field("transaction").column
ENTRY_HEADER_COLUMNS = ("currency", "created_at")
KEY_COLUMNS = _columns(IdempotencyKey, with_pk=False)
HOLD_COLUMNS_WITH_ID = _columns(Hold, with_pk=True)
HOLD_CLOSE_COLUMNS = {
    Hold._meta.get_field(name).column: _sql_type(Hold._meta.get_field(name))
    for name in ("id", "status", "captured_amount", "closed_at")
}
# The running state of a locked account, written back after a posting.
ACCOUNT_STATE_COLUMNS = {
    Account._meta.get_field(name).column: _sql_type(Account._meta.get_field(name))
    for name in (
        "id",
        "balance",
        "held",
        "negative_since",
        "spent_day",
        "spent_day_on",
        "spent_month",
        "spent_month_on",
    )
}
ACCOUNT_UPDATED_AT = Account._meta.get_field("updated_at").column

if set(ENTRY_COLUMNS) != {ENTRY_TXN_COLUMN, *ENTRY_LEG_COLUMNS, *ENTRY_HEADER_COLUMNS}:
    raise AssertionError(f"The ledger writer does not know how to fill {ENTRY_TABLE}'s columns.")
if set(KEY_COLUMNS) != {
    "caller",
    "key",
    "operation",
    "request_hash",
    "transaction_id",
    "hold_id",
    "created_at",
}:
    raise AssertionError(f"The ledger writer does not know how to fill {KEY_TABLE}'s columns.")


# --------------------------------------------------------------------------- locking

# The locked row, in the order of ``LockedAccount``'s fields (brand links as an array).
LOCKED_FIELDS = (
    "id", "number", "kind", "currency", "status", "parent_id", "brand_ids",
    "credit_limit", "credit_period_days", "credit_expires_at",
    "write_off_limit_transaction", "write_off_limit_day", "write_off_limit_month",
    "balance", "held", "negative_since",
    "spent_day", "spent_day_on", "spent_month", "spent_month_on",
)  # fmt: skip


def _locked_select_list() -> str:
    brands = Account.brands.through
    account_fk = brands._meta.get_field("account").column
    brand_fk = brands._meta.get_field("brand").column
    items = []
    for name in LOCKED_FIELDS:
        if name == "brand_ids":
            items.append(
                f"ARRAY(SELECT b.{brand_fk} FROM {ACCOUNT_BRANDS_TABLE} b"
                f" WHERE b.{account_fk} = a.id)"
            )
        else:
            items.append(f"a.{Account._meta.get_field(name).column}")
    return ", ".join(items)


# The ancestors are walked one primary-key lookup per level (LATERAL ... LIMIT 1): as a
# plain join, the generic plan of this prepared statement estimated ten accounts per
# level and chose a sequential scan of the whole account table for every posting.
LOCK_SQL = f"""
WITH RECURSIVE chain(id, parent_id) AS (
    SELECT id, parent_id FROM {ACCOUNT_TABLE} WHERE id = ANY(%s::bigint[])
  UNION
    SELECT p.id, p.parent_id FROM chain c CROSS JOIN LATERAL (
        SELECT id, parent_id FROM {ACCOUNT_TABLE} WHERE id = c.parent_id LIMIT 1
    ) p
)
SELECT {_locked_select_list()}
FROM {ACCOUNT_TABLE} a
WHERE a.id = ANY(ARRAY(SELECT id FROM chain))
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""


# --------------------------------------------------------------------------- idempotency

REPLAY_SQL = (
    f"SELECT request_hash, operation, transaction_id, hold_id FROM {KEY_TABLE}"
    " WHERE caller = %s AND key = %s"
)
# Many (caller, key) pairs at once (bulk postings): caller[], key[].
REPLAY_MANY_SQL = (
    f"SELECT k.caller, k.key, k.request_hash, k.operation, k.transaction_id, k.hold_id"
    f" FROM {KEY_TABLE} k JOIN unnest(%s::text[], %s::text[]) AS q(caller, key)"
    " ON k.caller = q.caller AND k.key = q.key"
)


# --------------------------------------------------------------------------- duplicate payments

# The unique index on (payer scope, external_id) of payments; the lookups below repeat its
# expression and predicate word for word, so PostgreSQL answers them from that index.
PAYMENT_EXTERNAL_ID_CONSTRAINT = "ledger_transaction_payment_external_id_unique"
_PAYMENT_PREDICATE = "kind = 'payment' AND external_id <> ''"
# The payment already posted with an external id in a scope: scope, external_id.
DUPLICATE_PAYMENT_SQL = (
    f"SELECT id FROM {TXN_TABLE}"
    f" WHERE {_PAYMENT_PREDICATE} AND {PAYER_SCOPE_SQL} = %s AND external_id = %s"
)
# Many at once (bulk postings): scope[], external_id[] -> (scope, external_id, id). Lateral,
# so that each key is one probe of the index whatever the planner thinks of the table.
DUPLICATE_PAYMENTS_MANY_SQL = (
    "SELECT q.scope, q.external_id, t.id"
    " FROM unnest(%s::text[], %s::text[]) AS q(scope, external_id)"
    f" JOIN LATERAL (SELECT id FROM {TXN_TABLE} WHERE {_PAYMENT_PREDICATE}"
    f" AND {PAYER_SCOPE_SQL} = q.scope AND external_id = q.external_id) t ON true"
)


# --------------------------------------------------------------------------- one posting


def _typed(columns: dict[str, str]) -> str:
    return ", ".join(f"%s::{sql_type}" for sql_type in columns.values())


@functools.cache
def accounts_update_sql(count: int) -> str:
    """UPDATE of the running state of ``count`` locked accounts (first param: updated_at)."""
    names = list(ACCOUNT_STATE_COLUMNS)
    row = f"({_typed(ACCOUNT_STATE_COLUMNS)})"
    sets = ", ".join(f"{name} = v.{name}" for name in names[1:])
    return (
        f"UPDATE {ACCOUNT_TABLE} a SET {sets}, {ACCOUNT_UPDATED_AT} = %s"
        f" FROM (VALUES {', '.join([row] * count)}) AS v({', '.join(names)})"
        " WHERE a.id = v.id"
    )


@functools.cache
def posting_sql(legs: int, with_idempotency: bool, dirty_accounts: int) -> str:
    """The one-statement write of a posting, by shape (so each shape is prepared once).

    Params: the transaction's columns (``TXN_COLUMNS``), the entries' currency and
    created_at, each leg's ``ENTRY_LEG_COLUMNS``, then the idempotency record's
    caller, key, operation, request hash and created_at, then the account update's.
    """
    leg_types = {name: ENTRY_COLUMNS[name] for name in ENTRY_LEG_COLUMNS}
    entry_rows = ", ".join([f"({_typed(leg_types)})"] * legs)
    entry_select = ", ".join(
        "t.id"
        if name == ENTRY_TXN_COLUMN
        else f"v.{name}"
        if name in ENTRY_LEG_COLUMNS
        else f"%s::{ENTRY_COLUMNS[name]}"
        for name in ENTRY_COLUMNS
    )
    header_params = [name for name in ENTRY_COLUMNS if name in ENTRY_HEADER_COLUMNS]
    if header_params != list(ENTRY_HEADER_COLUMNS):
        raise AssertionError("Entry columns are out of the order the writer fills them in.")
    sql = [
        f"WITH t AS (INSERT INTO {TXN_TABLE} ({', '.join(TXN_COLUMNS)})"
        f" VALUES ({_typed(TXN_COLUMNS)}) RETURNING id),",
        f" e AS (INSERT INTO {ENTRY_TABLE} ({', '.join(ENTRY_COLUMNS)})"
        f" SELECT {entry_select}"
        f" FROM t, (VALUES {entry_rows}) AS v({', '.join(ENTRY_LEG_COLUMNS)})"
        " RETURNING id)",
    ]
    if with_idempotency:
        values = ", ".join(
            "t.id"
            if name == "transaction_id"
            else "NULL"
            if name == "hold_id"
            else f"%s::{KEY_COLUMNS[name]}"
            for name in KEY_COLUMNS
        )
        sql.append(
            f", i AS (INSERT INTO {KEY_TABLE} ({', '.join(KEY_COLUMNS)}) SELECT {values} FROM t)"
        )
    if dirty_accounts:
        sql.append(f", u AS ({accounts_update_sql(dirty_accounts)})")
    sql.append(" SELECT t.id, ARRAY(SELECT id FROM e ORDER BY id) FROM t")
    return "".join(sql)


# --------------------------------------------------------------------------- many postings

# Ids for a batch, taken from the tables' own sequences in one round trip, in order.
TAKE_IDS_SQL = (
    "SELECT"
    f" ARRAY(SELECT nextval(pg_get_serial_sequence('{TXN_TABLE}', 'id'))"
    " FROM generate_series(1, %s)),"
    f" ARRAY(SELECT nextval(pg_get_serial_sequence('{ENTRY_TABLE}', 'id'))"
    " FROM generate_series(1, %s)),"
    f" ARRAY(SELECT nextval(pg_get_serial_sequence('{HOLD_TABLE}', 'id'))"
    " FROM generate_series(1, %s))"
)


def copy_sql(table: str, columns: dict[str, str]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"


def _unnest_update(table: str, columns: dict[str, str], extra: str = "") -> str:
    names = list(columns)
    arrays = ", ".join(f"%s::{sql_type}[]" for sql_type in columns.values())
    sets = ", ".join(f"{name} = v.{name}" for name in names[1:])
    return (
        f"UPDATE {table} x SET {sets}{extra}"
        f" FROM unnest({arrays}) AS v({', '.join(names)}) WHERE x.id = v.id"
    )


# Params: updated_at, then one array per ACCOUNT_STATE_COLUMNS column.
ACCOUNTS_UPDATE_MANY_SQL = _unnest_update(
    ACCOUNT_TABLE, ACCOUNT_STATE_COLUMNS, f", {ACCOUNT_UPDATED_AT} = %s"
)
# Params: one array per HOLD_CLOSE_COLUMNS column.
HOLDS_CLOSE_MANY_SQL = _unnest_update(HOLD_TABLE, HOLD_CLOSE_COLUMNS)
