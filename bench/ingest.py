"""Usage ingest benchmark: records/s through ``manage.py ingest_usage`` next to a plain COPY.

    .venv/bin/python bench/ingest.py [--records 1000000] [--accounts 10000] [--rounds 2]

Writes a CSV of N usage records (header ``account,service,quantity,occurred_at,external_id``)
for accounts of a brand of its own (each subscribed to both services), then, ``--rounds``
times and alternating, measures
  ingest_usage  the management command (in this process, ``call_command``): the clean
                file COPYed straight into the table with the rules checked per block,
                pair and hour (``invoicing.ingest.direct``), all in one transaction;
                ``all_duplicates_again`` (the file sent twice) goes the staged way;
  plain_copy    ``COPY invoicing_usagerecord (...) FROM STDIN`` of the same file, streamed
                the same way, into the same table with the same indexes: no validation,
                no dedupe, the ceiling.
The table is emptied of the benchmark's rows (DELETE + VACUUM, not timed) before each
measurement. Prints JSON with both rates and their ratio.

Uses INVOICE_BENCH_DATABASE_URL (default .../billing_inv).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from invoice_run import BENCH_URL, _django, _env  # noqa: E402

TARGET_RATE = 150_000
TARGET_RATIO = 0.5


def prepare(accounts: int) -> dict:
    import subprocess

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
    with transaction.atomic():
        brand = Brand.objects.create(
            code=f"UB{stamp}",
            name=f"Usage bench {stamp}",
            legal_name=f"OOO Usage bench {stamp}",
            tax_id="7707083893",
            invoice_prefix=f"UB{stamp}",
        )
        bench_services = [
            Service.objects.create(brand=brand, code=code, name=code, vat_rate=20)
            for code in ("data", "calls")
        ]
        numbers = account_numbers_allocate(accounts)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH c AS (
                    INSERT INTO accounts_client (kind, name, legal_name, tax_id, kpp, ogrn,
                        email, phone, address, external_ref, status, created_at, updated_at)
                    SELECT 'individual', 'Usage bench ' || g, '', '', '', '', '', '', '',
                           %s || '-' || g, 'active', now(), now()
                    FROM generate_series(1, %s) g RETURNING id
                ),
                numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM c),
                a AS (
                    INSERT INTO accounts_account (number, kind, client_id, currency, name,
                        status, status_reason, credit_limit, balance, held, spent_day,
                        spent_month, channel, created_at, updated_at)
                    SELECT num.number, 'client', numbered.id, 'RUB', '', 'open', '', 0, 0, 0,
                           0, 0, '', now(), now()
                    FROM numbered JOIN unnest(%s::text[]) WITH ORDINALITY AS num(number, n)
                      USING (n)
                    RETURNING id
                )
                INSERT INTO accounts_account_brands (account_id, brand_id)
                SELECT id, %s FROM a RETURNING account_id
                """,
                [f"ubench{stamp}", accounts, numbers, brand.pk],
            )
            account_ids = [row[0] for row in cursor.fetchall()]
        # Usage needs a subscription on its day (``no_subscription``): every account takes
        # both services from the start of the year the records fall in.
        tariffs = [
            services.tariff_create(
                service=service, kind="per_unit", price="0.01", valid_from=date(2026, 1, 1)
            )
            for service in bench_services
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO invoicing_subscription (account_id, service_id, tariff_id, starts_on,
                                                    created_at)
                SELECT a, t.service_id, t.id, %s, now()
                FROM unnest(%s::bigint[]) AS a CROSS JOIN invoicing_tariff t
                WHERE t.id = ANY(%s::bigint[])
                """,
                [date(2026, 1, 1), account_ids, [t.pk for t in tariffs]],
            )
            cursor.execute("ANALYZE invoicing_subscription")
    return {
        "stamp": stamp,
        "service_ids": [s.pk for s in bench_services],
        "account_ids": account_ids,
    }


def write_csv(path: Path, records: int, population: dict) -> None:
    rng = random.Random(42)
    accounts = population["account_ids"]
    service_ids = population["service_ids"]
    stamp = population["stamp"]
    with path.open("w", buffering=1 << 20) as out:
        out.write("account,service,quantity,occurred_at,external_id\n")
        for i in range(records):
            day = 1 + i % 28
            out.write(
                f"{accounts[rng.randrange(len(accounts))]},{service_ids[i & 1]},"
                f"{rng.randrange(1, 100000) / 1000},"
                f"2026-10-{day:02d}T{i % 24:02d}:{i % 60:02d}:00+03:00,u{stamp}-{i}\n"
            )


def clear(service_ids: list[int]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM invoicing_usagerecord WHERE service_id = ANY(%s)", [service_ids]
        )
    connection.close()
    import psycopg

    with psycopg.connect(
        BENCH_URL.replace("postgres://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute("VACUUM (ANALYZE) invoicing_usagerecord")


def run_ingest(path: Path) -> tuple[float, dict]:
    from django.core.management import call_command

    out = io.StringIO()
    started = time.perf_counter()
    call_command("ingest_usage", str(path), "--json", "--show-errors", "3", stdout=out)
    seconds = time.perf_counter() - started
    return seconds, json.loads(out.getvalue())


def run_plain_copy(path: Path) -> tuple[float, int]:
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        with (
            path.open("rb") as stream,
            cursor.cursor.copy(
                "COPY invoicing_usagerecord (account_id, service_id, quantity, occurred_at,"
                " external_id) FROM STDIN WITH (FORMAT csv, HEADER true)"
            ) as copy,
        ):
            while block := stream.read(1 << 20):
                copy.write(block)
        rows = cursor.cursor.rowcount
    return time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    population = prepare(args.accounts)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "usage.csv"
        write_csv(path, args.records, population)
        size_mb = path.stat().st_size / 1e6
        ingest_times, copy_times, last = [], [], {}
        for _ in range(args.rounds):
            clear(population["service_ids"])
            seconds, last = run_ingest(path)
            assert last["accepted"] == args.records, last
            ingest_times.append(seconds)
            clear(population["service_ids"])
            seconds, rows = run_plain_copy(path)
            assert rows == args.records
            copy_times.append(seconds)
        clear(population["service_ids"])
        # The same file again on top of itself: every record is a duplicate.
        run_ingest(path)
        dup_seconds, duplicates = run_ingest(path)
        clear(population["service_ids"])
    ingest_best, copy_best = min(ingest_times), min(copy_times)
    result = {
        "benchmark": "ingest_usage",
        "database": BENCH_URL.rsplit("/", 1)[-1],
        "cpu_count": os.cpu_count(),
        "records": args.records,
        "file_mb": round(size_mb, 1),
        "ingest_usage": {
            "seconds": [round(t, 2) for t in ingest_times],
            "records_per_s": round(args.records / ingest_best),
            "median_records_per_s": round(args.records / statistics.median(ingest_times)),
            "accepted": last["accepted"],
            "errors": last["errors"],
        },
        "plain_copy": {
            "seconds": [round(t, 2) for t in copy_times],
            "records_per_s": round(args.records / copy_best),
        },
        "ratio_to_plain_copy": round(copy_best / ingest_best, 3),
        "all_duplicates_again": {
            "seconds": round(dup_seconds, 2),
            "duplicates": duplicates["duplicates"],
        },
        "targets": {"records_per_s": TARGET_RATE, "ratio": TARGET_RATIO},
    }
    result["meets_targets"] = (
        result["ingest_usage"]["records_per_s"] >= TARGET_RATE
        and result["ratio_to_plain_copy"] >= TARGET_RATIO
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
