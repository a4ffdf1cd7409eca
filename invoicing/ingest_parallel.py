"""Parallel ingest of one large usage CSV file: the file split at line boundaries, one
PostgreSQL session per part, published by one transaction.

Each part goes through ``usage_ingest_file`` (COPY into staging, one validating
``INSERT ... SELECT``) in its own thread and database connection: the work happens in
PostgreSQL, so the parts really run on separate cores. A part does not store its valid
rows in ``invoicing_usagerecord``: it writes them to the load table
(``invoicing_usageload``, unlogged) under the file's load id and commits. When every
part has succeeded, ONE transaction moves the whole load into ``invoicing_usagerecord``
(``ON CONFLICT DO NOTHING`` only when a duplicate shows up, the first row of the file
winning) and the counts come from it: ``accepted`` what it inserted, ``duplicates`` the
rest, per-record errors from the parts (data row numbers of the whole file). So the
file is stored whole or not at all, whatever dies when: a part that fails (or a
coordinator that dies) leaves only unpublished rows in the load table, which are
deleted (at once, or by the next parallel ingest once a day old), and a rerun stores
the file once. An external id repeated across parts is a duplicate like any other.
A part that finds the file malformed makes one session redo it (nothing was published),
so that the refusal names the line in the whole file.
PREPARE TRANSACTION would have let the parts insert in parallel too, but it needs
``max_prepared_transactions`` (0 by default) and a durable coordinator log.

Files with quoted fields (a newline might hide in a quote) and small files are
ingested by one session, in one transaction. Before any of this, a clean file (every
row valid and new, the common case) is COPYed straight into ``invoicing_usagerecord``
by one session (``invoicing.ingest.direct``): no staging, no load table.
"""

from __future__ import annotations

import io
import itertools
import mmap
import threading
from pathlib import Path

from django.db import IntegrityError, connection, transaction

from invoicing.exceptions import MalformedFile
from invoicing.ingest.staging import (
    LOAD_TABLE,
    IngestResult,
    RecordError,
    _begin,
    _constraint_name,
)
from invoicing.ingest.usage import usage_ingest_file, usage_ingest_file_direct

# Below this much data one session is as fast as several.
PARALLEL_MIN_BYTES = 4 << 20
# Loads left behind by a coordinator that died are deleted after this long.
STALE_LOAD = "1 day"


class _Segment(io.RawIOBase):
    """The header line followed by bytes [start, end) of a file: a CSV file of its own."""

    def __init__(self, path: Path, header: bytes, start: int, end: int) -> None:
        self._file = path.open("rb")
        self._header = header
        self._start = start
        self._end = end
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute positions")
        self._pos = pos
        return pos

    def readinto(self, buffer) -> int:  # type: ignore[override]
        wanted = len(buffer)
        if self._pos < len(self._header):
            chunk = self._header[self._pos : self._pos + wanted]
        else:
            offset = self._start + self._pos - len(self._header)
            self._file.seek(offset)
            chunk = self._file.read(max(0, min(wanted, self._end - offset)))
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def close(self) -> None:
        self._file.close()
        super().close()


