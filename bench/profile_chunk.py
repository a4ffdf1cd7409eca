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
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = re.sub(r"\s+", " ", str(sql)).strip()[:110]
            self.times[key].append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--run", type=int)
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
    for chunk_id in pending:
        started = time.perf_counter()
        with connection.execute_wrapper(timer):
            profile.enable()
            services.invoice_run_chunk_process(chunk_id=chunk_id)
            profile.disable()
        print(f"chunk {chunk_id}: {time.perf_counter() - started:.3f} s")
    gc.callbacks.remove(gc_callback)
    print(f"garbage collection: {gc_time[0]:.3f} s in {gc_time[1]} collections")
    OrmQ.objects.all().delete()
    rows = sorted(timer.times.items(), key=lambda kv: -sum(kv[1]))
    total = sum(sum(v) for v in timer.times.values())
    print(f"\nSQL through cursors: {total:.3f} s in {sum(len(v) for v in timer.times.values())}")
    for sql, times in rows[:30]:
        print(f"{sum(times):8.3f} s {len(times):5d}x  {sql}")
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
