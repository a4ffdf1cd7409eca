"""Deferred foreign keys checked before COMMIT, for the writers of many rows.

Django declares every foreign key ``DEFERRABLE INITIALLY DEFERRED``: the database checks
the rows a transaction inserted at its COMMIT, one check per row and key. A writer of
many rows may want those checks earlier: while it holds nothing others wait for (an
invoice run's chunk, before taking the brand's number counter), or while Python is busy
with the next rows (the ledger's bulk writer, between two rounds of COPY).

``SET CONSTRAINTS <keys> IMMEDIATE`` checks the rows written so far at once (a violation
is raised there, as it would have been at COMMIT), ``DEFERRED`` puts the keys back as
declared. Only the keys of the tables named: a caller's rows that name a row written
later in the transaction (a registry's claims, say) keep their check at COMMIT.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from django.db import connection

_KEYS_SQL = """
    SELECT string_agg(quote_ident(conname), ', ' ORDER BY conname) FROM pg_constraint
     WHERE contype = 'f' AND condeferrable AND condeferred AND conrelid = ANY(%s::regclass[])
"""
_KEYS: dict[tuple[str, tuple[str, ...]], str] = {}  # (database, tables) -> their keys


def deferred_keys(tables: Sequence[str]) -> str:
    """The deferred foreign keys of ``tables``, as a ``SET CONSTRAINTS`` list ('' if
    none); read from the catalog once per database."""
    cache_key = (connection.settings_dict["NAME"], tuple(tables))
    if cache_key not in _KEYS:
        with connection.cursor() as cursor:
            cursor.execute(_KEYS_SQL, [list(tables)])
            _KEYS[cache_key] = cursor.fetchone()[0] or ""
    return _KEYS[cache_key]


def _statements(names: str) -> tuple[str, str]:
    return f"SET CONSTRAINTS {names} IMMEDIATE", f"SET CONSTRAINTS {names} DEFERRED"


def check_keys_now(tables: Sequence[str]) -> None:
    """Check the deferred foreign keys of the rows of ``tables`` written so far in this
    transaction now, then defer them again."""
    names = deferred_keys(tables)
    if names:
        with connection.cursor() as cursor:
            for statement in _statements(names):
                cursor.execute(statement)


class KeysChecking:
    """``check_keys_now`` while the caller goes on in Python: the two statements are sent
    in a psycopg pipeline, left only by ``wait`` (which raises what the check raised)."""

    def __init__(self, tables: Sequence[str]) -> None:
        names = deferred_keys(tables)
        connection.ensure_connection()
        raw = connection.connection
        self._pipeline = raw.pipeline()
        self._pipeline.__enter__()
        try:  # an earlier check's violation may come back while these are sent
            with connection.wrap_database_errors, raw.cursor() as cursor:
                for statement in _statements(names) if names else ():
                    cursor.execute(statement)
        except BaseException:
            self._pipeline.__exit__(*sys.exc_info())
            raise

    def wait(self, exc_info: tuple[Any, Any, Any] = (None, None, None)) -> None:
        with connection.wrap_database_errors:
            self._pipeline.__exit__(*exc_info)
