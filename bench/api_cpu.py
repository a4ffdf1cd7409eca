"""Per-request CPU and SQL of the partner API's hot endpoints, without a server.

    .venv/bin/python bench/api_cpu.py [--requests 2000] [--profile balance] [--top 40]

Uses bench/api.py's database, settings and seed (BENCH_API_DATABASE_URL), builds
Django's WSGI handler in this process and calls it with WSGI environs like
gunicorn's for the three scenarios of bench/api.py (ping, balance, debits). For
each prints the process CPU per request (ms, best of three rounds), the wall
time per request, the CPU its PostgreSQL backend spent per request (from
/proc/<backend pid>/stat when the server runs on this machine, else null; clock
ticks of 10 ms, so only rounds of some hundreds of requests say anything), the
SQL statements (Django's cursors' and the prepared ones of ``core.hot_cursor``)
and the Python function calls per request (counted by cProfile: the same on
every run, where CPU time varies with the machine's load); ``--profile`` prints
cProfile's top functions (cumulative) of one scenario, ``--dump FILE`` keeps them
for pstats. Less noisy than requests/s on a shared machine: CPU time is what
this process spent, whatever else runs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import api as bench_api  # noqa: E402  (bench/api.py)


def environ(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict:
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT_ENCODING": "identity",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            env["CONTENT_TYPE"] = value
        else:
            env[f"HTTP_{key}"] = value
    return env


def make_request(scenario: str, setup: dict, rng: random.Random) -> dict:
    key = {"Authorization": f"Api-Key {setup['key']}"}
    if scenario == "ping":
        return environ("GET", "/api/_bench/ping/", {})
    if scenario == "balance":
        return environ("GET", f"/api/v1/accounts/{rng.choice(setup['accounts'])}/balance/", key)
    body = json.dumps(
        {"account": rng.choice(setup["accounts"]), "amount": "0.01", "brand": setup["brand"]}
    ).encode()
    headers = {
        **key,
        "Content-Type": "application/json",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    return environ("POST", "/api/v1/debits/", headers, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="per round and scenario")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="ping,balance,debits")
    parser.add_argument("--profile", default="", help="scenario to profile (cProfile)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--dump", default="", help="write the --profile stats to this file")
    parser.add_argument(
        "--setup", default="", help="JSON file keeping the seeded key and accounts between runs"
    )
    args = parser.parse_args()

    if args.setup and Path(args.setup).exists():
        setup = json.loads(Path(args.setup).read_text())
    else:
        setup = bench_api.prepare()
        if args.setup:
            Path(args.setup).write_text(json.dumps(setup))
    os.environ.update(bench_api.SERVER_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    try:  # the prepared-statement cursor, out of Django's sight: its statements counted too
        from core.hot_cursor import _ReusedCursor as reused
    except ImportError:  # before it moved to core
        from ledger.services.locking import _ReusedCursor as reused

    original_execute = reused.execute
    seen: list[str] = []  # the statements of the counted requests, in order

    def counted(self: Any, sql: str, params: Any = None, prepare: Any = None) -> None:
        seen.append(f"[prepared] {' '.join(sql.split())[:200]}")
        return original_execute(self, sql, params, prepare)

    def django_counted(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(" ".join(str(sql).split())[:300])
        return execute(sql, params, many, context)

    app = WSGIHandler()
    rng = random.Random(1)
    statuses: dict[str, str] = {}

    def call(scenario: str) -> None:
        env = make_request(scenario, setup, rng)
        status_line: list[str] = []

        def start_response(status: str, headers: list, exc_info: object = None) -> None:
            status_line.append(status)

        response = app(env, start_response)
        body = b"".join(response)
        if hasattr(response, "close"):
            response.close()
        if not status_line[0].startswith(("200", "201")):
            raise RuntimeError(f"{scenario}: {status_line[0]} {body[:300]!r}")
        statuses[scenario] = status_line[0]

    def backend_cpu_seconds() -> tuple[int, float] | None:
        """(pid, utime + stime) of this connection's PostgreSQL backend; None: not on this
        machine. A round whose connection was replaced (CONN_MAX_AGE) is not counted."""
        connection.ensure_connection()
        pid = connection.connection.info.backend_pid
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    results = {}
    scenarios = [s for s in args.scenarios.split(",") if s]
    for scenario in scenarios:
        for _ in range(50):  # warm up: imports, connection, caches
            call(scenario)
        seen.clear()
        reused.execute = counted
        try:
            with connection.execute_wrapper(django_counted):
                for _ in range(20):
                    call(scenario)
        finally:
            reused.execute = original_execute
        sql = list(seen)
        cpu, wall, backend = [], [], []
        for _ in range(args.rounds):
            b0 = backend_cpu_seconds()
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(args.requests):
                call(scenario)
            cpu.append((time.process_time() - c0) / args.requests * 1000)
            wall.append((time.perf_counter() - w0) / args.requests * 1000)
            b1 = backend_cpu_seconds()
            if b0 is not None and b1 is not None and b0[0] == b1[0]:
                backend.append((b1[1] - b0[1]) / args.requests * 1000)
        counter = cProfile.Profile()
        counter.enable()
        for _ in range(100):
            call(scenario)
        counter.disable()
        calls = pstats.Stats(counter).total_calls / 100  # deterministic, unlike CPU time
        results[scenario] = {
            "python_calls_per_request": round(calls),
            "cpu_ms_per_request": round(min(cpu), 3),
            "cpu_ms_rounds": [round(x, 3) for x in cpu],
            "wall_ms_per_request": round(min(wall), 3),
            # Clock ticks (10 ms): meaningful over a round of a few hundred requests or more.
            "backend_cpu_ms_per_request": round(min(backend), 3) if backend else None,
            "sql_per_request": len(sql) / 20,
            "sql_sample": sql[: int(len(sql) / 20 + 0.5)],
        }
    base = results.get("ping", {}).get("cpu_ms_per_request")
    for figures in results.values():
        if base:
            figures["cpu_over_ping_ms"] = round(figures["cpu_ms_per_request"] - base, 3)
    print(json.dumps({"loadavg": os.getloadavg(), "results": results}, indent=2))

    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits
        profiler.enable()
        for _ in range(args.requests):
            call(args.profile)
        profiler.disable()
        if args.dump:
            profiler.dump_stats(args.dump)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
