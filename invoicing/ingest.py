"""Bulk ingest of usage records and meter readings through PostgreSQL COPY.

A batch (a CSV file, or the records of one API request) is one database
transaction: either every valid record of it is stored, or nothing is.

1. ``COPY`` streams the batch into a temporary staging table of *text*
   columns (so one bad value cannot abort the copy), numbered in input order.
2. One statement validates every row in SQL (account and service exist, the
   account is a client account linked to the service's brand and in the
   caller's brand scope, quantity / reading is a non-negative decimal with at
   most six places, the timestamp is a real ISO 8601 moment, not in the
   future, an external id is present) and, for usage, inserts the valid rows
   with ``INSERT ... SELECT ... ON CONFLICT (service, external_id) DO
   NOTHING``; the rows it did not insert are the duplicates (within the batch
   or already stored). Invalid rows come back as ``{index, code, message}``.
3. Meter readings need their neighbours: the valid rows are checked in Python
   per meter, in time order, against the previous and next stored readings
   (``reading_backwards`` unless it is a plausible rollover), each reading's
   ``consumption`` is computed, and a late reading landing between two others
   updates the next one's consumption. The meters are locked (in id order)
   for that, so two batches for one meter queue rather than race. An
   account/service with no meter yet gets one, installed at its first reading.

Timestamps without an offset are read in the business time zone.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from invoicing.exceptions import MalformedFile, TooManyRecords
from invoicing.meters import reading_step

STAGE = "invoicing_stage"
MAX_API_RECORDS = 10_000

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

# The shape of an ISO 8601 moment; the ranges (month, day of month, hour, ...) are then
# checked arithmetically on fixed positions, which is cheaper than spelling them out here.
_TS_SHAPE = (
    r"'^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?$'"
)
# A real moment (no 30 February, no 25 o'clock): all on digits the shape guarantees.
_TS_RANGES = """
    substr(moment, 6, 2) BETWEEN '01' AND '12'
    AND substr(moment, 9, 2) >= '01'
    AND substr(moment, 9, 2)::int <= CASE substr(moment, 6, 2)
        WHEN '02' THEN CASE WHEN mod(substr(moment, 1, 4)::int, 4) = 0
                             AND (mod(substr(moment, 1, 4)::int, 100) <> 0
                                  OR mod(substr(moment, 1, 4)::int, 400) = 0)
                       THEN 29 ELSE 28 END
        WHEN '04' THEN 30 WHEN '06' THEN 30 WHEN '09' THEN 30 WHEN '11' THEN 30
        ELSE 31 END
    AND substr(moment, 12, 2) <= '23' AND substr(moment, 15, 2) <= '59'
    AND (length(moment) < 19 OR substr(moment, 17, 1) <> ':' OR substr(moment, 18, 2) <= '59')
    AND substr(moment, 1, 4) >= '1900'
