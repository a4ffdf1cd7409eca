"""Ledger posting benchmark: limit-checked debits per second through the service layer.

    .venv/bin/python bench/posting.py [--seconds 8] [--workers 1,2,4] [--skip-ceiling]

Scenarios, each with 1, 2 and 4 worker processes calling ``ledger.services.debit_post``:
  spread  debits on random accounts among 10,000 funded payers;
  hot     debits on random sub-accounts of ONE payer with 100 sub-accounts (every
          posting locks that payer row, so they serialise in PostgreSQL).
Each debit is one DB transaction: lock the account chain, check status, write-off
limits and funds, insert the transaction and two entries, update the running balance
and counters. Prints JSON with postings/s, p50 and p99 latency, and the reference
ceiling (bench/reference/ledger_limit.sql through pgbench: the same work in PL/pgSQL,
no application in between), measured in the same run.

Uses its own database (BENCH_DATABASE_URL, default .../billing_bench), created and
migrated on first use.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_bench")
SPREAD_ACCOUNTS = 10_000
HOT_SUBACCOUNTS = 100
CEILING_SQL = ROOT / "bench" / "reference" / "ledger_limit.sql"
TARGETS = {"spread": 1500, "hot": 600}


def _django() -> None:
    os.environ["DATABASE_URL"] = BENCH_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def prepare() -> dict:
    """Create (once) the benchmark population; return the ids the workers need."""
    subprocess.run(
        [sys.executable, "-m", "billing_site.ensure_db"],
        env={**os.environ, "DATABASE_URL": BENCH_URL},
        check=True,
        cwd=ROOT,
    )
    _django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from accounts.models import Account, Client
    from accounts.services import account_numbers_allocate
    from brands.models import Brand, Service
    from ledger.services import payment_post

    brand, _ = Brand.objects.get_or_create(
        code="BENCH",
        defaults={
            "name": "Bench",
            "legal_name": "OOO Bench",
            "tax_id": "7707083893",
            "invoice_prefix": "BN",
        },
    )
    service, _ = Service.objects.get_or_create(
        brand=brand, code="meal", defaults={"name": "Meal", "vat_rate": Decimal("20.00")}
    )
    client, _ = Client.objects.get_or_create(
        name="Bench client", defaults={"kind": Client.Kind.LEGAL_ENTITY}
    )
    spread = list(
        Account.objects.filter(client=client, parent__isnull=True, name="spread")
        .order_by("id")
        .values_list("id", flat=True)
    )
    missing = SPREAD_ACCOUNTS - len(spread)
    if missing > 0:
        print(f"creating {missing} funded accounts...", file=sys.stderr)
        created = Account.objects.bulk_create(
            Account(
                number=number,
                client=client,
                currency="RUB",
                name="spread",
                credit_limit=Decimal("100.00"),
                write_off_limit_transaction=Decimal("10000.00"),
            )
            for number in account_numbers_allocate(missing)
        )
        Account.brands.through.objects.bulk_create(
            Account.brands.through(account_id=a.pk, brand_id=brand.pk) for a in created
        )
        for acc in created:
            payment_post(account=acc.pk, amount=Decimal("1000000.00"), channel="bank")
        spread += [a.pk for a in created]
    payer = Account.objects.filter(client=client, name="hot payer").first()
    if payer is None:
        payer = Account.objects.create(
            number=account_numbers_allocate(1)[0],
            client=client,
            currency="RUB",
            name="hot payer",
            credit_limit=Decimal("1000.00"),
        )
        payer.brands.add(brand)
        payment_post(account=payer.pk, amount=Decimal("100000000.00"), channel="bank")
        subs = Account.objects.bulk_create(
            Account(
                number=number,
                client=client,
                currency="RUB",
                name="hot sub",
                parent=payer,
                write_off_limit_day=Decimal("100000000.00"),
                write_off_limit_month=Decimal("1000000000.00"),
            )
            for number in account_numbers_allocate(HOT_SUBACCOUNTS)
        )
        Account.brands.through.objects.bulk_create(
            Account.brands.through(account_id=a.pk, brand_id=brand.pk) for a in subs
        )
    subs = list(Account.objects.filter(parent=payer).values_list("id", flat=True))
    # Start every run from the same physical state: earlier runs left dead row
    # versions of the hot payer behind, and autovacuum may be off on this server.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) accounts_account")
    return {
        "brand": brand.pk,
        "service": service.pk,
        "spread": spread[:SPREAD_ACCOUNTS],
        "hot": subs,
    }


def worker(ids, brand_id, service_id, seconds, start, queue, seed) -> None:
    _django()
    from django.db import connection

    from brands.models import Brand, Service
    from ledger.services import DomainError, debit_post

    brand = Brand.objects.get(pk=brand_id)
    service = Service.objects.get(pk=service_id)
    rng = random.Random(seed)
    amount = Decimal("0.01")
    # Warm up the connection and the system-account cache.
    debit_post(account=ids[0], amount=amount, brand=brand, service=service)
    latencies = []
    refused = 0
    start.wait()
    deadline = time.perf_counter() + seconds
    while True:
        began = time.perf_counter()
        if began >= deadline:
            break
        try:
            debit_post(account=rng.choice(ids), amount=amount, brand=brand, service=service)
        except DomainError:
            refused += 1
        latencies.append(time.perf_counter() - began)
    connection.close()
    queue.put((latencies, refused))


def run_scenario(name: str, ids, ctx, workers: int, seconds: float) -> dict:
    spawn = mp.get_context("spawn")
    start = spawn.Barrier(workers + 1)
    queue = spawn.Queue()
    procs = [
        spawn.Process(
            target=worker,
            args=(ids, ctx["brand"], ctx["service"], seconds, start, queue, 1000 * workers + n),
        )
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    latencies = sorted(lat for lats, _ in results for lat in lats)
    refused = sum(r for _, r in results)
    done = len(latencies)
    return {
        "scenario": name,
        "workers": workers,
        "postings": done - refused,
        "refused": refused,
        "postings_per_s": round((done - refused) / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * (done - 1))] * 1000, 2),
    }


def ceiling(seconds: int) -> dict:
    """The reference: the same debit in PL/pgSQL, driven by pgbench with 4 clients."""
    if not CEILING_SQL.exists():
        return {"error": f"{CEILING_SQL} not found"}
    base = ["-h", "127.0.0.1", "-U", "postgres"]
    subprocess.run(
        ["psql", *base, "-q", "-f", str(CEILING_SQL), "postgres"],
        check=True,
        capture_output=True,
    )
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {
            "spread": "select post_debit((random()*9999)::int+1, 1.00, 10001);",
            "hot": "select post_debit(1, 0.01, 10001);",
        }
        for name, sql in scripts.items():
            path = Path(tmp) / f"{name}.sql"
            path.write_text(sql + "\n")
            result = subprocess.run(
                [
                    "pgbench",
                    "-n",
                    *base,
                    "-c",
                    "4",
                    "-j",
                    "2",
                    "-T",
                    str(seconds),
                    "-f",
                    str(path),
                    "limitbench",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            match = re.search(r"tps = ([\d.]+)", result.stdout)
            out[f"{name}_per_s"] = round(float(match.group(1)), 1) if match else None
    subprocess.run(
        ["psql", *base, "-q", "-c", "DROP DATABASE limitbench", "postgres"], capture_output=True
    )
    return {"tool": "pgbench -c 4 -j 2, bench/reference/ledger_limit.sql", **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--skip-ceiling", action="store_true")
    args = parser.parse_args()
    ctx = prepare()
    from django.db import connection

    connection.close()
    rows = []
    for scenario in ("spread", "hot"):
        for workers in (int(w) for w in args.workers.split(",")):
            row = run_scenario(scenario, ctx[scenario], ctx, workers, args.seconds)
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    report = {
        "benchmark": "ledger debit_post through the service layer",
        "machine": {"cpus": os.cpu_count()},
        "seconds_per_run": args.seconds,
        "results": rows,
        "targets_4_workers": {k: f">= {v}/s" for k, v in TARGETS.items()},
    }
    if not args.skip_ceiling:
        report["ceiling_same_run"] = ceiling(int(args.seconds))
        four = {r["scenario"]: r["postings_per_s"] for r in rows if r["workers"] == 4}
        if four and all(report["ceiling_same_run"].get(f"{k}_per_s") for k in four):
            report["share_of_ceiling_4_workers"] = {
                k: f"{100 * v / report['ceiling_same_run'][f'{k}_per_s']:.0f}%"
                for k, v in four.items()
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
