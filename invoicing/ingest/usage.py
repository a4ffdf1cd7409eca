"""Usage records: stage, validate and insert a batch in one pass (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import IO, Any

from django.db import IntegrityError, connection, transaction

from invoicing.exceptions import TooManyRecords
from invoicing.ingest.direct import usage_direct_file
from invoicing.ingest.staging import (
    MAX_API_RECORDS,
    STAGE,
    UNREADABLE,
    USAGE,
    IngestResult,
    RecordError,
    _begin,
    _constraint_name,
    _create_stage,
    _error,
    _scope_params,
    _stage_file,
    _stage_records,
    _usage_apply_sql,
)


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
    direct: bool = True,
) -> IngestResult:
    """Ingest a CSV file of usage records (header: account, service, quantity, occurred_at,
    external_id[, source]). Error indexes are data row numbers (1-based).

    A seekable file is first COPYed straight into the table (``invoicing.ingest.direct``),
    and staged only when that path cannot take it whole (``direct=False``: staged at once).
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
        if direct and load is None and start is not None:
            copied = usage_direct_file(cursor, stream, params)
            if copied is not None:
                return copied
        _usage_batch(cursor, result, params, stage, fast=start is not None)
    return result


def usage_ingest_file_direct(
    *, stream: IO[bytes], source: str = "file", brand_ids: Iterable[int] | None = None
) -> IngestResult | None:
    """The file COPYed straight into the table in a transaction of its own, if it is clean
    (see ``invoicing.ingest.direct``); None, with nothing stored, when it must be staged."""
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        return usage_direct_file(cursor, stream, _scope_params(brand_ids, source))
