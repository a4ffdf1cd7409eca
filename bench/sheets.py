"""Spreadsheet import benchmark: memory stays bounded as the file grows.

    .venv/bin/python bench/sheets.py [--rows 10000 100000] [--kind clients|accounts]
                                     [--batch-size N] [--modes read import]

Writes CSV files of ``--rows`` new clients (or accounts of one client, with limits and
a brand) and imports each through ``reports.spreadsheets.sheet_import`` as a dry run
(every row through the services inside one transaction, then rolled back, so the
database is the same for every size), each in a fresh process. Next to it, in the same
run, the reference: a fresh process that only reads the same file row by row
(``core.sheets.read_rows``). Prints JSON: per size and mode, rows/s and the process's
peak RSS (and with ``--tracemalloc`` the Python heap's peak, much slower), and the load
average when it ended. Bounded memory means the import's peak does not grow with the rows.
``--batch-size`` overrides the resource's batch (0: the per-row path, every row on its own
with its savepoint; for an A/B of the batched path in the same minutes).
Uses its own database (BENCH_SHEETS_DATABASE_URL, default .../billing_sheets_bench).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_URL = os.environ.get(
    "BENCH_SHEETS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_sheets_bench"
)


def _django() -> None:
    if "--child" not in sys.argv:
        subprocess.run(
            [sys.executable, "-m", "billing_site.ensure_db"],
            env={**os.environ, "DATABASE_URL": BENCH_URL},
            check=True,
            cwd=ROOT,
        )
    os.environ["DATABASE_URL"] = BENCH_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    if "--child" not in sys.argv:
        call_command("migrate", verbosity=0, interactive=False)


def _prepare() -> None:
    from accounts.models import Client
    from accounts.services import client_create
    from brands.models import Brand
    from brands.services import brand_create

    if not Brand.objects.filter(code="SHEETS").exists():
        brand_create(
            code="SHEETS", name="Sheets", legal_name="OOO Sheets", tax_id="7707083893",
            invoice_prefix="SH",
        )  # fmt: skip
    if not Client.objects.filter(external_ref="sheets-bench").exists():
        client_create(kind="legal_entity", name="Sheets bench", external_ref="sheets-bench")


def write_file(kind: str, rows: int, folder: str) -> str:
    path = os.path.join(folder, f"{kind}-{rows}.csv")
    with open(path, "w", encoding="utf-8") as out:
        if kind == "clients":
            out.write("kind,name,email,phone,external_ref\n")
            for i in range(rows):
                out.write(f"individual,Client {i},c{i}@example.com,+7999{i:07d},bench-{rows}-{i}\n")
        else:
            out.write("client_external_ref,currency,brands,name,credit_limit,write_off_limit_day\n")
            for i in range(rows):
                out.write(f"sheets-bench,RUB,SHEETS,Branch {i},{i % 1000}.50,300.00\n")
    return path


def child(kind: str, path: str, mode: str, traced: bool, batch_size: int | None) -> dict:
    """One measurement in this (fresh) process: read the file only, or import it."""
    from core.sheets import read_rows
    from reports.spreadsheets import sheet_import

    if traced:
        tracemalloc.start()
    began = time.perf_counter()
    with open(path, "rb") as upload:
        if mode == "read":
            rows, ok = sum(1 for _ in read_rows(upload, path)), True
        else:
            outcome = sheet_import(
                kind=kind, upload=upload, filename=path, dry_run=True, batch_size=batch_size
            )
            rows, ok = outcome.rows, outcome.ok
    seconds = time.perf_counter() - began
    result = {
        "mode": mode,
        "rows": rows,
        "ok": ok,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batch_size": batch_size,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    if traced:
        result["tracemalloc_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
    return result


def run_child(kind: str, path: str, mode: str, traced: bool, batch_size: int | None) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--kind", kind, "--file", path]
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    done = subprocess.run(
        command + (["--tracemalloc"] if traced else []),
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kind", choices=["clients", "accounts"], default="clients")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the heap (slow)")
    parser.add_argument("--batch-size", type=int, help="0: the per-row path")
    parser.add_argument(
        "--modes", nargs="+", choices=["read", "import"], default=["read", "import"]
    )
    parser.add_argument("--child", choices=["read", "import"])
    parser.add_argument("--file")
    args = parser.parse_args()
    _django()
    if args.child:
        print(
            json.dumps(child(args.kind, args.file, args.child, args.tracemalloc, args.batch_size))
        )
        return
    _prepare()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rows:
            path = write_file(args.kind, rows, folder)
            size = round(os.path.getsize(path) / 2**20, 2)
            for mode in args.modes:
                measured = {
                    "file_mib": size,
                    **run_child(args.kind, path, mode, args.tracemalloc, args.batch_size),
                }
                results.append(measured)
                print(json.dumps(measured), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "sheets_import_dry_run",
                "kind": args.kind,
                "reference": "mode=read: the same file only read row by row, same run",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
