"""Parallel ingest of one large usage CSV file: the file split at line boundaries, one
PostgreSQL session per part, committed together.

Each part goes through ``usage_ingest_file`` (COPY into staging, one validating
``INSERT ... SELECT``) in its own thread and database connection: the work happens in
PostgreSQL, so the parts really run on separate cores. The parts' transactions wait
for each other before committing, and all roll back if any part fails, so a file is
still stored whole or not at all (only a crash in the instant between the parts'
commits could leave part of it, and a rerun completes it: stored records come back as
duplicates).

Two parts carrying the same external id would make one wait for the other's commit,
which waits for it at the barrier: the wait times out, everything rolls back, and the
file is ingested again by one session. A database deadlock between parts ends the same
way. Files with quoted fields (a newline might hide in a quote) and small files are
ingested by one session from the start.
"""

from __future__ import annotations

import io
import itertools
import mmap
import threading
import time
from pathlib import Path

from django.db import OperationalError, connection, transaction

from invoicing.exceptions import MalformedFile
from invoicing.ingest import IngestResult, RecordError, usage_ingest_file

# Below this much data one session is as fast as several.
PARALLEL_MIN_BYTES = 4 << 20
# The shortest wait at the commit barrier for the other parts (seconds).
MIN_PATIENCE = 10.0


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


class _Abandoned(Exception):
    """Another part failed or the parts could not meet: roll this one back."""


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
    plan = _plan(path, workers)
    if plan is not None:
        result = _ingest_parts(path, *plan, source=source, brand_ids=brand_ids)
        if result is not None:
            return result
    with path.open("rb") as stream:
        return usage_ingest_file(stream=stream, source=source, brand_ids=brand_ids)


def _ingest_parts(path, header, parts, *, source, brand_ids) -> IngestResult | None:
    """All parts in parallel, committed together; None when they should be redone by one."""
    barrier = threading.Barrier(len(parts))
    results: list[IngestResult | None] = [None] * len(parts)
    failures: list[BaseException] = []
    first_arrival: list[float] = []
    started = time.monotonic()

    def run(number: int, start: int, end: int) -> None:
        stream = io.BufferedReader(_Segment(path, header, start, end), 1 << 20)
        try:
            with transaction.atomic():
                results[number] = usage_ingest_file(
                    stream=stream, source=source, brand_ids=brand_ids
                )
                if not first_arrival:
                    first_arrival.append(time.monotonic())
                # Wait as long again as the first part took before giving up on a
                # part that is stuck behind another's uncommitted external id.
                patience = max(MIN_PATIENCE, 2 * (first_arrival[0] - started))
                try:
                    barrier.wait(timeout=patience)
                except threading.BrokenBarrierError:
                    raise _Abandoned from None
        except BaseException as exc:  # reported to the caller below
            failures.append(exc)
            barrier.abort()
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
    # A part's refusal of the file names a line of the part: one session redoes the file
    # and names the line in the whole file.
    redo = _Abandoned | OperationalError | MalformedFile
    real = [exc for exc in failures if not isinstance(exc, redo)]
    if real:
        raise real[0]
    if failures:
        return None  # stuck on a shared external id or a deadlock: one session redoes it
    total = IngestResult()
    for (_, _, rows_before), part in zip(parts, results, strict=True):
        total.received += part.received
        total.accepted += part.accepted
        total.duplicates += part.duplicates
        total.errors += [
            RecordError(error.index + rows_before, error.code, error.message)
            for error in part.errors
        ]
    return total
