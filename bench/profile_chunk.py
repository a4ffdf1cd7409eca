"""Profile invoice-run chunks in this process: where one chunk's time goes.

    .venv/bin/python bench/profile_chunk.py --accounts 20000 [--chunks 3] [--chunk-size 1000]
    .venv/bin/python bench/profile_chunk.py --run RUN_ID [--chunks 3]   # the next chunks

Builds bench/month_end.py's population (usage and readings through the real ingest
commands), starts an invoice run (issue mode) and plans it in this process (the queued
q2 tasks are deleted: no cluster runs), then does ``--chunks`` pending chunks one by one
with ``invoice_run_chunk_process`` under cProfile. Prints, per chunk, its wall seconds and
every SQL statement's time (Django's cursor and the ledger's hot cursor; COPY is timed
from the Python side by cProfile), then the cProfile top functions of all the chunks.
A later call with ``--run`` goes on with the same run's next pending chunks.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from invoice_run import _django  # noqa: E402


def build(accounts: int, chunk_size: int) -> int:
    from month_end import (
        PERIOD,
        MemorySampler,
        account_ids,
        run_command,
        write_readings,
        write_usage,
    )

    os.environ["INVOICING_PDF_ON_ISSUE"] = "1"
    from invoice_run import prepare

    population = prepare(accounts, PERIOD, usage_wanted=False, emails=True)
    _django()
    ids = account_ids(population["brand_id"])
    sampler = MemorySampler()
    with tempfile.TemporaryDirectory() as tmp:
        usage_csv, readings_csv = Path(tmp) / "usage.csv", Path(tmp) / "readings.csv"
        write_usage(usage_csv, ids, population["services"]["calls"], population["stamp"])
        write_readings(readings_csv, ids, population["services"]["water"], population["stamp"])
        run_command(sampler, "ingest_usage", ["ingest_usage", str(usage_csv)])
        run_command(sampler, "ingest_meter_readings", ["ingest_meter_readings", str(readings_csv)])
    from django_q.models import OrmQ

    from invoicing import services

    run = services.invoice_run_start(
        period=PERIOD, brand=population["brand_id"], chunk_size=chunk_size
    )
    services.invoice_run_plan(run_id=run.pk)
    OrmQ.objects.all().delete()
    return run.pk


class StatementTimer:
    """Wall seconds and the backend's CPU seconds per statement (``cpu``: a callable)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.cpu_of: dict[str, float] = defaultdict(float)
        self.cpu = lambda: 0.0

    def __call__(self, execute, sql, params, many, context):
        started, cpu_started = time.perf_counter(), self.cpu()
        try:
            return execute(sql, params, many, context)
        finally:
            key = re.sub(r"\s+", " ", str(sql)).strip()[:100]
            self.times[key].append(time.perf_counter() - started)
            self.cpu_of[key] += self.cpu() - cpu_started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--run", type=int)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--callees", help="print the callees of functions matching this")
    parser.add_argument("--dump", help="write the raw profile to this file")
    args = parser.parse_args()
    os.environ.setdefault("INVOICING_PDF_ON_ISSUE", "1")
    _django()
    if args.run is None:
        args.run = build(args.accounts, args.chunk_size)
    from django.db import connection
    from django_q.models import OrmQ

    from invoicing import services
    from invoicing.models import InvoiceRunChunk

    pending = list(
        InvoiceRunChunk.objects.filter(run_id=args.run, status=InvoiceRunChunk.Status.PENDING)
        .order_by("index")
        .values_list("pk", flat=True)[: args.chunks]
    )
    profile = cProfile.Profile()
    import gc

    gc_time = [0.0, 0]
    gc_started = [0.0]

    def gc_callback(phase, info):
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_started[0]
            gc_time[1] += 1

    gc.callbacks.append(gc_callback)
    timer = StatementTimer()
    print(f"run {args.run}: {len(pending)} chunks, load {os.getloadavg()}")
    from core import db as core_db

    if hasattr(core_db, "_BoundCursor"):  # not on an older tree
        bound_execute = core_db._BoundCursor.execute

        def timed_execute(self, sql, params=None):
            return timer(lambda *a: bound_execute(self, sql, params), sql, params, False, None)

        core_db._BoundCursor.execute = timed_execute
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def backend_cpu() -> float:
        """The PostgreSQL backend's CPU seconds (user + system), from /proc."""
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    timer.cpu = backend_cpu
    from core import hot_cursor
    from ledger.services import writer

    hot_execute = hot_cursor._ReusedCursor.execute

    def timed_hot(self, sql, params=None, prepare=None):
        return timer(lambda *a: hot_execute(self, sql, params, prepare), sql, params, False, None)

    hot_cursor._ReusedCursor.execute = timed_hot
    plain_copy = writer._copy

    def timed_copy(cursor, table, columns, rows):
        rows = list(rows)
        return timer(lambda *a: plain_copy(cursor, table, columns, rows), f"COPY {table}", 0, 0, 0)

    writer._copy = timed_copy
    from invoicing.services import numbering

    # How long each chunk holds its brand's number counter (from the upsert to the end of
    # the commit): the part of a chunk the run's other workers wait for.
    counter_taken = [0.0]
    allocate = numbering.invoice_numbers_allocate

    def timed_allocate(**kwargs):
        if not counter_taken[0]:
            counter_taken[0] = time.perf_counter()
        return allocate(**kwargs)

    numbering.invoice_numbers_allocate = timed_allocate
    held: list[float] = []
    cpu_total = [0.0, 0.0]
    for chunk_id in pending:
        started = time.perf_counter()
        py_started, pg_started = time.process_time(), backend_cpu()
        with connection.execute_wrapper(timer):
            if args.profile:
                profile.enable()
            counter_taken[0] = 0.0
            services.invoice_run_chunk_process(chunk_id=chunk_id)
            if args.profile:
                profile.disable()
        if counter_taken[0]:
            held.append(time.perf_counter() - counter_taken[0])
        py_cpu, pg_cpu = time.process_time() - py_started, backend_cpu() - pg_started
        cpu_total[0] += py_cpu
        cpu_total[1] += pg_cpu
        print(
            f"chunk {chunk_id}: {time.perf_counter() - started:.3f} s wall,"
            f" CPU python {py_cpu:.3f} s + postgres {pg_cpu:.3f} s,"
            f" number counter held {held[-1] if held else 0:.3f} s"
        )
    print(
        f"CPU per chunk: python {cpu_total[0] / len(pending):.3f} s, postgres"
        f" {cpu_total[1] / len(pending):.3f} s, number counter held"
        f" {sum(held) / max(len(held), 1):.3f} s (load {os.getloadavg()})"
    )
    gc.callbacks.remove(gc_callback)
    print(f"garbage collection: {gc_time[0]:.3f} s in {gc_time[1]} collections")
    OrmQ.objects.all().delete()
    rows = sorted(timer.times.items(), key=lambda kv: -sum(kv[1]))
    total = sum(sum(v) for v in timer.times.values())
    print(f"\nSQL through cursors: {total:.3f} s in {sum(len(v) for v in timer.times.values())}")
    cpu_sum = sum(timer.cpu_of.values())
    print(
        f"backend CPU in statements {cpu_sum:.3f} s; outside them (commits, ...)"
        f" {cpu_total[1] - cpu_sum:.3f} s"
    )
    rows = sorted(timer.times.items(), key=lambda kv: -timer.cpu_of[kv[0]])
    for sql, times in rows[:30]:
        print(f"{sum(times):8.3f} s {timer.cpu_of[sql]:7.3f} cpu {len(times):4d}x  {sql}")
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(25)
    if args.callees:
        stats.sort_stats("cumulative").print_callees(args.callees)
    if args.dump:
        stats.dump_stats(args.dump)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
