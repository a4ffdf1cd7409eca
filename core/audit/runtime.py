"""Handing the audit context to the database: the variables the triggers read.

The audit triggers call pghistory's ``_pgh_attach_context()``, which reads the
transaction-local settings ``pghistory.context_id`` and
``pghistory.context_metadata`` and upserts that context into
``pghistory_context``. This module sets them, as ``pghistory.context`` does:
inside a context, every write statement sent through Django's connection is
prefixed with ``SELECT set_config(..., true)`` (true: local to the
transaction, so in autocommit they last one statement and cannot leak into
another request on a pooled connection).

It is pghistory's runtime with three fixes that this code base needs:
statements composed with ``psycopg.sql`` (``Composed``, used by the demo
loader and the ingest) are rendered to text instead of failing; ``executemany``
gets its settings in a statement of its own inside one transaction instead of
having its parameter rows corrupted; and leaving the outermost context inside
a database transaction clears the settings, so that a later write of the same
transaction is not attributed to the context that has ended. Reads,
transaction control and DDL are sent as they are.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction

# Statements that fire no row trigger, or that cannot run after another statement.
UNTOUCHED_PREFIXES = (
    "select",
    "show",
    "explain",
    "vacuum",
    "analyze",
    "checkpoint",
    "discard",
    "load",
    "cluster",
    "reindex",
    "create",
    "alter",
    "drop",
    "truncate",
    "comment",
    "grant",
    "revoke",
    "set ",
    "reset",
    "begin",
    "start",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "prepare",
    "lock",
    "listen",
    "notify",
)
SET_SQL = (
    "SELECT set_config('pghistory.context_id', %s, true),"
    " set_config('pghistory.context_metadata', %s, true); "
)
CLEAR_SQL = (
    "SELECT set_config('pghistory.context_id', '', true),"
    " set_config('pghistory.context_metadata', '', true)"
)


@dataclass
class AuditContext:
    id: uuid.UUID
    metadata: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> tuple[str, str]:
        return str(self.id), json.dumps(self.metadata, cls=DjangoJSONEncoder)


_state = threading.local()


def active() -> AuditContext | None:
    return getattr(_state, "context", None)


@contextlib.contextmanager
def audit_context(**metadata: Any) -> Iterator[AuditContext]:
    """Attribute every audited change made in this thread inside the block to ``metadata``.

    Nested blocks join the outer context (their metadata is added to it).
    """
    outer = active()
    if outer is not None:
        outer.metadata.update(metadata)
        yield outer
        return
    context = AuditContext(uuid.uuid4(), dict(metadata))
    _state.context = context
    try:
        with connection.execute_wrapper(_with_context):
            yield context
    finally:
        _state.context = None
    forget_in_transaction()


def forget_in_transaction() -> None:
    """Clear the settings if the block ended inside a transaction that goes on."""
    if connection.connection is None or not connection.in_atomic_block or connection.needs_rollback:
        return  # autocommit: the settings ended with their statement
    with connection.cursor() as cursor:
        cursor.execute(CLEAR_SQL)


def _untouched(cursor: Any, sql: str) -> bool:
    return (
        sql.lstrip()[:16].lower().startswith(UNTOUCHED_PREFIXES)
        or bool(getattr(cursor, "name", None))  # a named (server-side) cursor: a read
        or cursor.connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    )


def _with_context(execute: Any, sql: Any, params: Any, many: bool, context: dict) -> Any:
    audit = active()
    cursor = context["cursor"]
    if audit is None:
        return execute(sql, params, many, context)
    if isinstance(sql, psycopg.sql.Composable):
        sql = sql.as_string(cursor)
    is_bytes = isinstance(sql, bytes)
    text = sql.decode() if is_bytes else sql
    if _untouched(cursor, text):
        return execute(sql, params, many, context)
    if many:
        # One settings statement, then the batch, in one transaction (the settings are local).
        with transaction.atomic(using=context["connection"].alias, savepoint=False):
            cursor.execute(SET_SQL.rstrip("; "), audit.settings())
            return execute(sql, params, many, context)
    context_id, metadata = audit.settings()
    if params is None:
        text, params = text.replace("%", "%%"), (context_id, metadata)
    elif isinstance(params, dict):
        params = {**params, "pghistory__context_id": context_id, "pghistory__metadata": metadata}
        text = (
            SET_SQL.replace("%s", "%(pghistory__context_id)s", 1).replace(
                "%s", "%(pghistory__metadata)s", 1
            )
            + text
        )
        return _last_result(execute, text.encode() if is_bytes else text, params, context)
    else:
        params = (context_id, metadata, *params)
    text = SET_SQL + text
    return _last_result(execute, text.encode() if is_bytes else text, params, context)


def _last_result(execute: Any, sql: Any, params: Any, context: dict) -> Any:
    result = execute(sql, params, False, context)
    cursor = context["cursor"]
    while cursor.nextset():  # move to the caller's statement (results, rowcount)
        pass
    return result
