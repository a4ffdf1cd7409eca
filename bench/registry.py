"""Registry import benchmark: a 200,000-row agent registry end to end, next to single postings.

    .venv/bin/python bench/registry.py [--rows 200000] [--seconds 8] [--format sber-txt]

Builds a registry file of ``--rows`` payments (``sber-txt``, cp1251 with its control
footer, or ``csv-total``) to the 10,000 funded accounts of bench/posting.py's population
(plus 1% of unknown numbers, which go to suspense), then measures, in this process:

  registry_import   ``payments.services.registry_import``: decode and parse the file,
                    check the control totals, match the numbers (check digits, one
                    query per 50,000), claim every payment id (INSERT ... ON CONFLICT),
                    post the payments and the suspense receipts through
                    ``ledger.services.post_bulk`` (``transactions_posted`` once:
                    invoicing allocates the call's payments set-based; then
                    ``transaction_posted`` for each), open the suspense items, record
                    the registry; one database transaction;
  single_debits     bench/posting.py's ``spread`` scenario with one worker (debit_post,
                    one transaction each), measured in the same run;
  single_payments   ``ledger.services.payment_post`` one by one for the same time.

Prints JSON: payments/s of the import (target >= 5,000/s on the 2-core machine) beside
the single-posting rates. Uses bench/posting.py's database (BENCH_DATABASE_URL, default
.../billing_bench); each run uses payment ids of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from posting import prepare, run_scenario  # noqa: E402

TARGET = 5000


def build_file(fmt: str, numbers: list[str], rows: int, stamp: str) -> bytes:
    from core.validators import account_number_from_sequence

    rng = random.Random(rows)
    unknown = [account_number_from_sequence(900_000_000 + i) for i in range(50)]
    total = Decimal("0")
    lines = []
    for i in range(rows):
        number = rng.choice(unknown) if i % 100 == 99 else numbers[i % len(numbers)]
        amount = Decimal(rng.randint(100, 500_000)) / 100
        total += amount
        payment_id = f"{stamp}-{i}"
        if fmt == "sber-txt":
            text = f"{amount:.2f}".replace(".", ",")
            lines.append(
                f"01-12-2026;10:15:00;9038;1;{payment_id};{number};Иванов И.И.;"
                f"г. Москва;1126;{text};{text};0,00"
            )
        else:
            lines.append(
                f"{payment_id},2026-12-01T10:15:00+03:00,{number},Ivanov,{amount:.2f},2026-11"
            )
    if fmt == "sber-txt":
        text = f"{total:.2f}".replace(".", ",")
        lines.append(f"={rows};{text};{text};0,00;01-12-2026")
        return ("\r\n".join(lines) + "\r\n").encode("cp1251")
    head = [f"#TOTAL,{rows},{total:.2f}", "payment_id,paid_at,account,payer,amount,period"]
    return ("\n".join(head + lines) + "\n").encode()


def single_payments(ids: list[int], seconds: float) -> dict:
    from ledger.services import payment_post

    rng = random.Random(7)
    done = 0
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        payment_post(account=rng.choice(ids), amount=Decimal("1.00"), channel="bank")
        done += 1
    return {"postings": done, "postings_per_s": round(done / (time.perf_counter() - began), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--format", choices=["sber-txt", "csv-total"], default="sber-txt")
    args = parser.parse_args()
    ctx = prepare()
    from django.db import connection

    from accounts.models import Account
    from payments.formats import BUILT_IN, parse_registry
    from payments.models import PaymentAgent
    from payments.services import payment_agent_create, registry_import

    code = "BENCH-" + args.format.split("-")[0].upper()
    agent = PaymentAgent.objects.filter(code=code).first() or payment_agent_create(
        code=code, name="Bench agent", format=args.format, commission_rate="1.00"
    )
    ids = ctx["spread"]
    numbers = list(Account.objects.filter(pk__in=ids).values_list("number", flat=True))
    stamp = f"{int(time.time() * 1000)}"
    data = build_file(args.format, numbers, args.rows, stamp)

    began = time.perf_counter()
    parsed = parse_registry(BUILT_IN[args.format], data)
    parse_seconds = time.perf_counter() - began
    assert not parsed.errors and len(parsed.rows) == args.rows

    began = time.perf_counter()
    registry = registry_import(agent=agent, file_name=f"bench-{stamp}.txt", content=data)
    seconds = time.perf_counter() - began
    assert registry.status == "applied" and registry.posted + registry.suspense == args.rows
    connection.close()

    debits = run_scenario("spread", ids, ctx, 1, args.seconds)
    payments = single_payments(ids, args.seconds)
    rate = round(args.rows / seconds, 1)
    report = {
        "benchmark": f"registry import end to end ({args.format}, {args.rows} rows)",
        "machine": {"cpus": os.cpu_count()},
        "registry_import": {
            "rows": args.rows,
            "posted": registry.posted,
            "suspense": registry.suspense,
            "seconds": round(seconds, 2),
            "payments_per_s": rate,
            "parse_only_seconds": round(parse_seconds, 2),
            "file_mb": round(len(data) / 1e6, 1),
        },
        "single_debits_same_run (bench/posting.py spread, 1 worker)": debits,
        "single_payments_same_run (payment_post, 1 process)": payments,
        "target": f">= {TARGET}/s",
        "met": rate >= TARGET,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
