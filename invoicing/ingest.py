"""Bulk ingest of usage records and meter readings through PostgreSQL COPY.

A batch (a CSV file, or the records of one API request) is one database
transaction: either every valid record of it is stored, or nothing is.

1. ``COPY`` streams the batch into a temporary staging table, numbered in input
   order. Fast path: the table is typed, so PostgreSQL's own parsers read ids and
   numbers as the rows stream in, and moments are cast in bulk. If any value cannot
   be read, that attempt is rolled back (a savepoint) and the batch is staged again
   as text and read value by value with exception-free readers (migration 0003), so
   the bad value becomes a per-record error. Both paths accept exactly the same values.
2. One statement validates every row (account and service exist, the account is a
   client account linked to the service's brand and in the caller's brand scope,
   quantity / reading is a non-negative number with at most six decimals, the moment
   is an ISO-8601-shaped date and time PostgreSQL reads, not in the future, an
   external id is present; usage also needs a subscription of the account to the
   service on the business day it occurred, ``no_subscription`` otherwise: the
   rating bills usage per subscription only, so it would be stored and never billed.
   Usage that arrives before its subscription is sent again once it exists, and
   its external id makes the resend safe) and, for usage, inserts the valid rows with one ``INSERT
   ... SELECT`` (optimistically without ``ON CONFLICT``; again with ``ON CONFLICT
   (service, external_id) DO NOTHING`` only if a duplicate shows up: the rows it
   skips are the duplicates, within the batch or already stored). Invalid rows come
   back as ``{index, code, message}``.
3. Meter readings need their neighbours: the valid rows are checked in Python
   per meter, in time order, against the previous and next stored readings
   (``reading_backwards`` unless it is a plausible rollover), each reading's
   ``consumption`` is computed, and a late reading landing between two others
   updates the next one's consumption. The meters are locked (in id order)
   for that, so two batches for one meter queue rather than race, and known
   external ids are looked up again under those locks (a parallel batch's
   readings are duplicates, not readings going backwards). One external id sent
   for two meters by parallel batches meets the unique constraint instead: the
   batch is placed again from a savepoint and the stored one counts as a
   duplicate. An account/service with no meter yet gets one, installed at its
   first reading.

Timestamps without an offset are read in the business time zone.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

from core.text import text_problem
from invoicing.exceptions import IngestConflict, MalformedFile, TooManyRecords
from invoicing.meters import reading_step

STAGE = "invoicing_stage"
MAX_API_RECORDS = 10_000
# Placements of a readings batch before giving up on parallel batches with its external ids.
DUPLICATE_ATTEMPTS = 5

USAGE = "usage"
READINGS = "readings"
# Input field -> staging column, per kind. The staging table is shared by both kinds.
FIELD_COLUMNS = {
    USAGE: {
        "account": "account",
        "service": "service",
        "quantity": "value",
        "occurred_at": "moment",
        "external_id": "external_id",
        "source": "source",
    },
    READINGS: {
        "account": "account",
        "service": "service",
        "reading": "value",
        "taken_at": "moment",
        "external_id": "external_id",
        "meter": "meter",
        "source": "source",
    },
}
REQUIRED = {
    USAGE: ("account", "service", "quantity", "occurred_at", "external_id"),
    READINGS: ("account", "service", "reading", "taken_at", "external_id"),
}

MESSAGES = {
    "invalid_record": "Each record is an object.",
    "invalid_account": "account must be an account id.",
    "unknown_account": "No such account.",
    "invalid_service": "service must be a service id.",
    "unknown_service": "No such service.",
    "brand_not_linked": "The account is not linked to the service's brand.",
    "account_closed": "The account is closed.",
    "negative_quantity": "quantity cannot be negative.",
    "invalid_quantity": "quantity must be a decimal string with at most 6 decimal places.",
    "negative_reading": "reading cannot be negative.",
    "invalid_reading": "reading must be a decimal string with at most 6 decimal places.",
    "invalid_timestamp": "The timestamp must be an ISO 8601 date and time.",
    "future_timestamp": "The timestamp is in the future.",
    "invalid_external_id": "external_id is required (at most 100 characters).",
    "no_subscription": (
        "The account has no subscription to this service on that day, so the usage would"
        " never be billed; send it again once the subscription exists."
    ),
    "invalid_meter": "meter must be the meter's serial: text of at most 64 characters.",
    "invalid_source": "source must be text of at most 100 characters.",
    "no_meter": "No meter of this account and service was installed at that time.",
    "reading_backwards": "The reading is below the previous reading of the meter.",
    "reading_backwards_next": "A later reading of the meter is below this one.",
}


@dataclass(frozen=True, slots=True)
class RecordError:
    """A refused record: ``index`` is 0-based in an API batch, the data row (1-based) in a file."""

    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass
class IngestResult:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: list[RecordError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "errors": [error.as_dict() for error in self.errors],
        }


def _error(index: int, code: str) -> RecordError:
    return RecordError(index, code.removesuffix("_next"), MESSAGES[code])


# --------------------------------------------------------------------------- SQL

# Digits only (ltrim of every digit leaves nothing): cheaper than a regular expression.
_ID_OK = "(ltrim({0}, '0123456789') = '' AND length({0}) BETWEEN 1 AND 18)"
# Plain digits[.digits], 1-14 before the point: what most files carry, cast directly.
_DECIMAL_OK = """(
    ltrim(value, '0123456789.') = '' AND length(value) > 0
    AND CASE WHEN strpos(value, '.') = 0 THEN length(value) <= 14
             ELSE strpos(value, '.') BETWEEN 2 AND 15
                  AND length(value) - strpos(value, '.') BETWEEN 1 AND 6
                  AND strpos(substr(value, strpos(value, '.') + 1), '.') = 0 END
)"""
# The bulk form of invoicing_try_moment (migration 0003): the same reading, without its
# exception handler, so an unreadable moment aborts the statement (-> the careful path).
_MOMENT_BULK = """
CASE WHEN substr(moment, 5, 1) = '-' AND substr(moment, 8, 1) = '-'
          AND substr(moment, 11, 1) IN ('T', 't', ' ')
     THEN CASE WHEN ltrim(substr(moment, 17), ':.0123456789') = ''
               THEN moment::timestamp AT TIME ZONE %(tz)s
               ELSE moment::timestamptz END
