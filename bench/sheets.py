"""Spreadsheet import benchmark: memory stays bounded as the file grows.

    .venv/bin/python bench/sheets.py [--rows 10000 100000] [--batch-size N] [--modes read import]
        [--kind clients|accounts|services|tariffs|subscriptions|meter-readings]

Writes CSV files of ``--rows`` new records of the kind (clients; accounts of one client,
with limits and a brand; services of one brand; tariff plans of 100 services;
subscriptions of 1,000 accounts to 100 services, one each; meter readings of 1,000
accounts, 100 each, rising) and imports each through ``reports.spreadsheets.sheet_import``
as a dry run (every row through the services inside one transaction, then rolled back, so the
database is the same for every size), each in a fresh process. Next to it, in the same
run, the reference: a fresh process that only reads the same file row by row
(``core.sheets.read_rows``). Prints JSON: per size and mode, rows/s and the process's
peak RSS, its CPU time (this process's, PostgreSQL's aside; steadier than the wall
time on a loaded machine) (and with ``--tracemalloc`` the Python heap's peak, much
slower), and the load average when it ended. Bounded memory means the import's peak
does not grow with the rows.
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


KINDS = ["clients", "accounts", "services", "tariffs", "subscriptions", "meter-readings"]
SERVICES = 100  # services sv000..sv099 of the brand SHEETS, each with a standard tariff
ACCOUNTS = 1000  # accounts with names bench-0000..bench-0999, linked to SHEETS


def _prepare() -> None:
    from datetime import date

    from accounts.models import Account, Client
    from accounts.services import accounts_create_bulk, client_create
    from brands.models import Brand, Service
    from brands.services import brand_create, service_create
    from invoicing.services.tariffs import tariff_create

    brand = Brand.objects.filter(code="SHEETS").first() or brand_create(
        code="SHEETS", name="Sheets", legal_name="OOO Sheets", tax_id="7707083893",
        invoice_prefix="SH",
    )  # fmt: skip
    client = Client.objects.filter(external_ref="sheets-bench").first() or client_create(
        kind="legal_entity", name="Sheets bench", external_ref="sheets-bench"
    )
    for n in range(Service.objects.filter(brand=brand, code__startswith="sv").count(), SERVICES):
        service = service_create(brand=brand, code=f"sv{n:03d}", name=f"Bench {n}", unit="kWh")
        tariff_create(service=service, kind="per_unit", price="4.50", valid_from=date(2026, 1, 1))
    have = Account.objects.filter(client=client, name__startswith="bench-").count()
    accounts_create_bulk(
        accounts=[
            {"client": client, "brands": [brand], "name": f"bench-{n:04d}"}
            for n in range(have, ACCOUNTS)
        ]
    )


def _account_numbers() -> list[str]:
    from accounts.models import Account

    return list(
        Account.objects.filter(client__external_ref="sheets-bench", name__startswith="bench-")
        .order_by("name")
        .values_list("number", flat=True)
    )


def write_file(kind: str, rows: int, folder: str) -> str:
    path = os.path.join(folder, f"{kind}-{rows}.csv")
    with open(path, "w", encoding="utf-8") as out:
        if kind == "clients":
            out.write("kind,name,email,phone,external_ref\n")
            for i in range(rows):
                out.write(f"individual,Client {i},c{i}@example.com,+7999{i:07d},bench-{rows}-{i}\n")
        elif kind == "accounts":
            out.write("client_external_ref,currency,brands,name,credit_limit,write_off_limit_day\n")
            for i in range(rows):
                out.write(f"sheets-bench,RUB,SHEETS,Branch {i},{i % 1000}.50,300.00\n")
        elif kind == "services":
            out.write("brand,code,name,unit,vat_rate\n")
            for i in range(rows):
                out.write(f"SHEETS,b{rows}-{i},Bench service {i},pcs,{'' if i % 2 else '10'}\n")
        elif kind == "tariffs":
            out.write("brand,service,plan,kind,price,valid_from\n")
            for i in range(rows):
                out.write(f"SHEETS,sv{i % SERVICES:03d},p{i // SERVICES},per_unit,1.{i % 100:02d},"
                          "2026-02-01\n")  # fmt: skip
        elif kind == "subscriptions":
            numbers = _account_numbers()
            out.write("account,brand,service,plan,starts_on\n")
            for i in range(rows):
                account = numbers[i // SERVICES % len(numbers)]
                out.write(f"{account},SHEETS,sv{i % SERVICES:03d},standard,2026-02-01\n")
        else:
            numbers = _account_numbers()
            per_account = max(rows // len(numbers), 1)
            out.write("account,brand,service,reading,taken_at,external_id\n")
            for i in range(rows):
                account, n = numbers[i // per_account % len(numbers)], i % per_account
                day, hour = 1 + n // 24, n % 24
                taken_at = f"2026-0{1 + day // 28}-{1 + day % 28:02d}T{hour:02d}:00:00+03:00"
                out.write(f"{account},SHEETS,sv000,{100 + n}.5,{taken_at},bench-{rows}-{i}\n")
    return path


def child(kind: str, path: str, mode: str, traced: bool, batch_size: int | None) -> dict:
    """One measurement in this (fresh) process: read the file only, or import it."""
    from core.sheets import read_rows
    from reports.spreadsheets import sheet_import

    if traced:
        tracemalloc.start()
    began, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as upload:
        if mode == "read":
            rows, ok, new = sum(1 for _ in read_rows(upload, path)), True, 0
        else:
            outcome = sheet_import(
                kind=kind, upload=upload, filename=path, dry_run=True, batch_size=batch_size
            )
            rows, ok, new = outcome.rows, outcome.ok, outcome.new
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    result = {
        "mode": mode,
        "rows": rows,
        "ok": ok,
        "new": new,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "cpu_s": round(cpu, 1),
        "cpu_ms_per_row": round(cpu * 1000 / max(rows, 1), 3),
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
    parser.add_argument("--kind", choices=KINDS, default="clients")
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
