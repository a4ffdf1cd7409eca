"""Staff UI benchmark: server time of the main pages with a large demo population.

    .venv/bin/python bench/ui_pages.py [--clients 100000] [--requests 40] [--entries 10000]

Uses its own database (BENCH_UI_DATABASE_URL, default .../billing_ui_bench): created,
migrated, given the roles and seeded with ``seed_demo --clients N`` on first use, plus
one payer account with ``--entries`` ledger entries (posted through ``post_bulk``). Then
renders each page in-process through Django's test client as a signed-in accountant
with DEBUG off (the server's time: URL resolution, middleware, views, queries,
templates; no network), ``--requests`` times after a warm-up, and prints JSON: p50,
p95 and max in milliseconds per page. Target: p95 under 150 ms for every page. The
dashboard shares its ledger-wide figures for ``BACKOFFICE_DASHBOARD_CACHE_SECONDS``;
``dashboard_uncached`` is the same page computing them on every request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get(
    "BENCH_UI_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_ui_bench"
)
ENV = {
    "DATABASE_URL": DATABASE_URL,
    "DEBUG": "0",
    "SECRET_KEY": "bench-ui-not-secret",
    "ALLOWED_HOSTS": "testserver,127.0.0.1",
    "LOG_LEVEL": "WARNING",
    "BILLING_WEBHOOK_ENQUEUE": "0",
}
BUSY_MEMO = "bench-ui busy account"


def prepare(clients: int) -> None:
    env = {**os.environ, **ENV}
    python = sys.executable

    def run(*args: str) -> None:
        subprocess.run([python, *args], cwd=ROOT, env=env, check=True)

    run("-m", "billing_site.ensure_db")
    run("manage.py", "migrate", "--no-input", "-v", "0")
    run("manage.py", "ensure_roles")
    run("manage.py", "seed_demo", "--clients", str(clients), "--if-empty", "--seed", "42")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    prepare(args.clients)
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from accounts.models import Account
    from backoffice.roles import ACCOUNTANT, role_assign
    from ledger.models import Entry, Transaction
    from ledger.services import PaymentItem, post_bulk

    user, _ = get_user_model().objects.get_or_create(username="bench-ui", is_staff=True)
    role_assign(user, ACCOUNTANT)
    busy_txn = Transaction.objects.filter(memo=BUSY_MEMO).select_related("account").first()
    if busy_txn is None:
        busy = Account.objects.filter(kind="client", parent__isnull=True).order_by("id").first()
        for start in range(0, args.entries, 1000):
            post_bulk(
                [
                    PaymentItem(account_id=busy.pk, amount=Decimal("1.00"), memo=BUSY_MEMO)
                    for _ in range(min(1000, args.entries - start))
                ]
            )
    else:
        busy = busy_txn.account
    client_obj = busy.client
    entries = Entry.objects.filter(account_id=busy.pk).count()
    other = Account.objects.filter(kind="client").order_by("-id").first()
    client = Client()
    client.force_login(user)
    hx = {"HTTP_HX_REQUEST": "true"}
    pages = {
        "dashboard": ("/", {}),
        "search_number": (f"/search/?q={other.number[:6]}", hx),
        "search_name": (f"/search/?q={client_obj.name.split()[0][:5]}", hx),
        "search_phone": (f"/search/?q={client_obj.phone[-7:]}", hx),
        "client": (f"/clients/{client_obj.pk}/", {}),
        "account": (f"/accounts/{busy.pk}/", {}),
        "invoices": ("/invoicing/invoices/", {}),
        "clients": ("/clients/", {}),
    }
    results = {}

    def measure(name: str, url: str, headers: dict, requests: int) -> None:
        for _ in range(3):
            response = client.get(url, **headers)
            assert response.status_code == 200, (name, response.status_code)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get(url, **headers)
            times.append((time.perf_counter() - started) * 1000)
        results[name] = {
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(percentile(times, 0.95), 1),
            "max_ms": round(max(times), 1),
        }

    for name, (url, headers) in pages.items():
        measure(name, url, headers, args.requests)
    # What one request pays when the dashboard's shared figures have just expired.
    with override_settings(BACKOFFICE_DASHBOARD_CACHE_SECONDS=0):
        measure("dashboard_uncached", "/", {}, max(5, args.requests // 4))
    print(
        json.dumps(
            {
                "clients": Account.objects.filter(kind="client")
                .values("client")
                .distinct()
                .count(),
                "account_entries": entries,
                "requests_per_page": args.requests,
                "pages": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