END
"""
_READ_FAST = f"""
    s.account AS account_ref, s.service AS service_ref, s.value AS num,
    {_MOMENT_BULK.replace("moment", "s.moment")} AS moment_tz
"""
_READ_CAREFUL = f"""
    CASE WHEN {_ID_OK.format("s.account")} THEN s.account::bigint
         ELSE invoicing_try_bigint(s.account) END AS account_ref,
    CASE WHEN {_ID_OK.format("s.service")} THEN s.service::bigint
         ELSE invoicing_try_bigint(s.service) END AS service_ref,
    CASE WHEN {_DECIMAL_OK.replace("value", "s.value")} THEN s.value::numeric
         ELSE invoicing_try_numeric(s.value) END AS num,
    invoicing_try_moment(s.moment, %(tz)s) AS moment_tz
"""


# Usage needs a subscription of its account to its service on its business day: the
# rating bills usage per subscription segment and nothing else. Subscriptions of one
# account and service never overlap (an exclusion constraint), so at most one matches.
_SUBSCRIPTION_JOIN = """
        LEFT JOIN invoicing_subscription sub
          ON sub.account_id = a.id AND sub.service_id = sv.id
         AND sub.starts_on <= (r.moment_tz AT TIME ZONE %(tz)s)::date
         AND (sub.ends_on IS NULL OR sub.ends_on >= (r.moment_tz AT TIME ZONE %(tz)s)::date)
