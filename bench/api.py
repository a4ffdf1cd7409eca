"""REST API benchmark: the real server (gunicorn, DEBUG off) driven from separate processes.

    .venv/bin/python bench/api.py [--seconds 8] [--workers 3] [--threads 4] [--clients 2x8]

Starts gunicorn on 127.0.0.1 with production settings (DEBUG=0, gthread workers,
keep-alive) against its own database (BENCH_API_DATABASE_URL, default
.../billing_api: created, migrated and seeded through the services on first use),
then runs three scenarios one after another, each for ``--seconds``:

  ping     GET /api/_bench/ping/  a bare Django JsonResponse (the framework's ceiling,
           enabled only for this run by BILLING_API_BENCH_VIEWS=1)
  balance  GET /api/v1/accounts/{id}/balance/ with an API key, random accounts
  debits   POST /api/v1/debits/ with an API key and a fresh Idempotency-Key per request

The load comes from ``--clients`` processes x threads, each thread holding one
keep-alive HTTP/1.1 connection (http.client). Prints JSON: requests/s, p50 and p99
latency (ms) and error counts per scenario. The load generator shares the 2 cores
with the server (and with whatever else runs on the machine): numbers are honest,
not isolated.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get(
    "BENCH_API_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_api"
)
ACCOUNTS = 500
SERVER_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "DEBUG": "0",
    "SECRET_KEY": "bench-api-not-secret",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "BILLING_API_BENCH_VIEWS": "1",
    "API_THROTTLE_RATE": "100000000/second",
    "LOG_LEVEL": "WARNING",
    "BILLING_WEBHOOK_ENQUEUE": "0",
}


def prepare() -> dict:
    """Create, migrate and seed the benchmark database; return a key and account ids."""
    env = {**os.environ, **SERVER_ENV}
    python = sys.executable
    subprocess.run([python, "-m", "billing_site.ensure_db"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [python, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    seed = subprocess.run(
        [python, __file__, "--seed"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return json.loads(seed.stdout.strip().splitlines()[-1])


def seed() -> None:
    """Runs inside the benchmark environment: one partner, one key, ACCOUNTS funded accounts."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()
    from access.services import api_key_create, partner_get_or_create
    from accounts.models import Account
    from accounts.services import account_create, client_create
    from brands.models import Brand
    from ledger.services import payment_post

    brand = Brand.objects.filter(code="BENCH").first() or Brand.objects.create(
        code="BENCH",
        name="Bench brand",
        legal_name="OOO Bench",
        tax_id="7707083893",
        invoice_prefix="BEN",
    )
    partner = partner_get_or_create(name="Bench partner", brands=[brand])
    _, raw_key = api_key_create(partner=partner, brands=[brand], name="bench")
    ids = list(
        Account.objects.filter(brands=brand, kind="client").values_list("pk", flat=True)[:ACCOUNTS]
    )
    for n in range(len(ids), ACCOUNTS):
        client = client_create(kind="individual", name=f"Bench client {n}")
        account = account_create(client=client, brands=[brand])
        ids.append(account.pk)
    for account_id in ids:
        # Enough for every debit of many runs (0.01 each).
        if Account.objects.get(pk=account_id).balance < 1000:
            payment_post(account=account_id, amount="1000000.00", channel="bank")
    print(json.dumps({"key": raw_key, "brand": brand.pk, "accounts": ids}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, workers: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, **SERVER_ENV}
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "billing_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/_bench/ping/")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError("gunicorn did not start")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def drive(port: int, scenario: str, seconds: float, threads: int, setup: dict, out: mp.Queue):
    """One load-generator process: ``threads`` keep-alive connections for ``seconds``."""
    key_header = {"Authorization": f"Api-Key {setup['key']}"}
    accounts = setup["accounts"]
    stop_at = time.monotonic() + seconds
    results: list[tuple[list[float], int]] = []

    def loop() -> None:
        rng = random.Random()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        errors = 0
        while time.monotonic() < stop_at:
            if scenario == "ping":
                method, path, body, headers = "GET", "/api/_bench/ping/", None, {}
            elif scenario == "balance":
                path = f"/api/v1/accounts/{rng.choice(accounts)}/balance/"
                method, body, headers = "GET", None, key_header
            else:
                method, path = "POST", "/api/v1/debits/"
                body = json.dumps(
                    {"account": rng.choice(accounts), "amount": "0.01", "brand": setup["brand"]}
                )
                headers = {
                    **key_header,
                    "Content-Type": "application/json",
                    "Idempotency-Key": uuid.uuid4().hex,
                }
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status in (200, 201)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies.append(time.perf_counter() - started)
            errors += not ok
        conn.close()
        results.append((latencies, errors))

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(
        (
            [latency for latencies, _ in results for latency in latencies],
            sum(errors for _, errors in results),
        )
    )


def run_scenario(port: int, scenario: str, args: argparse.Namespace, setup: dict) -> dict:
    processes, threads = (int(x) for x in args.clients.split("x"))
    queue: mp.Queue = mp.Queue()
    drivers = [
        mp.Process(target=drive, args=(port, scenario, args.seconds, threads, setup, queue))
        for _ in range(processes)
    ]
    started = time.monotonic()
    for process in drivers:
        process.start()
    latencies: list[float] = []
    errors = 0
    for _ in drivers:
        part, part_errors = queue.get()
        latencies += part
        errors += part_errors
    for process in drivers:
        process.join()
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2)

    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--clients", default="2x8", help="load processes x threads each")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        seed()
        return
    setup = prepare()
    port = free_port()
    server = start_server(port, args.workers, args.threads)
    try:
        results = {
            scenario: run_scenario(port, scenario, args, setup)
            for scenario in ("ping", "balance", "debits")
        }
    finally:
        stop_server(server)
    print(
        json.dumps(
            {
                "server": f"gunicorn gthread, {args.workers} workers x {args.threads} threads,"
                " DEBUG=0",
                "load": f"{args.clients} (processes x keep-alive connections)",
                "seconds_per_scenario": args.seconds,
                "cpu_count": os.cpu_count(),
                "targets": {"balance_requests_per_s": 1000, "debits_requests_per_s": 400},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
