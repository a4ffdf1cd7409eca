"""Invoice PDF benchmark: PDFs rendered and stored per second through the bulk q2 path.

    .venv/bin/python bench/invoice_pdf.py [--invoices 2000] [--workers 2] [--chunk-size 100]

Builds (not timed) a brand with full bank requisites and Cyrillic names, N households
each subscribed to three services (a flat fee, a per-unit service, a tiered one) with
usage, and issues their invoices with an invoice run whose PDF hook is off (3 lines each).
Then starts ``manage.py qcluster`` with ``--workers`` worker processes, queues the
invoices exactly as the issuing hook does (``invoicing.documents._enqueue_delivery``: one
``invoicing.tasks.invoice_documents_deliver`` task per chunk) and times from queueing to
the last PDF recorded on its invoice: loading, rendering (text, lines, QR), storing under
MEDIA_ROOT (a temporary directory) and recording the path. Checks every invoice got its
file, reads a sample back (number and total in the text, the QR decoded from a rendered
page equals the expected ST00012 payload) and prints JSON.

Uses PDF_BENCH_DATABASE_URL (default .../billing_pdf_bench), created and migrated on
first use; every run adds its own brand and households, so runs do not interfere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from q2cluster import q2_cluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_URL = os.environ.get(
    "PDF_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_pdf_bench"
)
TARGET = 150  # PDFs/s
MEDIA = Path(tempfile.mkdtemp(prefix="invoice-pdf-bench-"))


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": BENCH_URL,
        "DJANGO_SETTINGS_MODULE": "billing_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "LOG_LEVEL": "WARNING",
        "MEDIA_ROOT": str(MEDIA),
        # Issue without the hook; the benchmark queues the same tasks itself, timed.
        "INVOICING_PDF_ON_ISSUE": "0",
    }


def _django() -> None:
    os.environ.update(_env())
    import django

    django.setup()


def prepare(count: int, period: str) -> dict:
    """Create the households (set-based SQL) and issue their invoices; return the ids."""
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
    from invoicing.models import Invoice

    stamp = f"{int(time.time() * 1000) % 10**10:010d}"
    year, month = map(int, period.split("-"))
    start = date(year, month, 1)
    with transaction.atomic():
        brand = Brand.objects.create(
            code=f"PB{stamp}",
            name="Горэнергосбыт",
            legal_name="ООО «Горэнергосбыт Северо-Запад»",
            tax_id="7707083893",
            kpp="773601001",
            address="191186, г. Санкт-Петербург, Невский пр., д. 38, лит. А, пом. 12-Н",
            bank_name="ПАО Сбербанк",
            bank_bik="044525225",
            bank_account="40702810900000000001",
            bank_correspondent_account="30101810400000000225",
            invoice_prefix=f"PB{stamp}",
        )
        fee = Service.objects.create(
            brand=brand, code="fee", name="Абонентская плата", unit="мес", vat_rate=20
        )
        power = Service.objects.create(
            brand=brand, code="power", name="Электроэнергия, день", unit="кВт·ч", vat_rate=20
        )
        water = Service.objects.create(
            brand=brand, code="water", name="Холодное водоснабжение", unit="м³", vat_rate=10
        )
        tariffs = [
            services.tariff_create(service=fee, kind="flat", price="350.00", valid_from=start),
            services.tariff_create(service=power, kind="per_unit", price="6.43", valid_from=start),
            services.tariff_create(
                service=water,
                kind="tiered",
                tiers=[{"up_to": "1000", "price": "48.20"}, {"up_to": None, "price": "61.00"}],
                valid_from=start,
            ),
        ]
    numbers = account_numbers_allocate(count)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH c AS (
                INSERT INTO accounts_client (kind, name, legal_name, tax_id, kpp, ogrn, email,
                    phone, address, external_ref, status, created_at, updated_at)
                SELECT 'individual', 'Иванова Мария Петровна ' || g, '', '', '', '', '', '',
                       'г. Санкт-Петербург, ул. Маршала Казакова, д. ' || (g %% 90 + 1)
                         || ', кв. ' || (g %% 300 + 1),
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
            [f"pdfbench{stamp}", count, numbers, brand.pk],
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
        cursor.execute(
            """
            INSERT INTO invoicing_usagerecord (account_id, service_id, quantity, occurred_at,
                                               external_id, source)
            SELECT a, s.id, ((a * 7919) %% 400)::numeric + 12.5,
                   (%(start)s::timestamp + (a %% 27) * interval '1 day' + interval '10 hours')
                     AT TIME ZONE 'Europe/Moscow',
                   %(stamp)s || '-' || a || '-' || s.id, 'bench'
            FROM unnest(%(accounts)s::bigint[]) AS a CROSS JOIN brands_service s
            WHERE s.id IN (%(power)s, %(water)s)
            """,
            {
                "start": start,
                "stamp": stamp,
                "accounts": account_ids,
                "power": power.pk,
                "water": water.pk,
            },
        )
    run = services.invoice_run_start(period=period, brand=brand, chunk_size=1000)
    services.invoice_run_plan(run_id=run.pk)
    for chunk in run.chunks.filter(status="pending").order_by("index"):
        services.invoice_run_chunk_process(chunk_id=chunk.pk)
    ids = list(Invoice.objects.filter(run=run).order_by("pk").values_list("pk", flat=True))
    lines = Invoice.objects.filter(run=run).values_list("lines", flat=True).count()
    return {"brand_id": brand.pk, "invoice_ids": ids, "lines": lines}


def single_process_render_ms(invoice_id: int, repeat: int = 50) -> float:
    """CPU time of one render in this process (no database, no storage), for context."""
    from invoicing.documents import invoice_documents
    from invoicing.pdf import render_invoice_pdf

    document = invoice_documents([invoice_id])[invoice_id]
    render_invoice_pdf(document)
    started = time.process_time()
    for _ in range(repeat):
        render_invoice_pdf(document)
    return round((time.process_time() - started) / repeat * 1000, 2)


def measure(ids: list[int], workers: int, chunk_size: int) -> dict:
    from django.db import connection
    from django.test import override_settings

    from invoicing import documents
    from invoicing.models import Invoice

    group = f"pdf-bench-{ids[0]}"
    with q2_cluster(_env(), workers):
        started = time.perf_counter()
        with override_settings(INVOICING_PDF_CHUNK_SIZE=chunk_size):
            documents._enqueue_delivery(ids, group)
        queued = time.perf_counter() - started
        remaining = len(ids)
        deadline = started + 1800
        while remaining and time.perf_counter() < deadline:
            time.sleep(0.1)
            remaining = Invoice.objects.filter(pk__in=ids, pdf="").count()
        seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(started), max(stopped), count(*), count(*) FILTER (WHERE NOT success)"
            ' FROM django_q_task WHERE "group" = %s',
            [group],
        )
        first_started, last_stopped, tasks, failed_tasks = cursor.fetchone()
    busy = (last_stopped - first_started).total_seconds() if first_started else None
    done = len(ids) - remaining
    return {
        "seconds": round(seconds, 2),
        "pdfs_per_s": round(done / seconds, 1),
        "queueing_seconds": round(queued, 3),
        "tasks": tasks,
        "failed_tasks": failed_tasks,
        "first_task_start_to_last_task_end_s": round(busy, 2) if busy else None,
        "pdfs_per_s_task_span": round(done / busy, 1) if busy else None,
        "pdfs_stored": done,
    }


def check(ids: list[int], sample: int = 3) -> dict:
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from invoicing.models import Invoice
    from invoicing.pdf import format_money
    from tests.invoicing.pdf_helpers import pdf_text, qr_codes

    invoices = list(
        Invoice.objects.filter(pk__in=ids).select_related("account", "brand").order_by("pk")
    )
    stored = [inv for inv in invoices if inv.pdf and default_storage.exists(inv.pdf.name)]
    sizes = [default_storage.size(inv.pdf.name) for inv in stored]
    step = max(len(invoices) // sample, 1)
    readable = qr_ok = 0
    for invoice in invoices[::step][:sample]:
        with default_storage.open(invoice.pdf.name, "rb") as handle:
            content = handle.read()
        text = pdf_text(content)
        due = invoice.total - (invoice.balance_brought_forward or 0)
        if f"Счёт № {invoice.number}" in text and format_money(invoice.total) in text:
            readable += 1
        issued = timezone.localdate(invoice.issued_at).strftime("%d.%m.%Y")
        expected_qr = (
            f"ST00012|Name={invoice.brand.legal_name}|PersonalAcc={invoice.brand.bank_account}"
            f"|BankName={invoice.brand.bank_name}|BIC={invoice.brand.bank_bik}"
            f"|CorrespAcc={invoice.brand.bank_correspondent_account}"
            f"|PayeeINN={invoice.brand.tax_id}|KPP={invoice.brand.kpp}|Sum={int(due * 100)}"
            f"|Purpose=Оплата по счёту {invoice.number} от {issued} за {invoice.period.code},"
            f" л/с {invoice.account.number}|PersAcc={invoice.account.number}"
            f"|PaymPeriod={invoice.period.code[5:]}{invoice.period.code[:4]}"
        )
        if qr_codes(content) == [expected_qr]:
            qr_ok += 1
    return {
        "every_invoice_has_its_pdf": len(stored) == len(ids),
        "sample_text_readable": f"{readable}/{min(sample, len(invoices))}",
        "sample_qr_decoded_as_expected": f"{qr_ok}/{min(sample, len(invoices))}",
        "avg_pdf_kb": round(sum(sizes) / len(sizes) / 1024, 1) if sizes else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=100, help="invoices per q2 task")
    parser.add_argument("--period", default="2026-09")
    args = parser.parse_args()
    try:
        population = prepare(args.invoices, args.period)
        ids = population["invoice_ids"]
        result = measure(ids, args.workers, args.chunk_size)
        checks = check(ids)
        report = {
            "benchmark": "invoice_pdf",
            "database": BENCH_URL.rsplit("/", 1)[-1],
            "cpu_count": os.cpu_count(),
            "workers": args.workers,
            "chunk_size": args.chunk_size,
            "invoices": len(ids),
            "lines": population["lines"],
            **result,
            "single_process_render_cpu_ms": single_process_render_ms(ids[0]),
            "checks": checks,
            "target_pdfs_per_s": TARGET,
            "meets_target": result["pdfs_per_s"] >= TARGET,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        ok = checks["every_invoice_has_its_pdf"] and result["failed_tasks"] == 0
        return 0 if ok else 1
    finally:
        shutil.rmtree(MEDIA, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
