"""What the ledger's transaction table is indexed by, read from the database's catalog.

Every transaction row is written into each index of its table, so the table keeps no index
a posting pays for without a reader: each foreign key has exactly one index led by it (the
database checks a referenced row's deletion through it, and joins use it), and a key most
transactions leave empty is indexed only over the rows that name one (a partial index), so
a payment's row is not written into indexes of NULLs.
"""

import pytest
from django.db import connection

from ledger.models import Transaction

pytestmark = pytest.mark.django_db

_INDEXES = """
    SELECT a.attname, i.indpred IS NOT NULL, c.relname
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = %s::regclass
"""


def _leading() -> dict[str, list[tuple[bool, str]]]:
    with connection.cursor() as cursor:
        cursor.execute(_INDEXES, [Transaction._meta.db_table])
        found: dict[str, list[tuple[bool, str]]] = {}
        for column, partial, name in cursor.fetchall():
            found.setdefault(column, []).append((partial, name))
    return found


def _foreign_keys():
    return [f for f in Transaction._meta.concrete_fields if f.is_relation]


def test_every_foreign_key_leads_exactly_one_index():
    leading = _leading()
    for field in _foreign_keys():
        assert len(leading.get(field.column, [])) == 1, (field.column, leading.get(field.column))


def test_keys_most_transactions_leave_empty_are_indexed_partially():
    leading = _leading()
    nullable = [f for f in _foreign_keys() if f.null and not f.unique]
    assert {f.name for f in nullable} >= {"brand", "service", "hold", "created_by"}
    for field in nullable:
        [(partial, name)] = leading[field.column]
        assert partial, f"{name} indexes the NULLs of {field.column}"


def test_a_payment_row_is_written_into_few_indexes():
    """A payment names its account only: its row lands in the indexes that hold every
    row (primary key, account, time, writing transaction) and the payment's external id
    unique index, not in one per empty key."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indpred IS NULL",
            [Transaction._meta.db_table],
        )
        (full,) = cursor.fetchone()
    # pkey, (account, id), created_at, and reversal_of's unique constraint (one to one)
    assert full == 4
