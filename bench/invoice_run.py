"""Invoice run benchmark: accounts billed per second, end to end, through django-q2 workers.

    .venv/bin/python bench/invoice_run.py [--accounts 100000] [--workers 2] [--chunk-size 1000]

Builds a fresh population in a brand of its own (set-based SQL, not timed): N accounts,
each with three subscriptions (a flat fee, a per-unit service, a tiered service) and two
usage records on each metered one. Then starts ``manage.py qcluster`` with ``--workers``
worker processes, starts an invoice run (issue mode) for that brand and period, and
times it from the start to ``completed``: planning, rating (one SQL statement per chunk),
invoices and lines (one INSERT ... SELECT per chunk), ledger accruals
(``accruals_post_bulk``), numbers, progress. Checks the outcome (one invoice per account,
the ledger's accruals add up to the invoice totals, balances moved by as much) and prints
JSON. Without ``--pdfs`` no PDF is rendered (INVOICING_PDF_ON_ISSUE=0); with it the same
workers also render and store every invoice's PDF after issue, and the clock runs until
the last PDF is stored (try ``--accounts 10000 --pdfs``; bench/invoice_pdf.py measures
rendering alone).

Uses INVOICE_BENCH_DATABASE_URL (default .../billing_inv), created and migrated on first
use; every run adds its own brand and accounts, so runs do not interfere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from q2cluster import q2_cluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_URL = os.environ.get(
    "INVOICE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_inv"
)
TARGET = 2000  # accounts/s (1.5 million in under 13 minutes on 2 cores)
PDF_TARGET = 150  # PDFs/s with --pdfs


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": BENCH_URL,
        "DJANGO_SETTINGS_MODULE": "billing_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "LOG_LEVEL": "WARNING",
        # "Without PDFs": the issue hook still runs, but no bulk rendering is queued
        # (bench/invoice_pdf.py measures PDFs on their own); --pdfs turns it on.
        "INVOICING_PDF_ON_ISSUE": os.environ.get("BENCH_PDFS", "0"),
    }


def _django() -> None:
    os.environ.update(_env())
    import django

    django.setup()


def prepare(accounts: int, period: str, *, usage_wanted: bool = True, emails: bool = False) -> dict:
    """Create the population (SQL, set-based); return what the run needs.

    ``usage_wanted=False`` leaves the usage out (bench/month_end.py sends it through the real
    ingest); ``emails=True`` gives every client an email address, so issuing writes one
    outbox email per invoice.
    """
    subprocess.run(
        [sys.executable, "-m", "billing_site.ensure_db"], env=_env(), check=True, cwd=ROOT
    )
    _django()
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0, interactive=False)
    from accounts.services import account_numbers_allocate
    from brands.models import Brand, Service
    from invoicing import services

    stamp = f"{int(time.time() * 1000) % 10**10:010d}"
    year, month = map(int, period.split("-"))
    start = date(year, month, 1)
    with transaction.atomic():
        brand = Brand.objects.create(
            code=f"IB{stamp}",
            name=f"Invoice bench {stamp}",
            legal_name=f"OOO Invoice bench {stamp}",
            tax_id="7707083893",
            invoice_prefix=f"IB{stamp}",
        )
        flat = Service.objects.create(brand=brand, code="rent", name="Line rental", vat_rate=20)
        unit = Service.objects.create(
            brand=brand, code="calls", name="Calls", unit="min", vat_rate=20
        )
        water = Service.objects.create(
            brand=brand, code="water", name="Water", unit="m3", vat_rate=10
        )
        tariffs = [
            services.tariff_create(service=flat, kind="flat", price="350.00", valid_from=start),
            services.tariff_create(service=unit, kind="per_unit", price="1.85", valid_from=start),
            services.tariff_create(
                service=water,
                kind="tiered",
                tiers=[
                    {"up_to": "10", "price": "40.00"},
                    {"up_to": "25", "price": "55.50"},
                    {"up_to": None, "price": "71.25"},
                ],
                valid_from=start,
                minimum_charge="100.00",
            ),
        ]
    numbers = account_numbers_allocate(accounts)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH c AS (
                INSERT INTO accounts_client (kind, name, legal_name, tax_id, kpp, ogrn, email,
                    phone, address, external_ref, status, created_at, updated_at)
                SELECT 'individual', 'Bench household ' || g, '', '', '', '',
                       CASE WHEN %s THEN %s || '-' || g || '@example.com' ELSE '' END, '', '',
                       %s || '-' || g, 'active', now(), now()
                FROM generate_series(1, %s) g
                RETURNING id
            ),
            numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM c),
            a AS (
                INSERT INTO accounts_account (number, kind, client_id, currency, name, status,
                    status_reason, credit_limit, balance, held, spent_day, spent_month, channel,
                    created_at, updated_at)
                SELECT num.number, 'client', numbered.id, 'RUB', '', 'open', '', 0, 0, 0, 0, 0,
                       '', now(), now()
                FROM numbered JOIN unnest(%s::text[]) WITH ORDINALITY AS num(number, n)
                  USING (n)
                RETURNING id
            )
            INSERT INTO accounts_account_brands (account_id, brand_id)
            SELECT id, %s FROM a
            """,
            [emails, f"bench{stamp}", f"bench{stamp}", accounts, numbers, brand.pk],
        )
        cursor.execute(
            "SELECT account_id FROM accounts_account_brands WHERE brand_id = %s", [brand.pk]
        )
        account_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            INSERT INTO invoicing_subscription (account_id, service_id, tariff_id, starts_on,
                                                created_at)
            SELECT a, t.service_id, t.id, %s, now()
            FROM unnest(%s::bigint[]) AS a CROSS JOIN invoicing_tariff t
            WHERE t.id = ANY(%s::bigint[])
            """,
            [start, account_ids, [t.pk for t in tariffs]],
        )
        usage_sql = """
            INSERT INTO invoicing_usagerecord (account_id, service_id, quantity, occurred_at,
                                               external_id, source)
            SELECT a, s.id,
                   CASE WHEN s.id = %(unit)s THEN ((a * 7919 + k * 31) %% 240)::numeric + 0.25
                        ELSE ((a * 104729 + k * 17) %% 2100)::numeric / 100 END,
                   (%(start)s::timestamp + ((a + k * 13) %% 27) * interval '1 day'
                    + interval '10 hours') AT TIME ZONE %(tz)s,
                   %(stamp)s || '-' || a || '-' || s.id || '-' || k, 'bench'
            FROM unnest(%(accounts)s::bigint[]) AS a
            CROSS JOIN brands_service s
            CROSS JOIN generate_series(1, 2) AS k
            WHERE s.id IN (%(unit)s, %(water)s)
            """
        usage = 0
        if usage_wanted:
            cursor.execute(
                usage_sql,
                {
                    "unit": unit.pk,
                    "water": water.pk,
                    "start": start,
                    "tz": "Europe/Moscow",
                    "stamp": stamp,
                    "accounts": account_ids,
                },
            )
            usage = cursor.rowcount
    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE accounts_account; ANALYZE invoicing_subscription; "
            "ANALYZE invoicing_usagerecord; ANALYZE accounts_account_brands"
        )
    return {
        "brand_id": brand.pk,
        "accounts": len(account_ids),
        "subscriptions": 3 * len(account_ids),
        "usage_records": usage,
        "stamp": stamp,
        "services": {"rent": flat.pk, "calls": unit.pk, "water": water.pk},
        "setup_seconds": round(time.perf_counter() - started, 1),
    }


def measure(
    population: dict, period: str, chunk_size: int, workers: int, pdfs: bool = False
) -> dict:
    from django.db import connection
    from django.db.models import Count, Sum
    from django_q.models import OrmQ

    from invoicing import services
    from invoicing.models import Invoice, InvoiceLine, InvoiceRun
    from ledger.models import Transaction

    # Leftover tasks of earlier runs in this benchmark database (documents of killed
    # clusters, say) would run first and be timed with this run.
    purged, _ = OrmQ.objects.all().delete()
    with q2_cluster(_env(), workers):
        started = time.perf_counter()
        run = services.invoice_run_start(
            period=period, brand=population["brand_id"], chunk_size=chunk_size
        )
        first_progress = None
        while True:
            time.sleep(0.1)
            run.refresh_from_db()
            if first_progress is None and run.processed:
                first_progress = time.perf_counter() - started
            if run.status in (InvoiceRun.Status.COMPLETED, InvoiceRun.Status.FAILED):
                break
        seconds = time.perf_counter() - started
        seconds_with_pdfs = None
        if pdfs and run.status == InvoiceRun.Status.COMPLETED:
            deadline = time.perf_counter() + 3600
            while Invoice.objects.filter(run=run, pdf="").exists():
                if time.perf_counter() > deadline:
                    break
                time.sleep(0.5)
            seconds_with_pdfs = time.perf_counter() - started
    invoices = Invoice.objects.filter(run=run)
    totals = invoices.aggregate(n=Count("id"), total=Sum("total"))
    accruals = Transaction.objects.filter(
        kind="accrual", subject_type="invoice", brand_id=population["brand_id"]
    ).aggregate(n=Count("id"), total=Sum("amount"))
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT COALESCE(SUM(a.balance), 0) FROM accounts_account a
               JOIN accounts_account_brands b ON b.account_id = a.id WHERE b.brand_id = %s""",
            [population["brand_id"]],
        )
        balances = cursor.fetchone()[0]
    checks = {
        "one_invoice_per_account": totals["n"] == population["accounts"],
        "accruals_equal_invoice_totals": accruals["n"] == totals["n"]
        and accruals["total"] == totals["total"],
        "balances_moved_by_totals": balances == -totals["total"],
        "no_failures": run.failed == 0,
    }
    if pdfs:
        stored = invoices.exclude(pdf="").count()
        checks["every_invoice_has_its_pdf"] = stored == totals["n"]
    extra = (
        {
            "seconds_with_pdfs": round(seconds_with_pdfs, 2),
            "accounts_per_s_with_pdfs": round(run.processed / seconds_with_pdfs, 1),
            "pdfs_stored": stored,
            "pdfs_per_s_end_to_end": round(stored / seconds_with_pdfs, 1),
        }
        if pdfs and seconds_with_pdfs
        else {}
    )
    return {
        **extra,
        "status": run.status,
        "seconds": round(seconds, 2),
        "accounts_per_s": round(run.processed / seconds, 1),
        "first_chunk_done_after_s": round(first_progress or 0, 2),
        "stale_queued_tasks_purged": purged,
        "invoices": totals["n"],
        "lines": InvoiceLine.objects.filter(invoice__run=run).count(),
        "accrued_total": str(totals["total"]),
        "checks": checks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--period", default="2026-10")
    parser.add_argument(
        "--prepare-only", action="store_true", help="Build the population, print it, stop."
    )
    parser.add_argument(
        "--pdfs", action="store_true", help="Also render and store every invoice's PDF."
    )
    args = parser.parse_args()
    if args.pdfs:
        os.environ["BENCH_PDFS"] = "1"
    population = prepare(args.accounts, args.period)
    if args.prepare_only:
        print(json.dumps(population))
        return 0
    result = measure(population, args.period, args.chunk_size, args.workers, pdfs=args.pdfs)
    print(
        json.dumps(
            {
                "benchmark": "invoice_run",
                "database": BENCH_URL.rsplit("/", 1)[-1],
                "cpu_count": os.cpu_count(),
                "workers": args.workers,
                "chunk_size": args.chunk_size,
                "period": args.period,
                "pdfs": args.pdfs,
                **population,
                **result,
                **(
                    {
                        "target_pdfs_per_s": PDF_TARGET,
                        "meets_target": result.get("pdfs_per_s_end_to_end", 0) >= PDF_TARGET,
                    }
                    if args.pdfs
                    else {
                        "target_accounts_per_s": TARGET,
                        "meets_target": result["accounts_per_s"] >= TARGET,
                    }
                ),
            },
            indent=2,
        )
    )
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