"""


def _checked_sql(value_name: str, *, fast: bool, subscription: bool = False) -> str:
    """Every staged row with its error code (NULL when valid), resolved ids and typed values.

    ``fast``: the staging table is typed (COPY parsed ids and numbers) and moments are
    cast in bulk; otherwise it is text and every value goes through the exact,
    exception-free readers. Both accept the same values; the rules after reading are
    shared. ``OFFSET 0`` keeps each layer's expressions from being evaluated twice.
    ``subscription``: a valid row also needs a subscription on its day
    (``no_subscription``), for usage; a meter reading counts without one (it is the
    baseline of the next one's consumption).
    """
    no_subscription = "WHEN sub.id IS NULL THEN 'no_subscription'" if subscription else ""
    return f"""
    SELECT c.idx, c.error, c.account_id, c.service_id, c.external_id, c.meter, c.source,
           CASE WHEN c.error IS NULL THEN c.num END AS value,
           CASE WHEN c.error IS NULL THEN c.moment_tz END AS moment
    FROM (
        SELECT r.*, a.id AS account_id, sv.id AS service_id,
            CASE
                WHEN r.account_ref IS NULL OR r.account_ref <= 0 THEN 'invalid_account'
                WHEN a.id IS NULL THEN 'unknown_account'
                WHEN r.service_ref IS NULL OR r.service_ref <= 0 THEN 'invalid_service'
                WHEN sv.id IS NULL THEN 'unknown_service'
                WHEN ab.account_id IS NULL THEN %(not_linked)s
                WHEN a.status = 'closed' THEN 'account_closed'
                WHEN r.num IS NULL THEN 'invalid_{value_name}'
                WHEN r.num < 0 THEN 'negative_{value_name}'
                WHEN r.num >= 1e14 OR scale(r.num) > 6 THEN 'invalid_{value_name}'
                WHEN r.moment_tz IS NULL OR r.moment_tz < '1900-01-01T00:00:00Z'
                    THEN 'invalid_timestamp'
                WHEN r.moment_tz > now() + interval '1 day' THEN 'future_timestamp'
                WHEN r.external_id IS NULL OR r.external_id = ''
                     OR length(r.external_id) > 100 THEN 'invalid_external_id'
                WHEN length(r.meter) > 64 THEN 'invalid_meter'
                {no_subscription}
            END AS error
        FROM (
            SELECT s.idx, s.external_id, s.meter,
                COALESCE(NULLIF(s.source, ''), %(source)s) AS source,
                {_READ_FAST if fast else _READ_CAREFUL}
            FROM {STAGE} s
            OFFSET 0
        ) r
        LEFT JOIN accounts_account a ON a.id = r.account_ref AND a.kind = 'client'
        LEFT JOIN brands_service sv
          ON sv.id = r.service_ref
         AND (%(scope)s::bigint[] IS NULL OR sv.brand_id = ANY(%(scope)s::bigint[]))
        LEFT JOIN accounts_account_brands ab
          ON ab.account_id = a.id AND ab.brand_id = sv.brand_id
        {_SUBSCRIPTION_JOIN if subscription else ""}
        OFFSET 0
    ) c
    """


LOAD_TABLE = "invoicing_usageload"


def _usage_apply_sql(*, fast: bool, on_conflict: bool, load: bool = False) -> str:
    """One pass: validate, insert the valid rows, return the refused ones (and the counts).

    ``load``: the valid rows go to the load table of a parallel ingest (with their
    load id, part and index), for ``invoicing.ingest_parallel`` to publish together.
    """
    conflict = "ON CONFLICT (service_id, external_id) DO NOTHING" if on_conflict else ""
    insert = (
        f"""INSERT INTO {LOAD_TABLE}
            (load_id, part, idx, account_id, service_id, quantity, occurred_at, external_id,
             source)
        SELECT %(load)s, %(part)s, idx, account_id, service_id, value, moment, external_id,
               left(source, 100)
        FROM checked WHERE error IS NULL"""
        if load
        else f"""INSERT INTO invoicing_usagerecord
            (account_id, service_id, quantity, occurred_at, external_id, source)
        SELECT account_id, service_id, value, moment, external_id, left(source, 100)
        FROM checked WHERE error IS NULL
        {conflict}"""
    )
    return f"""
    WITH checked AS MATERIALIZED ({_checked_sql("quantity", fast=fast, subscription=True)}),
    ins AS (
        {insert}
        RETURNING 1
    )
    SELECT -1::bigint, NULL::text, (SELECT count(*) FROM ins),
           (SELECT count(*) FROM checked WHERE error IS NULL)
    UNION ALL
    (SELECT idx, error, NULL, NULL FROM checked WHERE error IS NOT NULL ORDER BY idx)
    """


_READINGS_CHECK_SQL = f"""
SELECT idx, error, account_id, service_id, value, moment, external_id,
       COALESCE(meter, ''), left(source, 100)
FROM ({_checked_sql("reading", fast=False)}) c
ORDER BY idx
"""


def _begin(cursor: Any) -> None:
    # A big sort/materialise buffer keeps a million-row batch in memory, and JIT
    # compilation of the validation would cost more than it saves (until commit).
    cursor.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
        [getattr(settings, "INVOICING_INGEST_WORK_MEM", "512MB")],
    )


def _create_stage(cursor: Any, *, typed: bool) -> None:
    """The staging table: typed columns for the fast path, text for the careful one."""
    # Inside an outer transaction (a test, a caller's atomic block) the table of an
    # earlier batch may still exist: ON COMMIT DROP only fires at the real commit.
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGE}")
    number, ident = ("numeric", "bigint") if typed else ("text", "text")
    cursor.execute(
        f"""CREATE TEMP TABLE {STAGE} (
                idx bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 1),
                account {ident}, service {ident}, value {number}, moment text,
                external_id text, meter text, source text
            ) ON COMMIT DROP"""
    )


def _scope_params(brand_ids: Iterable[int] | None, source: str) -> dict[str, Any]:
    scope = None if brand_ids is None else list(brand_ids)
    return {
        "scope": scope,
        # Outside a partner's brands, an account's existence is not revealed.
        "not_linked": "brand_not_linked" if scope is None else "unknown_account",
        "source": source,
        "tz": settings.TIME_ZONE,
    }


# --------------------------------------------------------------------------- staging


# What a record's field is refused with when it is of the wrong type or holds text that
# cannot be stored (a NUL character, an unpaired surrogate) or would not fit its column.
FIELD_ERRORS = {
    "account": "invalid_account",
    "service": "invalid_service",
    "quantity": "invalid_quantity",
    "reading": "invalid_reading",
    "occurred_at": "invalid_timestamp",
    "taken_at": "invalid_timestamp",
    "external_id": "invalid_external_id",
    "meter": "invalid_meter",
    "source": "invalid_source",
}
FIELD_MAX_LENGTH = {"meter": 64, "source": 100}


def _record_refusal(kind: str, index: int, record: dict[str, Any]) -> RecordError | None:
    """Why a record cannot even be staged, or None.

    Values are JSON strings or integers (the value field also a ``Decimal`` from
    Python callers; never a float); text holds no NUL character nor an unpaired
    surrogate (PostgreSQL could not store it) and fits its column.
    """
    value_field = REQUIRED[kind][2]
    for name in FIELD_COLUMNS[kind]:
        value = record.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        if name == value_field and isinstance(value, Decimal):
            continue
        code = FIELD_ERRORS[name]
        if not isinstance(value, str):
            message = MESSAGES[code] if name == value_field else f"{name} must be text."
            return RecordError(index, code, message)
        problem = text_problem(value)
        if problem is not None:
            return RecordError(index, code, f"{name}: {problem[1]}")
        limit = FIELD_MAX_LENGTH.get(name)
        if limit is not None and len(value) > limit:
            return RecordError(index, code, f"{name} is longer than {limit} characters.")
    return None


def _stage_records(cursor: Any, kind: str, records: Sequence[Any]) -> list[RecordError]:
    """COPY API records (dicts) into staging with their 0-based index; return the records
    refused before staging (not an object, a value of the wrong type, text that cannot be
    stored: ``_record_refusal``)."""
    mapping = FIELD_COLUMNS[kind]
    value_field = REQUIRED[kind][2]
    columns = ["idx", *dict.fromkeys(mapping.values())]
    inverse = {column: name for name, column in mapping.items()}
    refused: list[RecordError] = []
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
    with raw.copy(f"COPY {STAGE} ({', '.join(columns)}) FROM STDIN") as copy:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                refused.append(_error(index, "invalid_record"))
                continue
            if isinstance(record.get(value_field), float | bool):
                refused.append(_error(index, f"invalid_{value_field}"))
                continue
            refusal = _record_refusal(kind, index, record)
            if refusal is not None:
                refused.append(refusal)
                continue
            row: list[Any] = [index]
            for column in columns[1:]:
                value = record.get(inverse[column])
                row.append(None if value is None else str(value))
            copy.write_row(row)
    return refused


def _not_text(line: int, reason: str, detail: str) -> MalformedFile:
    messages = {
        "nul_byte": f"Line {line} of the file holds a NUL byte: this is not a text file.",
        "invalid_utf8": f"Line {line} of the file is not valid UTF-8 ({detail}); save the file "
        "as UTF-8.",
    }
    return MalformedFile(messages[reason], line=line, reason=reason)


def _text_blocks(stream: IO[bytes], first_line: int) -> Iterator[bytes]:
    """The stream's blocks as they are, refused (``malformed_file`` naming the line) at the
    first NUL byte or byte sequence that is not UTF-8: PostgreSQL would refuse either in
    the middle of the COPY, with a message about byte sequences rather than lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = first_line
    while block := stream.read(1 << 20):
        nul = block.find(b"\x00")
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(block if nul == -1 else block[:nul])
        except UnicodeDecodeError as exc:
            at = max(0, exc.start - pending)
            bad = block[at : at + 1].hex()
            where = line + block.count(b"\n", 0, at)
            raise _not_text(where, "invalid_utf8", f"byte 0x{bad}") from None
        if nul != -1:
            raise _not_text(line + block.count(b"\n", 0, nul), "nul_byte", "")
        line += block.count(b"\n")
        yield block
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _not_text(line, "invalid_utf8", "it ends inside a character") from None


