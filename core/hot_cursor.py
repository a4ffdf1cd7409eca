"""The connection's long-lived psycopg cursor with server-side prepared statements.

The ledger's posting path and the API's hot reads (an account in a caller's scope) run
their statements on it: each is planned once per connection instead of once per
execution, and the cursor (and its adapters) is built once per connection, not once per
statement. ``BILLING_PREPARED_STATEMENTS=0`` (behind a transaction-pooling proxy) turns
it into Django's own cursor.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg.types.numeric import Int8Dumper

# Server-side prepared statements for the posting path and the API's hot reads: planned
# once per connection instead of once per execution. Turn off
# (BILLING_PREPARED_STATEMENTS=0) behind a transaction-pooling proxy.
PREPARE = settings.BILLING_PREPARED_STATEMENTS or None


def hot_cursor() -> _ReusedCursor | _DjangoCursor:
    """A cursor on Django's own connection (and so inside its transaction) for hot statements.

    With prepared statements on, a server-side-binding psycopg cursor (Django's
    default client-side cursor cannot prepare); otherwise Django's cursor.
    """
    if not PREPARE:
        return _DjangoCursor(connection.cursor())
    # This thread's connection wrapper, looked up once: each attribute read through the
    # ``connection`` proxy looks it up again (an asgiref ``Local``).
    wrapper = connections[DEFAULT_DB_ALIAS]
    wrapper.ensure_connection()
    raw = wrapper.connection
    cursor = getattr(wrapper, "_ledger_hot_cursor", None)
    if cursor is None or cursor.connection is not raw or cursor.closed:
        # One cursor per connection, reused: building one (and its adapters) per
        # statement costs more than the statement's own client-side work.
        cursor = psycopg.Cursor(raw)
        cursor.adapters.register_dumper(int, Int8Dumper)
        wrapper._ledger_hot_cursor = cursor
    return _ReusedCursor(cursor, wrapper)


class _ReusedCursor:
    """The connection's long-lived cursor; leaving the block does not close it.

    Errors surface as Django's database exceptions (``IntegrityError``, ...), as
    they would through Django's own cursor.
    """

    __slots__ = ("_cursor", "_errors")

    def __init__(self, cursor: psycopg.Cursor, wrapper: Any) -> None:
        self._cursor = cursor
        self._errors = wrapper.wrap_database_errors

    def __enter__(self) -> _ReusedCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: Any = None, prepare: Any = None) -> None:
        with self._errors:
            self._cursor.execute(sql, params, prepare=prepare)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with self._errors:
            return self._cursor.fetchall()

    def pipelined(self) -> Any:
        return self._cursor.connection.pipeline()


class _DjangoCursor:
    """Adapts Django's cursor to accept (and ignore) ``prepare=``."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __enter__(self) -> _DjangoCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def execute(self, sql: str, params: Any = None, prepare: Any = None) -> None:
        self._cursor.execute(sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def pipelined(self) -> Any:
        return contextlib.nullcontext()
