"""What every report returns, and the pieces they share (periods, the reporting cursor)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
from django.db import connections
from django.utils import timezone
from psycopg import pq
from psycopg.types.datetime import TimestamptzLoader

from core.errors import DomainError
from reports.db import reporting_alias

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


def cents(value: Decimal | int) -> Decimal:
    """A sum from SQL (``0`` when nothing was summed) as an amount with two places."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


class ReportError(DomainError):
    """Report parameters that cannot be answered (400 with a stable code)."""

    status = 400
    code = "invalid_report"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        if code is not None:
            self.code = code


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text | money | date | datetime | int


@dataclass
class Report:
    """Rows (an iterable, possibly a stream) under named columns, totals and a chart.

    ``header`` holds single values shown above the table (a statement's opening and
    closing); ``chart`` is ``{"type", "labels", "series": [{"name", "data"}]}`` or None.
    """

    name: str
    title: str
    columns: list[Column]
    rows: Iterable[dict[str, Any]]
    totals: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    chart: dict[str, Any] | None = None


def day_start(day: date) -> datetime:
    """The first moment of a business day (the operator's time zone)."""
    return timezone.make_aware(datetime.combine(day, time.min))


def next_day_start(day: date) -> datetime:
    return day_start(day + timedelta(days=1))


def check_period(date_from: date, date_to: date) -> None:
    if date_to < date_from:
        raise ReportError(
            "The period ends before it starts.",
            code="invalid_period",
            field="to",
        )


def fetch(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connections[reporting_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def fetch_fast(sql: str, params: dict[str, Any]) -> list[tuple]:
    """``fetch`` with psycopg's compiled ``timestamptz`` loader on this cursor only.

    Django registers its own loader for ``timestamptz`` (to attach ``timezone.utc``); it
    extends psycopg's pure-Python one, which costs ~30 us a value: 8,000 movements took
    a quarter of a second in date parsing alone. psycopg's compiled loader gives the
    same instants (in the session's time zone, UTC under Django).
    """
    with connections[reporting_alias()].cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        return cursor.fetchall()


# libpq 17 brought the chunked-rows mode (``PQsetChunkedRowsMode``) ``stream_chunks`` reads in.
CHUNKED_ROWS = pq.version() >= 170000


def stream_chunks(
    sql: str, params: dict[str, Any], size: int = 1024, *, binary: bool = True
) -> Iterator[list[tuple]]:
    """``fetch_fast``'s rows as they arrive, in lists of up to ``size`` (libpq's chunked-rows
    mode): the caller works on the first rows while the server still produces the next,
    so a long read costs about the longer of the two sides rather than their sum.

    psycopg's ``Cursor.stream(size=...)`` reads the same chunks but hands them over a row
    at a time through a generator, which on a month statement (8,000 rows) cost more
    than the overlap saved; this is that loop (psycopg 3.3, pinned) with each chunk loaded
    whole by the compiled ``load_rows``. The rows come in binary unless ``binary=False``
    (the server formats no timestamp, psycopg parses none; but psycopg makes a
    ``Decimal`` from a binary numeric slower than from its text, so rows of amounts read
    as Decimals come as text): the parameters are quoted into the statement as Django's
    own cursors do (``ClientCursor``, which cannot ask for binary rows), and the
    statement, without parameters, is read by a server-binding cursor (its plan made for
    the values, whatever ``plan_cache_mode`` says). Run the iterator to the end or close
    it before using the connection again (closing cancels the query, as ``stream`` does).
    Where libpq is older than 17, the rows come as one chunk after the whole read.
    """
    if not CHUNKED_ROWS:
        if rows := fetch_fast(sql, params):
            yield rows
        return
    connection = connections[reporting_alias()]
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        query = psycopg.ClientCursor(raw).mogrify(sql, params)
        for _ in cursor.stream(query, size=size, binary=binary):
            # stream() has read the first chunk and set up the row maker: take the chunk
            # whole, then the next ones, until the end of the result.
            yield cursor._tx.load_rows(0, cursor.pgresult.ntuples, cursor._make_row)
            while res := cursor._conn.wait(cursor._stream_fetchone_gen(False)):
                yield cursor._tx.load_rows(0, res.ntuples, cursor._make_row)
            break


def stream(sql: str, params: dict[str, Any], chunk: int = 2000) -> Iterator[tuple]:
    """Rows of a query read in chunks through a server-side cursor (bounded memory).

    A named cursor needs a transaction; the reporting connection runs in autocommit,
    so one is opened around the iteration (read-only on a replica, which is fine).
    """
    connection = connections[reporting_alias()]
    connection.ensure_connection()
    raw = connection.connection
    if connection.in_atomic_block:
        with raw.cursor(name="report_stream") as cursor:
            cursor.itersize = chunk
            cursor.execute(sql, params)
            yield from cursor
        return
    with raw.transaction(), raw.cursor(name="report_stream") as cursor:
        cursor.itersize = chunk
        cursor.execute(sql, params)
        yield from cursor