def _plan(path: Path, workers: int) -> tuple[bytes, list[tuple[int, int, int]]] | None:
    """The header and [(start, end, rows before)] per part, or None to use one session."""
    with path.open("rb") as stream:
        header = stream.readline()
        data_start = stream.tell()
        size = path.stat().st_size
        if workers < 2 or size - data_start < PARALLEL_MIN_BYTES:
            return None
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data.find(b'"', data_start) != -1:
                return None
            cuts = [data_start]
            for part in range(1, workers):
                newline = data.find(b"\n", data_start + part * (size - data_start) // workers)
                if newline == -1 or newline + 1 <= cuts[-1]:
                    break
                cuts.append(newline + 1)
            cuts.append(size)
            parts, rows_before = [], 0
            for start, end in itertools.pairwise(cuts):
                if end > start:
                    parts.append((start, end, rows_before))
                    rows_before += data[start:end].count(b"\n")
    return (header, parts) if len(parts) > 1 else None


def usage_ingest_path(
    *, path: Path, workers: int = 2, source: str = "file", brand_ids=None
) -> IngestResult:
    """Ingest a usage CSV file, in ``workers`` parallel sessions when it is large enough."""
    # A clean file is COPYed straight into the table by one session, faster than the
    # parts and their publication (``invoicing.ingest.direct``); any other is staged.
    with path.open("rb") as stream:
        result = usage_ingest_file_direct(stream=stream, source=source, brand_ids=brand_ids)
    if result is not None:
        return result
    plan = _plan(path, workers)
    if plan is not None:
        result = _ingest_parts(path, *plan, source=source, brand_ids=brand_ids)
        if result is not None:
            return result
    with path.open("rb") as stream:
        return usage_ingest_file(stream=stream, source=source, brand_ids=brand_ids, direct=False)


_PUBLISH_SQL = f"""
INSERT INTO invoicing_usagerecord (account_id, service_id, quantity, occurred_at, external_id,
                                   source)
SELECT account_id, service_id, quantity, occurred_at, external_id, source
FROM {LOAD_TABLE} WHERE load_id = %s
"""
# Only after a duplicate showed up: the first row of the file wins, as in one session.
_PUBLISH_SKIPPING_DUPLICATES_SQL = (
    _PUBLISH_SQL + " ORDER BY part, idx ON CONFLICT (service_id, external_id) DO NOTHING"
)


def _new_load() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {LOAD_TABLE} WHERE staged_at < now() - %s::interval", [STALE_LOAD]
        )
        cursor.execute("SELECT nextval('invoicing_usageload_id_seq')")
        return cursor.fetchone()[0]


def _publish(load_id: int) -> int:
    """Move the load into ``invoicing_usagerecord`` in one transaction; how many rows."""
    with transaction.atomic(), connection.cursor() as cursor:
        _begin(cursor)
        try:
            with transaction.atomic():
                cursor.execute(_PUBLISH_SQL, [load_id])
        except IntegrityError as exc:
            if _constraint_name(exc) != "invoicing_usagerecord_unique_external_id":
                raise
            cursor.execute(_PUBLISH_SKIPPING_DUPLICATES_SQL, [load_id])
        inserted = cursor.rowcount
        cursor.execute(f"DELETE FROM {LOAD_TABLE} WHERE load_id = %s", [load_id])
    return inserted


def _discard(load_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {LOAD_TABLE} WHERE load_id = %s", [load_id])


def _ingest_parts(path, header, parts, *, source, brand_ids) -> IngestResult | None:
    """Every part into the load table in parallel, then the load published at once;
    None when a part found the file malformed (one session redoes it to name the line)."""
    load_id = _new_load()
    results: list[IngestResult | None] = [None] * len(parts)
    failures: list[BaseException] = []

    def run(number: int, start: int, end: int) -> None:
        stream = io.BufferedReader(_Segment(path, header, start, end), 1 << 20)
        try:
            results[number] = usage_ingest_file(
                stream=stream, source=source, brand_ids=brand_ids, load=(load_id, number)
            )
        except BaseException as exc:  # reported to the caller below
            failures.append(exc)
        finally:
            stream.close()
            connection.close()

    threads = [
        threading.Thread(target=run, args=(number, start, end), daemon=True)
        for number, (start, end, _) in enumerate(parts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if failures:
            raise failures[0]
        inserted = _publish(load_id)
    except MalformedFile:
        # A part's refusal of the file names a line of the part: one session redoes the
        # file (nothing was published) and names the line in the whole file.
        _discard(load_id)
        return None
    except BaseException:
        _discard(load_id)
        raise
    total = IngestResult()
    for (_, _, rows_before), part in zip(parts, results, strict=True):
        total.received += part.received
        total.accepted += part.accepted  # staged: valid rows
        total.errors += [
            RecordError(error.index + rows_before, error.code, error.message)
            for error in part.errors
        ]
    total.duplicates = total.accepted - inserted
    total.accepted = inserted
    return total
