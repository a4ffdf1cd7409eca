"""Transactions in psycopg's pipeline mode: statements that need no answer travel together.

``pipelined_atomic()`` is ``transaction.atomic()`` (Django's bookkeeping: nested
blocks' savepoints, ``on_commit`` callbacks, rollback on error) whose round trips
are batched: the BEGIN is sent together with the block's first statement, a
statement whose result is not read (a SAVEPOINT, an INSERT without RETURNING)
waits for the next one that is, and the COMMIT goes out with whatever is still
queued. A posting then costs two round trips instead of five, and the rows it
locks are held for one client round trip.

How: inside the atomic block psycopg is told autocommit (so it sends no BEGIN of
its own, which in pipeline mode costs a round trip), the connection enters
pipeline mode, and the first statement, through Django's cursor (an execute
wrapper) or through ``send_begin_if_pending`` (the ledger's own cursor), is
preceded by an explicit BEGIN. A database error of a queued statement surfaces
when the pipeline is next read or synced, as Django's exception, inside the block,
which then rolls back. When Django's atomic block commits, psycopg has already
committed (its commit is a no-op) and the ``on_commit`` callbacks run.

Only the outermost block of a connection is pipelined (anywhere else this is a
plain ``atomic()``), and only with ``BILLING_PIPELINED_POSTINGS`` and server-side
prepared statements on (``BILLING_PREPARED_STATEMENTS``; behind a transaction-pooling
proxy it stays off).
COPY does not work in pipeline mode: bulk paths use plain ``atomic()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, transaction


def pipelining_enabled() -> bool:
    """Whether ``pipelined_atomic`` pipelines at all (settings; prepared statements on)."""
    return bool(settings.BILLING_PREPARED_STATEMENTS and settings.BILLING_PIPELINED_POSTINGS)


def pipelining() -> bool:
    """Whether the current transaction runs in pipeline mode (``pipelined_atomic``)."""
    return getattr(connection, "_billing_pipelined", False)


def send_begin_if_pending(execute: Callable[[str], Any]) -> None:
    """Queue the block's BEGIN before its first statement (``execute`` runs one)."""
    if getattr(connection, "_billing_begin_pending", False):
        connection._billing_begin_pending = False
        execute("BEGIN")


# django-pghistory's context (the audit trail's request id) rides in front of a write as
# "SELECT set_config(...), set_config(...); <the write>": two commands, which the extended
# protocol of pipeline mode refuses. They are sent as two statements of the same
# transaction instead (``set_config(..., true)`` lasts until its end either way).
_PGHISTORY_PREFIX = "SELECT set_config('pghistory.context_id', "
_PGHISTORY_SPLIT = "; "


def _begin_first(execute: Callable, sql: Any, params: Any, many: bool, context: dict) -> Any:
    send_begin_if_pending(lambda begin: execute(begin, None, False, context))
    if isinstance(sql, str) and sql.startswith(_PGHISTORY_PREFIX) and not many:
        head, _, sql = sql.partition(_PGHISTORY_SPLIT)
        if isinstance(params, dict):
            execute(head, params, False, context)
        else:
            execute(head, params[:2], False, context)
            params = params[2:]
    return execute(sql, params, many, context)


@contextlib.contextmanager
def pipelined_atomic() -> Iterator[None]:
    """``transaction.atomic()``, pipelined when it is the connection's outermost block."""
    if not pipelining_enabled() or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        raw.autocommit = True  # still idle: nothing goes out
        connection._billing_pipelined = connection._billing_begin_pending = True
        try:
            with (
                connection.execute_wrapper(_begin_first),
                connection.wrap_database_errors,
                raw.pipeline(),
            ):
                yield
                if not connection._billing_begin_pending:  # the BEGIN went out
                    raw.cursor().execute("COMMIT")
        finally:
            connection._billing_pipelined = connection._billing_begin_pending = False