"""
# An offset is present when the part after the minutes has a sign or a Z.
_HAS_OFFSET = (
    "(strpos(substr(moment, 17), '+') > 0 OR strpos(substr(moment, 17), '-') > 0"
    " OR right(moment, 1) IN ('Z', 'z'))"
)
# Digits only (ltrim of every digit leaves nothing): cheaper than a regular expression.
_ID_OK = "(ltrim({0}, '0123456789') = '' AND length({0}) BETWEEN 1 AND 18)"
# digits[.digits]: 1-14 digits before the point, 1-6 after.
_DECIMAL_OK = """(
    ltrim(value, '0123456789.') = '' AND length(value) > 0
    AND CASE WHEN strpos(value, '.') = 0 THEN length(value) <= 14
             ELSE strpos(value, '.') BETWEEN 2 AND 15
                  AND length(value) - strpos(value, '.') BETWEEN 1 AND 6
                  AND strpos(substr(value, strpos(value, '.') + 1), '.') = 0 END
)"""


def _checked_sql(value_name: str) -> str:
    """Every staged row with its error code (NULL when valid), resolved ids and typed values.

    Layered so that each regular expression and cast runs once per row (``OFFSET 0``
    keeps PostgreSQL from inlining a layer and repeating its expressions); the casts
    only run on rows whose text passed the checks, so a bad value never aborts.
    """
    return f"""
    SELECT c.idx, c.error, c.account_id, c.service_id, c.external_id, c.meter, c.source,
           CASE WHEN c.error IS NULL THEN c.value::numeric END AS value,
           CASE WHEN c.error IS NULL THEN c.moment_tz END AS moment
    FROM (
        SELECT r.*, a.id AS account_id, sv.id AS service_id,
            CASE
                WHEN r.account_ref IS NULL THEN 'invalid_account'
                WHEN a.id IS NULL THEN 'unknown_account'
                WHEN r.service_ref IS NULL THEN 'invalid_service'
                WHEN sv.id IS NULL THEN 'unknown_service'
                WHEN ab.account_id IS NULL THEN %(not_linked)s
                WHEN a.status = 'closed' THEN 'account_closed'
                WHEN r.value_negative THEN 'negative_{value_name}'
                WHEN NOT r.value_ok THEN 'invalid_{value_name}'
                WHEN r.moment_tz IS NULL THEN 'invalid_timestamp'
                WHEN r.moment_tz > now() + interval '1 day' THEN 'future_timestamp'
                WHEN NOT r.external_ok THEN 'invalid_external_id'
            END AS error
        FROM (
            SELECT t.*,
                CASE WHEN t.moment_ok THEN
                    CASE WHEN {_HAS_OFFSET.replace("moment", "t.moment")}
                         THEN t.moment::timestamptz
                         ELSE t.moment::timestamp AT TIME ZONE %(tz)s END
                END AS moment_tz
            FROM (
                SELECT s.idx, s.value, s.moment, s.external_id, s.meter,
                    COALESCE(NULLIF(s.source, ''), %(source)s) AS source,
                    CASE WHEN {_ID_OK.format("s.account")} THEN s.account::bigint END
                        AS account_ref,
                    CASE WHEN {_ID_OK.format("s.service")} THEN s.service::bigint END
                        AS service_ref,
                    COALESCE(left(ltrim(s.value, ' '), 1) = '-', false) AS value_negative,
                    COALESCE({_DECIMAL_OK.replace("value", "s.value")}, false) AS value_ok,
                    COALESCE(CASE WHEN s.moment ~ {_TS_SHAPE} THEN
                                  {_TS_RANGES.replace("moment", "s.moment")} END,
                             false) AS moment_ok,
                    COALESCE(s.external_id <> '' AND length(s.external_id) <= 100, false)
                        AS external_ok
                FROM {STAGE} s
                OFFSET 0
            ) t
            OFFSET 0
        ) r
        LEFT JOIN accounts_account a ON a.id = r.account_ref AND a.kind = 'client'
        LEFT JOIN brands_service sv
          ON sv.id = r.service_ref
         AND (%(scope)s::bigint[] IS NULL OR sv.brand_id = ANY(%(scope)s::bigint[]))
        LEFT JOIN accounts_account_brands ab
          ON ab.account_id = a.id AND ab.brand_id = sv.brand_id
        OFFSET 0
    ) c
    """


# One pass: validate, insert the valid rows, return the refused ones (and the counts).
_USAGE_APPLY_SQL = f"""
WITH checked AS MATERIALIZED ({_checked_sql("quantity")}),
ins AS (
    INSERT INTO invoicing_usagerecord
        (account_id, service_id, quantity, occurred_at, external_id, source)
    SELECT account_id, service_id, value, moment, external_id, left(source, 100)
    FROM checked WHERE error IS NULL
    /*on_conflict*/
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
FROM ({_checked_sql("reading")}) c
ORDER BY idx
"""


def _begin(cursor: Any) -> None:
    # A big sort/materialise buffer keeps a million-row batch in memory, and JIT
    # compilation of the validation would cost more than it saves (until commit).
    cursor.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
        [getattr(settings, "INVOICING_INGEST_WORK_MEM", "512MB")],
    )
    # Inside an outer transaction (a test, a caller's atomic block) the table of an
    # earlier batch may still exist: ON COMMIT DROP only fires at the real commit.
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGE}")
    cursor.execute(
        f"""CREATE TEMP TABLE {STAGE} (
                idx bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 1),
                account text, service text, value text, moment text, external_id text,
                meter text, source text
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


def _stage_records(cursor: Any, kind: str, records: Sequence[Any], result: IngestResult) -> None:
    """COPY API records (dicts) into staging with their 0-based index."""
    mapping = FIELD_COLUMNS[kind]
    value_field = REQUIRED[kind][2]
    columns = ["idx", *dict.fromkeys(mapping.values())]
    inverse = {column: name for name, column in mapping.items()}
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
    with raw.copy(f"COPY {STAGE} ({', '.join(columns)}) FROM STDIN") as copy:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                result.errors.append(_error(index, "invalid_record"))
                continue
            if isinstance(record.get(value_field), float | bool):
                result.errors.append(_error(index, f"invalid_{value_field}"))
                continue
            row: list[Any] = [index]
            for column in columns[1:]:
                value = record.get(inverse[column])
                row.append(None if value is None else str(value))
            copy.write_row(row)


def _stage_file(cursor: Any, kind: str, stream: IO[bytes]) -> None:
    """COPY a CSV file with a header row into staging, streamed as it is (no parsing here)."""
    header_line = stream.readline().decode("utf-8-sig")
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
            while block := stream.read(1 << 20):
                copy.write(block)
    except psycopg.Error as exc:
        raise MalformedFile(
            f"The file is not valid CSV: {str(exc).strip()}", line_offset=1
        ) from None


# --------------------------------------------------------------------------- usage


def _usage_apply(cursor: Any, result: IngestResult, params: dict[str, Any]) -> None:
    """Validate the staged rows, insert the valid ones, collect the refused ones: one pass.

    Optimistically first: a plain insert (as fast as COPY), in a savepoint. Only
    when it meets a duplicate (a record already stored, or twice in the batch) is
    it rolled back to the savepoint and done again with ``ON CONFLICT DO
    NOTHING``, whose speculative insertion costs about a third more per row; the
    rows it skips are the duplicates. Concurrent batches with the same external
    ids end up on that path too, never failing.
    """
    cursor.execute(f"ANALYZE {STAGE}")  # real row counts for the validation joins
    try:
        with transaction.atomic():
            cursor.execute(_USAGE_APPLY_SQL, params)
            rows = cursor.fetchall()
    except IntegrityError as exc:
        if _constraint_name(exc) != "invoicing_usagerecord_unique_external_id":
            raise
        cursor.execute(
            _USAGE_APPLY_SQL.replace(
                "/*on_conflict*/", "ON CONFLICT (service_id, external_id) DO NOTHING"
            ),
            params,
        )
        rows = cursor.fetchall()
    inserted, valid = rows[0][2], rows[0][3]
    result.accepted = inserted
    result.duplicates = valid - inserted
    result.errors.extend(_error(idx, code) for idx, code, *_ in rows[1:])
    result.errors.sort(key=lambda error: error.index)


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
        _stage_records(cursor, USAGE, records, result)
        _usage_apply(cursor, result, _scope_params(brand_ids, source))
    return result


def usage_ingest_file(
    *, stream: IO[bytes], source: str = "file", brand_ids: Iterable[int] | None = None
) -> IngestResult:
    """Ingest a CSV file of usage records (header: account, service, quantity, occurred_at,
    external_id[, source]). Error indexes are data row numbers (1-based)."""
    result = IngestResult()
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        _stage_file(cursor, USAGE, stream)
        cursor.execute(f"SELECT count(*) FROM {STAGE}")
        result.received = cursor.fetchone()[0]
        _usage_apply(cursor, result, _scope_params(brand_ids, source))
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
        _stage_records(cursor, READINGS, records, result)
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
    fresh = _drop_duplicates(cursor, candidates, result)
    if fresh:
        accepted, updates = _place_on_meters(cursor, fresh, result)
        _write_readings(cursor, accepted, updates)
        result.accepted = len(accepted)
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
