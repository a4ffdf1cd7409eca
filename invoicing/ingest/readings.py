"""Meter readings: placed per meter in time order under the meters' locks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from django.db import IntegrityError, connection, transaction

from core.db import bound_cursor
from invoicing.exceptions import IngestConflict, TooManyRecords
from invoicing.ingest.staging import (
    _READINGS_CHECK_SQL,
    DUPLICATE_ATTEMPTS,
    MAX_API_RECORDS,
    READINGS,
    STAGE,
    IngestResult,
    _begin,
    _constraint_name,
    _create_stage,
    _error,
    _scope_params,
    _stage_file,
    _stage_records,
)
from invoicing.meters import reading_step


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


# Readings placed per batch: a batch holds whole series (every reading of an account and
# service in the file), at least this many readings unless the file ends.
READINGS_BATCH = 20_000
_STREAM = "invoicing_readings_stream"
_FETCH = 5_000
# A batch's lookups go key by key through the tables' indexes: a correlated subquery
# behind OFFSET 0, which the planner can neither flatten into a join nor hash. Joined to
# the batch's arrays, and planned from statistics that lag far behind a month-end file
# (the tables were nearly empty at the last ANALYZE), they read every meter and every
# reading stored so far, batch after batch: a file's cost grew with the square of its
# size (3,000,000 readings took 332 s; 200,000 took 10.4 s). The meters' lock does the
# same with a FOR UPDATE subquery, which is never flattened either.
_BY_KEY = "OFFSET 0"


def _readings_apply(cursor: Any, result: IngestResult, params: dict[str, Any]) -> None:
    """Check every staged reading in one statement and place the valid ones on their
    meters batch by batch, streaming the rows from a server cursor: the process holds
    one batch (``READINGS_BATCH``), not the file. Batches follow the series' (account,
    service) order, and so do the meter locks (``_lock_meters``): two files never wait
    for each other in opposite orders."""
    cursor.execute(f"DECLARE {_STREAM} NO SCROLL CURSOR FOR {_READINGS_CHECK_SQL}", params)
    batch: list[_Reading] = []
    while True:
        cursor.execute(f"FETCH FORWARD {_FETCH} FROM {_STREAM}")
        rows = cursor.fetchall()
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
            repeated,
        ) in rows:
            if error is not None:
                result.errors.append(_error(idx, error))
                continue
            if repeated:  # the file's first reading with this external id is placed
                result.duplicates += 1
                continue
            if len(batch) >= READINGS_BATCH and (account_id, service_id) != (
                batch[-1].account_id,
                batch[-1].service_id,
            ):
                _place_batch(batch, result)
                batch = []
            batch.append(
                _Reading(idx, account_id, service_id, value, moment, external_id, serial, src)
            )
        if len(rows) < _FETCH:
            break
    cursor.execute(f"CLOSE {_STREAM}")
    if batch:
        _place_batch(batch, result)
    result.errors.sort(key=lambda error: error.index)


def _place_batch(candidates: list[_Reading], result: IngestResult) -> None:
    """Place one batch of valid readings (whole series) on their meters and store them."""
    for attempt in range(1, DUPLICATE_ATTEMPTS + 1):
        # A parallel batch may store one of these external ids after the duplicate check
        # (on another meter, so the meter locks do not order the two): the insert then
        # meets the unique constraint, having waited for that batch to commit. Roll back
        # to the savepoint and place the batch again: the stored reading is a duplicate now.
        outcome = IngestResult()
        try:
            # The batch's arrays bound server-side, not quoted into the statements.
            with transaction.atomic(), bound_cursor() as bound:
                fresh = _drop_duplicates(bound, candidates, outcome)
                if fresh:
                    accepted, updates = _place_on_meters(bound, fresh, outcome)
                    _write_readings(bound, accepted, updates)
                    outcome.accepted = len(accepted)
            break
        except IntegrityError as exc:
            if _constraint_name(exc) != "invoicing_meterreading_unique_external_id":
                raise
            if attempt == DUPLICATE_ATTEMPTS:
                raise IngestConflict(
                    "Parallel batches keep storing the same readings; send this batch again."
                ) from None
    result.errors.extend(outcome.errors)
    result.duplicates += outcome.duplicates
    result.accepted += outcome.accepted


def _drop_duplicates(
    cursor: Any, candidates: list[_Reading], result: IngestResult
) -> list[_Reading]:
    if not candidates:
        return []
    cursor.execute(
        f"""
        SELECT k.service_id, k.external_id
        FROM unnest(%s::bigint[], %s::text[]) AS k(service_id, external_id)
        WHERE EXISTS (
            SELECT 1 FROM invoicing_meterreading r
            WHERE r.service_id = k.service_id AND r.external_id = k.external_id
            {_BY_KEY}
        )
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
    """Lock the meters of every (account, service) in the batch, creating missing ones.

    In (account, service, id) order (the batch's series sorted, each series' meters by
    id): a file's batches come in series order, so every ingest takes its meter locks in
    one global order (no deadlock between two files)."""
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
        f"""
        INSERT INTO invoicing_meter (account_id, service_id, serial, installed_at, created_at)
        SELECT k.account_id, k.service_id, k.serial, k.installed_at, now()
        FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[])
             AS k(account_id, service_id, serial, installed_at)
        WHERE NOT EXISTS (SELECT 1 FROM invoicing_meter m
                          WHERE m.account_id = k.account_id AND m.service_id = k.service_id
                          {_BY_KEY})
        ON CONFLICT (account_id, service_id) WHERE removed_at IS NULL DO NOTHING
        """,
        [accounts, services, [serial_of[k] for k in series], [first_at[k] for k in series]],
    )
    cursor.execute(
        """
        SELECT m.id, m.account_id, m.service_id, m.serial, m.digits, m.installed_at, m.removed_at
        FROM unnest(%s::bigint[], %s::bigint[]) AS k(account_id, service_id)
        CROSS JOIN LATERAL (
            SELECT * FROM invoicing_meter m
            WHERE m.account_id = k.account_id AND m.service_id = k.service_id
            ORDER BY m.id
            FOR UPDATE
        ) m
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
        f"""
        SELECT r.id, r.meter_id, r.reading, r.taken_at, r.consumption
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS m(meter_id, since)
        CROSS JOIN LATERAL (
            SELECT * FROM invoicing_meterreading r
            WHERE r.meter_id = m.meter_id
              AND r.taken_at >= COALESCE(
                  (SELECT max(p.taken_at) FROM invoicing_meterreading p
                   WHERE p.meter_id = m.meter_id AND p.taken_at < m.since),
                  '-infinity')
            {_BY_KEY}
        ) r
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
