"""The database owner's connection, for the few things the runtime role may not do.

The application connects as a runtime role (``DATABASE_URL``) that owns nothing: it cannot
run DDL, TRUNCATE or touch the ledger's rows beyond INSERT. Migrations run as the owner
(``MIGRATION_DATABASE_URL``, settings ``BILLING_DATABASE_OWNER``); tests arrange as it what
the runtime role may not do.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

_LOGIN_KEYS = ("USER", "PASSWORD", "HOST", "PORT")


def _login(settings_dict: dict) -> tuple:
    return tuple(str(settings_dict.get(key) or "") for key in _LOGIN_KEYS)


@contextmanager
def as_database_owner(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block as the database owner.

    When the connection already logs in as the owner (a single-URL setup, or the test
    suite, which logs in as the owner and takes the runtime role with ``SET ROLE`` at
    connection start), the role is switched for the block (``SET ROLE NONE`` ... ``RESET
    ROLE``), inside the current transaction if there is one. Otherwise the connection is
    closed and reopened with the owner's login for the block, which must then not run
    inside a transaction.
    """
    connection = connections[using]
    owner = getattr(settings, "BILLING_DATABASE_OWNER", None) or {}
    if not owner or _login(owner) == _login(connection.settings_dict):
        with connection.cursor() as cursor:
            cursor.execute("SET ROLE NONE")
        try:
            yield
        finally:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET ROLE")
            except DatabaseError:
                # A failed transaction: its rollback undoes the SET ROLE; a session-level
                # one goes with the connection.
                if not connection.in_atomic_block:
                    connection.close()
        return
    if connection.in_atomic_block:
        raise RuntimeError("Switching to the owner's login needs a connection outside atomic().")
    saved = {key: connection.settings_dict.get(key) for key in _LOGIN_KEYS}
    connection.close()
    connection.settings_dict.update({key: owner.get(key) for key in _LOGIN_KEYS})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


class _BoundCursor:
    """A psycopg cursor on Django's connection that binds its parameters on the server."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any = None) -> None:
        with connections[DEFAULT_DB_ALIAS].wrap_database_errors:
            self._cursor.execute(sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


@contextmanager
def bound_cursor(using: str = DEFAULT_DB_ALIAS) -> Iterator[_BoundCursor]:
    """A cursor for statements with large array parameters, inside Django's transaction.

    Django's cursors bind client-side: every element of a thousand-element array (an
    email body, an invoice number) is quoted into the SQL text in Python and parsed back
    by the server. This one sends the parameters apart from the statement (the extended
    protocol), lists in binary (no escaping of their elements either), which costs a
    fraction of that for a chunk of an invoice run. Errors
    surface as Django's database exceptions. Cast array parameters in the SQL
    (``%s::bigint[]``): integers are sent with the smallest type that holds them.

    Its statements are planned for their values (``plan_cache_mode=force_custom_plan``
    for the block; the connection's default, set for the ledger's prepared statements,
    is ``force_generic_plan``). A generic plan cannot see an array's length: it guessed
    10 rows for ``unnest`` of 20,000 and joined them in a nested loop, so a batch of meter
    readings took seconds per statement, and quadratically more as the table grew.
    """
    import psycopg
    from psycopg.pq import TransactionStatus
    from psycopg.types.array import ListBinaryDumper

    connection = connections[using]
    connection.ensure_connection()
    raw = connection.connection
    with psycopg.Cursor(raw) as cursor:
        cursor.adapters.register_dumper(list, ListBinaryDumper)
        cursor.execute(_PLAN_MODE_SQL, ["force_custom_plan"])
        saved = cursor.fetchone()[0]
        try:
            yield _BoundCursor(cursor)
        finally:
            # A failed transaction cannot run it, and needs not: its rollback (or the
            # savepoint's) undoes the SET along with the rest.
            if raw.info.transaction_status != TransactionStatus.INERROR:
                cursor.execute(_PLAN_MODE_SQL, [saved])


# The mode in force before, and the new one set for the session (not LOCAL: it is set
# back when the block ends, and a rolled-back (sub)transaction undoes it anyway).
_PLAN_MODE_SQL = (
    "SELECT current_setting('plan_cache_mode'), set_config('plan_cache_mode', %s, false)"
)