def _stage_file(cursor: Any, kind: str, stream: IO[bytes], *, typed: bool = False) -> None:
    """COPY a CSV file with a header row into staging, streamed as it is (no parsing here).

    Into a typed table a bad value raises (the caller then stages the file as text);
    into a text table only a broken file does (``malformed_file``), and so does a NUL
    byte or a byte sequence that is not UTF-8, wherever it is (naming its line).
    """
    header_bytes = b"".join(_text_blocks(io.BytesIO(stream.readline()), 1))
    header_line = header_bytes.decode("utf-8-sig")
    if not header_line.strip():
        raise MalformedFile("The file is empty; a header row is expected.")
    names = [name.strip() for name in next(csv.reader(io.StringIO(header_line)))]
    mapping = FIELD_COLUMNS[kind]
    unknown = [name for name in names if name not in mapping]
    missing = [name for name in REQUIRED[kind] if name not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise MalformedFile(
            "The header must name the columns "
            + ", ".join(REQUIRED[kind])
            + " (optionally "
            + ", ".join(sorted(set(mapping) - set(REQUIRED[kind])))
            + ").",
            unknown=unknown,
            missing=missing,
        )
    columns = [mapping[name] for name in names]
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
    try:
        with raw.copy(f"COPY {STAGE} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
            for block in _text_blocks(stream, 2):
                copy.write(block)
    except psycopg.Error as exc:
        if typed:
            raise
        raise MalformedFile(
            f"The file is not valid CSV: {str(exc).strip()}", line_offset=1
        ) from None


# --------------------------------------------------------------------------- usage


# What makes the fast path give way to the careful one: a value PostgreSQL cannot read.
UNREADABLE = (DataError, psycopg.DataError)


def _usage_batch(
    cursor: Any,
    result: IngestResult,
    params: dict[str, Any],
    stage: Any,
    *,
    fast: bool = True,
) -> None:
    """Stage and apply a usage batch: fast when every value is readable, else carefully.

    Fast: COPY into a typed staging table (PostgreSQL's own parsers read the ids and
    numbers as the rows stream in) and cast the moments in bulk. A single unreadable
    value aborts that attempt (a savepoint) and the batch is staged again as text and
    read value by value, so it is reported as a per-record error. Both paths accept the
    same values and apply the same rules, so the outcome never depends on the path.
    """
    if fast:
        try:
            with transaction.atomic():
                _create_stage(cursor, typed=True)
                refused = stage(typed=True)
                _usage_apply(cursor, result, params, refused, fast=True)
            return
        except UNREADABLE:
            pass  # an unreadable value somewhere: read them one by one
    _create_stage(cursor, typed=False)
    refused = stage(typed=False)
    _usage_apply(cursor, result, params, refused, fast=False)


def _usage_apply(
    cursor: Any,
    result: IngestResult,
    params: dict[str, Any],
    refused: list[RecordError],
    *,
    fast: bool,
) -> None:
    """Validate the staged rows, insert the valid ones, collect the refused ones: one pass.

    Optimistically first: a plain insert (as fast as COPY), in a savepoint. Only
    when it meets a duplicate (a record already stored, or twice in the batch) is
    it rolled back to the savepoint and done again with ``ON CONFLICT DO
    NOTHING``, whose speculative insertion costs about a third more per row; the
    rows it skips are the duplicates. Concurrent batches with the same external
    ids end up on that path too, never failing.
    """
    cursor.execute(f"SELECT count(*) FROM {STAGE}")
    staged = cursor.fetchone()[0]
    cursor.execute(f"ANALYZE {STAGE}")  # real row counts for the validation joins
    load = params.get("load") is not None
    try:
        with transaction.atomic():
            cursor.execute(_usage_apply_sql(fast=fast, on_conflict=False, load=load), params)
            rows = cursor.fetchall()
    except IntegrityError as exc:
        if _constraint_name(exc) != "invoicing_usagerecord_unique_external_id":
            raise
        cursor.execute(_usage_apply_sql(fast=fast, on_conflict=True), params)
        rows = cursor.fetchall()
    inserted, valid = rows[0][2], rows[0][3]
    result.received = result.received or staged + len(refused)
    result.accepted = inserted
    result.duplicates = valid - inserted
    result.errors = sorted(
        [*refused, *(_error(idx, code) for idx, code, *_ in rows[1:])],
        key=lambda error: error.index,
    )


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", "") or ""


def usage_ingest_records(
    *,
    records: Sequence[Any],
    source: str = "api",
    brand_ids: Iterable[int] | None = None,
    max_records: int | None = MAX_API_RECORDS,
) -> IngestResult:
    """Ingest an API batch of usage records: the valid ones are kept, the others reported.

    ``brand_ids`` limits the batch to a partner's brands (``None``: no limit).
    """
    if max_records is not None and len(records) > max_records:
        raise TooManyRecords(f"At most {max_records} records per request.", limit=max_records)
    result = IngestResult(received=len(records))
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        _usage_batch(
            cursor,
            result,
            _scope_params(brand_ids, source),
            lambda typed: _stage_records(cursor, USAGE, records),
        )
    return result


def usage_ingest_file(
    *,
    stream: IO[bytes],
    source: str = "file",
    brand_ids: Iterable[int] | None = None,
    load: tuple[int, int] | None = None,
) -> IngestResult:
    """Ingest a CSV file of usage records (header: account, service, quantity, occurred_at,
    external_id[, source]). Error indexes are data row numbers (1-based).

    ``load=(load_id, part)``: one part of a parallel ingest. Its valid rows go to the
    load table instead (``accepted`` counts them; duplicates are only known when the
    load is published, see ``invoicing.ingest_parallel``).
    """
    result = IngestResult()
    start = stream.tell() if stream.seekable() else None

    def stage(typed: bool) -> list[RecordError]:
        if start is not None:
            stream.seek(start)
        _stage_file(cursor, USAGE, stream, typed=typed)
        return []

    params = _scope_params(brand_ids, source)
    if load is not None:
        params["load"], params["part"] = load
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        _usage_batch(cursor, result, params, stage, fast=start is not None)
    return result


# --------------------------------------------------------------------------- meter readings


@dataclass(slots=True)
class _Reading:
    idx: int
    account_id: int
    service_id: int
    reading: Decimal
    taken_at: datetime
    external_id: str
    serial: str
    source: str
    meter_id: int | None = None
    consumption: Decimal = Decimal(0)


def meter_readings_ingest_records(
    *,
    records: Sequence[Any],
    source: str = "api",
    brand_ids: Iterable[int] | None = None,
    max_records: int | None = MAX_API_RECORDS,
) -> IngestResult:
    """Ingest an API batch of cumulative meter readings (see the module docstring)."""
    if max_records is not None and len(records) > max_records:
        raise TooManyRecords(f"At most {max_records} records per request.", limit=max_records)
    result = IngestResult(received=len(records))
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        _create_stage(cursor, typed=False)
        result.errors.extend(_stage_records(cursor, READINGS, records))
        _readings_apply(cursor, result, _scope_params(brand_ids, source))
    return result


def meter_readings_ingest_file(
    *, stream: IO[bytes], source: str = "file", brand_ids: Iterable[int] | None = None
) -> IngestResult:
    """Ingest a CSV file of readings (header: account, service, reading, taken_at,
    external_id[, meter, source])."""
    result = IngestResult()
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        _create_stage(cursor, typed=False)
        _stage_file(cursor, READINGS, stream)
        cursor.execute(f"SELECT count(*) FROM {STAGE}")
        result.received = cursor.fetchone()[0]
        _readings_apply(cursor, result, _scope_params(brand_ids, source))
    return result


def _readings_apply(cursor: Any, result: IngestResult, params: dict[str, Any]) -> None:
    cursor.execute(_READINGS_CHECK_SQL, params)
    candidates: list[_Reading] = []
    for (
        idx,
        error,
        account_id,
        service_id,
        value,
        moment,
        external_id,
        serial,
        src,
    ) in cursor.fetchall():
        if error is not None:
            result.errors.append(_error(idx, error))
        else:
            candidates.append(
                _Reading(idx, account_id, service_id, value, moment, external_id, serial, src)
            )
    checked = list(result.errors)
    for attempt in range(1, DUPLICATE_ATTEMPTS + 1):
        # A parallel batch may store one of these external ids after the duplicate check
        # (on another meter, so the meter locks do not order the two): the insert then
        # meets the unique constraint, having waited for that batch to commit. Roll back
        # to the savepoint and place the batch again: the stored reading is a duplicate now.
        result.errors, result.duplicates, result.accepted = list(checked), 0, 0
        try:
            with transaction.atomic():
                fresh = _drop_duplicates(cursor, candidates, result)
                if fresh:
                    accepted, updates = _place_on_meters(cursor, fresh, result)
                    _write_readings(cursor, accepted, updates)
                    result.accepted = len(accepted)
            break
        except IntegrityError as exc:
            if _constraint_name(exc) != "invoicing_meterreading_unique_external_id":
                raise
            if attempt == DUPLICATE_ATTEMPTS:
                raise IngestConflict(
                    "Parallel batches keep storing the same readings; send this batch again."
                ) from None
    result.errors.sort(key=lambda error: error.index)


def _drop_duplicates(
    cursor: Any, candidates: list[_Reading], result: IngestResult
) -> list[_Reading]:
    if not candidates:
        return []
    cursor.execute(
        """
        SELECT r.service_id, r.external_id FROM invoicing_meterreading r
        JOIN unnest(%s::bigint[], %s::text[]) AS k(service_id, external_id)
          ON r.service_id = k.service_id AND r.external_id = k.external_id
        """,
        [[c.service_id for c in candidates], [c.external_id for c in candidates]],
    )
    seen = set(cursor.fetchall())
    fresh = []
    for candidate in candidates:
        key = (candidate.service_id, candidate.external_id)
        if key in seen:
            result.duplicates += 1
        else:
            seen.add(key)
            fresh.append(candidate)
    return fresh


@dataclass(slots=True)
class _Meter:
    id: int
    account_id: int
    service_id: int
    serial: str
    digits: int | None
    installed_at: datetime
    removed_at: datetime | None


def _lock_meters(cursor: Any, readings: list[_Reading]) -> dict[tuple[int, int], list[_Meter]]:
    """Lock the meters of every (account, service) in the batch, creating missing ones."""
    series = sorted({(r.account_id, r.service_id) for r in readings})
    first_at: dict[tuple[int, int], datetime] = {}
    serial_of: dict[tuple[int, int], str] = {}
    for reading in readings:
        key = (reading.account_id, reading.service_id)
        if key not in first_at or reading.taken_at < first_at[key]:
            first_at[key] = reading.taken_at
            serial_of[key] = reading.serial
    accounts = [key[0] for key in series]
    services = [key[1] for key in series]
    cursor.execute(
        """
        INSERT INTO invoicing_meter (account_id, service_id, serial, installed_at, created_at)
        SELECT k.account_id, k.service_id, k.serial, k.installed_at, now()
        FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[])
             AS k(account_id, service_id, serial, installed_at)
        WHERE NOT EXISTS (SELECT 1 FROM invoicing_meter m
                          WHERE m.account_id = k.account_id AND m.service_id = k.service_id)
        ON CONFLICT (account_id, service_id) WHERE removed_at IS NULL DO NOTHING
        """,
        [accounts, services, [serial_of[k] for k in series], [first_at[k] for k in series]],
    )
    cursor.execute(
        """
        SELECT m.id, m.account_id, m.service_id, m.serial, m.digits, m.installed_at, m.removed_at
        FROM invoicing_meter m
        JOIN unnest(%s::bigint[], %s::bigint[]) AS k(account_id, service_id)
          ON m.account_id = k.account_id AND m.service_id = k.service_id
        ORDER BY m.id
        FOR UPDATE OF m
        """,
        [accounts, services],
    )
    meters: dict[tuple[int, int], list[_Meter]] = defaultdict(list)
    for row in cursor.fetchall():
        meter = _Meter(*row)
        meters[(meter.account_id, meter.service_id)].append(meter)
    return meters


def _meter_at(meters: list[_Meter], reading: _Reading) -> _Meter | None:
    fitting = [
        m
        for m in meters
        if m.installed_at <= reading.taken_at
        and (m.removed_at is None or reading.taken_at <= m.removed_at)
        and (not reading.serial or m.serial == reading.serial)
    ]
    # At the moment of a replacement both fit; a new reading belongs to the new meter.
    return max(fitting, key=lambda m: m.installed_at, default=None)


def _place_on_meters(
    cursor: Any, readings: list[_Reading], result: IngestResult
) -> tuple[list[_Reading], list[tuple[int, Decimal]]]:
    """Give each reading its meter and consumption; refuse the ones that go backwards.

    Returns the accepted readings and ``(reading id, consumption)`` updates for
    stored readings whose predecessor changed.
    """
    meters_by_series = _lock_meters(cursor, readings)
    # Again under the meter locks: a parallel batch for the same meter has committed by
    # now, and its readings are duplicates here, not readings going backwards.
    readings = _drop_duplicates(cursor, readings, result)
    by_meter: dict[int, list[_Reading]] = defaultdict(list)
    meter_info: dict[int, _Meter] = {}
    for reading in readings:
        meter = _meter_at(
            meters_by_series.get((reading.account_id, reading.service_id), []), reading
        )
        if meter is None:
            result.errors.append(_error(reading.idx, "no_meter"))
            continue
        reading.meter_id = meter.id
        by_meter[meter.id].append(reading)
        meter_info[meter.id] = meter
    if not by_meter:
        return [], []
    meter_ids = sorted(by_meter)
    cursor.execute(
        """
        SELECT r.id, r.meter_id, r.reading, r.taken_at, r.consumption
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS m(meter_id, since)
        JOIN invoicing_meterreading r ON r.meter_id = m.meter_id
        WHERE r.taken_at >= COALESCE(
            (SELECT max(p.taken_at) FROM invoicing_meterreading p
             WHERE p.meter_id = m.meter_id AND p.taken_at < m.since),
            '-infinity')
        ORDER BY r.meter_id, r.taken_at, r.id
        """,
        [meter_ids, [min(r.taken_at for r in by_meter[m]) for m in meter_ids]],
    )
    stored: dict[int, list[tuple[int, Decimal, datetime, Decimal]]] = defaultdict(list)
    for reading_id, meter_id, value, taken_at, consumption in cursor.fetchall():
        stored[meter_id].append((reading_id, value, taken_at, consumption))
    accepted: list[_Reading] = []
    updates: list[tuple[int, Decimal]] = []
    for meter_id in meter_ids:
        digits = meter_info[meter_id].digits
        # Stored readings first at equal times; new ones in input order.
        events: list[tuple[datetime, int, int, Any]] = [
            (taken_at, 0, reading_id, (reading_id, value, consumption))
            for reading_id, value, taken_at, consumption in stored[meter_id]
        ]
        events += [(r.taken_at, 1, r.idx, r) for r in by_meter[meter_id]]
        events.sort(key=lambda event: event[:3])
        next_stored: list[Decimal | None] = [None] * len(events)
        upcoming: Decimal | None = None
        for position in range(len(events) - 1, -1, -1):
            next_stored[position] = upcoming
            if events[position][1] == 0:
                upcoming = events[position][3][1]
        last: Decimal | None = None
        changed = False
        for position, (_taken_at, is_new, _order, payload) in enumerate(events):
            if not is_new:
                reading_id, value, consumption = payload
                if changed and last is not None:
                    step = reading_step(last, value, digits)
                    if step is not None and step != consumption:
                        updates.append((reading_id, step))
                last, changed = value, False
                continue
            reading: _Reading = payload
            step = Decimal(0) if last is None else reading_step(last, reading.reading, digits)
            if step is None:
                result.errors.append(_error(reading.idx, "reading_backwards"))
                continue
            following = next_stored[position]
            if following is not None and reading_step(reading.reading, following, digits) is None:
                result.errors.append(_error(reading.idx, "reading_backwards_next"))
                continue
            reading.consumption = step
            accepted.append(reading)
            last, changed = reading.reading, True
    return accepted, updates


def _write_readings(
    cursor: Any, accepted: list[_Reading], updates: list[tuple[int, Decimal]]
) -> None:
    if accepted:
        cursor.execute(
            """
            INSERT INTO invoicing_meterreading
                (meter_id, account_id, service_id, reading, taken_at, consumption, external_id,
                 source)
            SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[],
                                 %s::timestamptz[], %s::numeric[], %s::text[], %s::text[])
            """,
            [
                [r.meter_id for r in accepted],
                [r.account_id for r in accepted],
                [r.service_id for r in accepted],
                [r.reading for r in accepted],
                [r.taken_at for r in accepted],
                [r.consumption for r in accepted],
                [r.external_id for r in accepted],
                [r.source for r in accepted],
            ],
        )
    if updates:
        cursor.execute(
            """
            UPDATE invoicing_meterreading r SET consumption = u.consumption
            FROM unnest(%s::bigint[], %s::numeric[]) AS u(id, consumption)
            WHERE r.id = u.id
            """,
            [[u[0] for u in updates], [u[1] for u in updates]],
        )
