"""Deferred foreign keys checked before COMMIT, for the writers of many rows.

Django declares every foreign key ``DEFERRABLE INITIALLY DEFERRED``: the database checks
the rows a transaction inserted at its COMMIT, one check per row and key. A writer of
many rows may want those checks earlier: before it takes something others wait for (an
invoice run's chunk checks its lines and ledger rows before taking the brand's number
counter, so the counter is not held through them).

``SET CONSTRAINTS <keys> IMMEDIATE`` checks the rows written so far at once (a violation
is raised there, as it would have been at COMMIT), ``DEFERRED`` puts the keys back as
declared. Only the keys of the tables named: other rows that name a row written later in
the transaction (a registry's claims name their transactions) keep their check at COMMIT.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def check_keys_now(tables: Sequence[str]) -> None:
    """Check the deferred foreign keys of the rows of ``tables`` written so far in this
    transaction now, then defer them again."""
    names = deferred_keys(tables)
    if names:
        with connection.cursor() as cursor:
            cursor.execute(f"SET CONSTRAINTS {names} IMMEDIATE")
            cursor.execute(f"SET CONSTRAINTS {names} DEFERRED")
