"""``stream_chunks``: a query's rows in chunks as they arrive (libpq's chunked-rows mode),
and the payer's JSON statement encoded a chunk at a time."""

from __future__ import annotations

import importlib
from datetime import date

import pytest
from django.db import DataError, connections, transaction
from rest_framework.renderers import JSONRenderer

from reports.api.views import statement_data, statement_json
from reports.db import reporting_alias
from reports.standard import base, statement
from reports.standard.base import fetch_fast, stream_chunks
from tests.reports.test_statement import STAFF, pinned  # noqa: F401

pytestmark = pytest.mark.django_db

# The module (the package re-exports its function under the same name).
statement_module = importlib.import_module("reports.standard.statement")

SERIES = "SELECT g, g * 2, now() FROM generate_series(1, %(n)s) g ORDER BY g"


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize(
    ("n", "sizes"), [(0, []), (5, [5]), (2000, [1000, 1000]), (2001, [1000, 1000, 1])]
)
def test_rows_come_whole_in_order_in_chunks_of_the_size(monkeypatch, chunked, n, sizes):
    monkeypatch.setattr(base, "CHUNKED_ROWS", chunked)
    chunks = list(stream_chunks(SERIES, {"n": n}, size=1000))
    assert [row for chunk in chunks for row in chunk] == fetch_fast(SERIES, {"n": n})
    # Without libpq 17 the rows come in one piece, after the whole read.
    assert [len(chunk) for chunk in chunks] == (sizes if chunked else ([n] if n else []))


@pytest.mark.django_db(transaction=True)
def test_closing_early_cancels_and_leaves_the_connection_usable():
    """Outside a transaction, as the API reads: the query is cancelled, the connection
    serves the next one (inside one, the cancel aborts it, as any failed query does)."""
    chunks = stream_chunks(SERIES, {"n": 1_000_000}, size=100)
    first = next(chunks)
    assert [row[0] for row in first] == list(range(1, 101))
    chunks.close()
    connection = connections[reporting_alias()]
    assert fetch_fast("SELECT 41 + 1", {}) == [(42,)]
    assert connection.connection.info.transaction_status.name == "IDLE"


def test_an_error_in_the_query_is_a_django_database_error_and_the_connection_recovers():
    with (
        pytest.raises(DataError, match="division by zero"),
        transaction.atomic(using=reporting_alias()),
    ):
        list(stream_chunks("SELECT 1 / (g - 3) FROM generate_series(1, 5) g", {}, size=1))
    assert fetch_fast("SELECT 1", {}) == [(1,)]


@pytest.mark.parametrize("size", [1, 2, 1024])
def test_the_statement_encoded_chunk_by_chunk_is_drfs_json(pinned, monkeypatch, size):  # noqa: F811
    monkeypatch.setattr(statement_module, "MOVEMENT_CHUNK", size)
    for account, first, last in (
        (pinned["p"], date(2026, 3, 1), date(2026, 3, 31)),
        (pinned["p"], date(2026, 3, 2), date(2026, 3, 3)),
        (pinned["p"], date(2026, 3, 10), date(2026, 3, 10)),
    ):
        drf = JSONRenderer().render(
            statement_data(account, statement(STAFF, account, first, last, chart=False))
        )
        assert statement_json(STAFF, account, first, last) == drf
