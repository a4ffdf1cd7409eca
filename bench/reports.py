"""Reports benchmark: statements, the turnover sheet, a 1-million-row XLSX export, and the
posting rate with the projector running next to it.

    .venv/bin/python bench/reports.py [--entries 10000000] [--hot 100000] [--seconds 10]
                                      [--calls 200] [--only statement|turnover]

Population (once per size, on REPORTS_BENCH_DATABASE_URL, default .../billing_reports_bench):
``--entries`` ledger entries written set-based in SQL with consistent running balances
(payments and accruals over the twelve months of 2026 on 20 accounts per 1,000
transactions), of which ``--hot`` on one account; then the projections are rebuilt.
Measured, each next to a reference taken in the same run:
  statement      ``reports.standard.statement`` of the hot account and the API's JSON body
                 (``statement_json``) next to the JSON built as before (the same bytes):
                 one day, one month, one year (p50/p99 over repeated calls); reference:
                 the bare index range scan (``--only statement``: this part alone);
  turnover       the turnover sheet per account for one month from the projections;
                 reference: the same sums aggregated from the ledger's entries
                 (``--only turnover``: the projections brought up to date, then this);
  xlsx_export    an ad-hoc listing of 1,000,000 entries streamed to XLSX in a child
                 process: seconds and the child's peak RSS; reference: the peak RSS of
                 a child that only starts Django;
  posting        payments/s by 2 worker processes for ``--seconds``, alone and with
                 the projector folding new entries every second next to them.
Prints JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_URL = os.environ.get(
    "REPORTS_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing_reports_bench"
)
EXPORT_ROWS = 1_000_000
TARGETS = {"statement_p99_ms": 20, "turnover_s": 2, "posting_ratio": 0.9}


def _django() -> None:
    os.environ.update(
        {
            "DATABASE_URL": BENCH_URL,
            "DJANGO_SETTINGS_MODULE": "billing_site.settings",
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()


def _sql(sql: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def populate(entries: int, hot: int) -> dict:
    """Write the population once (a brand ``RPB<entries>`` marks it); return its ids."""
    subprocess.run(
        [sys.executable, "-m", "billing_site.ensure_db"],
        env={**os.environ, "DATABASE_URL": BENCH_URL},
        check=True,
        cwd=ROOT,
    )
    _django()
    from django.core.management import call_command
    from django.db import transaction

    from accounts.services import account_numbers_allocate
    from brands.models import Brand, Service
    from ledger.services import system_account_id

    call_command("migrate", verbosity=0, interactive=False)
    code = f"RPB{entries}"
    brand = Brand.objects.filter(code=code).first()
    if brand is not None:
        hot_id = _sql("SELECT min(id) FROM accounts_account WHERE name = %s", [f"{code} hot"])[0][0]
        return {"brand": brand.pk, "hot": hot_id, "built": False, "seconds": 0.0}
    started = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, sql: str, params=None):
        began = time.perf_counter()
        out = _sql(sql, params)
        phases[name] = round(time.perf_counter() - began, 1)
        return out

    transactions = entries // 2
    accounts = max(20, transactions // 50)
    with transaction.atomic():
        # The rows below are consistent by construction (every transaction's two legs sum
        # to zero, every key exists): the per-row foreign-key checks and the deferred
        # "balanced" trigger (one query per entry at commit) are skipped for this
        # transaction only, as a bulk load does; they cost ~85% of the load at 1M entries.
        # Needs a superuser, as the bench runs. Bigger sort memory for the running balances.
        _sql("SET LOCAL session_replication_role = replica")
        _sql("SET LOCAL work_mem = '256MB'")
        brand = Brand.objects.create(
            code=code, name=code, legal_name=f"OOO {code}", tax_id="7707083893",
            invoice_prefix=code,
        )  # fmt: skip
        service = Service.objects.create(brand=brand, code="svc", name="svc", vat_rate=20)
        clearing = system_account_id("clearing", "RUB", channel="bank")
        revenue = system_account_id("revenue", "RUB", brand_id=brand.pk, service_id=service.pk)
        numbers = account_numbers_allocate(accounts + 1)
        ids = phase(
            "accounts",
            """
            WITH c AS (
                INSERT INTO accounts_client (kind, name, legal_name, tax_id, kpp, ogrn, email,
                    phone, address, external_ref, status, created_at, updated_at)
                SELECT 'individual', 'Reports bench ' || g, '', '', '', '', '', '', '',
                       %(code)s || '-' || g, 'active', now(), now()
                FROM generate_series(1, %(n)s) g RETURNING id
            ), numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM c),
            a AS (
                INSERT INTO accounts_account (number, kind, client_id, currency, name, status,
                    status_reason, credit_limit, balance, held, spent_day, spent_month,
                    channel, created_at, updated_at)
                SELECT num.number, 'client', numbered.id, 'RUB',
                       CASE WHEN numbered.n = 1 THEN %(code)s || ' hot' ELSE '' END,
                       'open', '', 0, 0, 0, 0, 0, '', now(), now()
                FROM numbered JOIN unnest(%(numbers)s::text[]) WITH ORDINALITY AS num(number, n)
                  USING (n)
                RETURNING id
            )
            INSERT INTO accounts_account_brands (account_id, brand_id)
            SELECT id, %(brand)s FROM a RETURNING account_id
            """,
            {"code": code, "n": accounts + 1, "numbers": numbers, "brand": brand.pk},
        )
        account_ids = sorted(row[0] for row in ids)
        hot_id, others = account_ids[0], account_ids[1:]
        # Transaction g: the hot account for the first ``hot``, else one of the others in
        # turn; i, the transaction's rank on its account, alternates payments of 1.00 to
        # 50.00 and accruals a little smaller; each account's transactions spread over
        # 2026 in order of g (so running balances follow time, and every account has
        # movements in every month, as the turnover sheet and aging would meet them).
        phase(
            "plan",
            """
            CREATE TEMP TABLE bench_txn AS
            SELECT g,
                   CASE WHEN g <= %(hot)s THEN %(hot_id)s
                        ELSE (%(others)s::bigint[])[1 + (g %% %(n_others)s)] END AS account_id,
                   CASE WHEN i %% 2 = 0 THEN 'payment' ELSE 'accrual' END AS kind,
                   (1 + (i %% 50))::numeric(18,2) - CASE WHEN i %% 2 = 0 THEN 0 ELSE 0.5 END
                       AS amount,
                   timestamptz '2026-01-01 00:00+03' + interval '364 days'
                       * (CASE WHEN g <= %(hot)s THEN (g - 1)::float / %(hot)s
                               ELSE (g - %(hot)s - 1)::float / (%(t)s - %(hot)s) END)
                       AS created_at
              FROM generate_series(1, %(t)s) g,
                   LATERAL (SELECT CASE WHEN g <= %(hot)s THEN g
                                        ELSE g / %(n_others)s END AS i) rank
            """,
            {"hot": hot, "hot_id": hot_id, "others": others, "n_others": len(others),
             "t": transactions},
        )  # fmt: skip
        top = _sql(
            "SELECT setval('ledger_transaction_id_seq', nextval('ledger_transaction_id_seq') + %s)",
            [transactions],
        )[0][0]
        base = top - transactions  # ids base + 1 .. top are this population's
        phase(
            "transactions",
            """
            INSERT INTO ledger_transaction (id, kind, account_id, amount, currency, brand_id,
                service_id, channel, subject_type, subject_id, metadata, memo, external_id,
                caller, request_id, created_at)
            SELECT %(base)s + g, kind, account_id, amount, 'RUB',
                   CASE WHEN kind = 'accrual' THEN %(brand)s END,
                   CASE WHEN kind = 'accrual' THEN %(service)s END,
                   CASE WHEN kind = 'payment' THEN 'bank' ELSE '' END, '', '', '{}', '', '',
                   'system:bench', '', created_at
              FROM bench_txn
            """,
            {"base": base, "brand": brand.pk, "service": service.pk},
        )
        phase(
            "entries",
            """
            INSERT INTO ledger_entry (transaction_id, account_id, amount, currency,
                                      balance_after, created_at)
            SELECT %(base)s + g, account_id, signed, 'RUB',
                   SUM(signed) OVER (PARTITION BY account_id ORDER BY created_at, g), created_at
              FROM (SELECT g, account_id, created_at,
                           CASE WHEN kind = 'payment' THEN amount ELSE -amount END AS signed
                      FROM bench_txn) t
            UNION ALL
            SELECT %(base)s + g, CASE WHEN kind = 'payment' THEN %(clearing)s ELSE %(revenue)s END,
                   CASE WHEN kind = 'payment' THEN -amount ELSE amount END, 'RUB', NULL,
                   created_at
              FROM bench_txn
            """,
            {"base": base, "clearing": clearing, "revenue": revenue},
        )
        phase(
            "balances",
            """
            UPDATE accounts_account a SET balance = s.balance
              FROM (SELECT account_id,
                           SUM(CASE WHEN kind = 'payment' THEN amount ELSE -amount END) AS balance
                      FROM bench_txn GROUP BY account_id) s
             WHERE a.id = s.account_id
            """,
        )
        _sql("DROP TABLE bench_txn")
        began = time.perf_counter()
    phases["commit"] = round(time.perf_counter() - began, 1)
    # VACUUM (not only ANALYZE): sets the visibility map, so that statements read the
    # covering index without visiting the table, as on a ledger autovacuum has caught up on.
    phase("vacuum", "VACUUM (ANALYZE) ledger_transaction")
    phase("vacuum_entries", "VACUUM (ANALYZE) ledger_entry")
    return {
        "brand": brand.pk,
        "hot": hot_id,
        "built": True,
        "seconds": round(time.perf_counter() - started, 1),
        "phases_s": phases,
    }


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
    }


def bench_statement(hot_id: int, calls: int) -> dict:
    """``statement()`` as the staff page calls it (with its chart), and the API's JSON body
    (``statement_json``, what ``GET /reports/statement/`` answers), for a day, a month and
    a year starting on random days; next to them in the same loop, the JSON as the API built
    it before orjson (``statement()``, ``statement_data``, DRF's ``JSONRenderer``: the same
    bytes); reference: the bare index range scan of the same period (same compiled date
    loader), without the transactions' kind and memo. A year (100,000 movements) is
    measured ``calls // 10`` times.

    Besides the wall times, the CPU each call took (``cpu``: this thread's CPU time plus
    the reporting connection's backend's, from /proc/PID/schedstat, in ns): on a machine
    shared with other work the wall time's p99 is mostly waiting for a core, the CPU time
    is what the call costs."""
    from django.db import connections
    from rest_framework.renderers import JSONRenderer

    from accounts.models import Account
    from core.api.scope import Scope
    from core.caller import SYSTEM
    from reports.api.views import statement_data, statement_json
    from reports.db import reporting_alias
    from reports.standard import statement
    from reports.standard.base import day_start, fetch_fast, next_day_start

    reporting = connections[reporting_alias()]
    reporting.ensure_connection()
    schedstat = f"/proc/{reporting.connection.info.backend_pid}/schedstat"

    def cpu() -> float:
        with open(schedstat) as stat:
            backend_ns = int(stat.read().split()[0])
        return time.thread_time() + backend_ns / 1e9

    def timed(walls: list[float], cpus: list[float], call, *args, **kwargs):
        began, cpu_began = time.perf_counter(), cpu()
        out = call(*args, **kwargs)
        walls.append(time.perf_counter() - began)
        cpus.append(cpu() - cpu_began)
        return out

    def drf_json(scope, account, first, last) -> bytes:
        report = statement(scope, account, first, last, chart=False)
        return JSONRenderer().render(statement_data(account, report))

    staff = Scope(brand_ids=None, partner_id=None, caller=SYSTEM)
    account = Account.objects.get(pk=hot_id)
    rng = random.Random(7)
    out = {}
    for label, span, n in (("day", 0, calls), ("month", 29, calls), ("year", 364, calls // 10)):
        times, api, drf, reference, rows = [], [], [], [], 0
        times_cpu, api_cpu, drf_cpu, reference_cpu = [], [], [], []
        for _ in range(n):
            first = date(2026, 1, 1) + timedelta(days=rng.randrange(0, min(330, 365 - span)))
            last = first + timedelta(days=span)
            report = timed(times, times_cpu, statement, staff, account, first, last)
            rows += len(report.rows)
            body = timed(api, api_cpu, statement_json, staff, account, first, last)
            before = timed(drf, drf_cpu, drf_json, staff, account, first, last)
            assert body == before, (first, last)
            timed(
                reference,
                reference_cpu,
                fetch_fast,
                "SELECT created_at, amount, balance_after FROM ledger_entry"
                " WHERE account_id = %(a)s AND balance_after IS NOT NULL"
                " AND created_at >= %(s)s AND created_at < %(e)s ORDER BY created_at, id",
                {"a": hot_id, "s": day_start(first), "e": next_day_start(last)},
            )
        out[label] = {
            **_percentiles(times),
            "cpu": _percentiles(times_cpu),
            "entries_per_statement": round(rows / n),
            "api_json": {**_percentiles(api), "cpu": _percentiles(api_cpu)},
            "api_json_drf_before": {**_percentiles(drf), "cpu": _percentiles(drf_cpu)},
            "reference_index_scan": {**_percentiles(reference), "cpu": _percentiles(reference_cpu)},
        }
    out["account_entries"] = _sql(
        "SELECT count(*) FROM ledger_entry WHERE account_id = %s", [hot_id]
    )[0][0]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def bench_turnover(rounds: int) -> dict:
    from core.api.scope import Scope
    from core.caller import SYSTEM
    from reports.standard import turnover

    staff = Scope(brand_ids=None, partner_id=None, caller=SYSTEM)
    times, reference, rows = [], [], 0
    for _ in range(rounds):
        began = time.perf_counter()
        sheet = turnover(
            staff, date_from=date(2026, 6, 1), date_to=date(2026, 6, 30), group_by="account"
        )
        times.append(time.perf_counter() - began)
        rows = len(sheet.rows)
    # The reference once: at 10M entries it reads the whole ledger (tens of seconds).
    began = time.perf_counter()
    _sql(
        """
        SELECT e.account_id,
               SUM(e.amount) FILTER (WHERE e.created_at < %(start)s),
               SUM(e.amount) FILTER (WHERE e.created_at >= %(start)s AND e.amount > 0),
               SUM(-e.amount) FILTER (WHERE e.created_at >= %(start)s AND e.amount < 0)
          FROM ledger_entry e JOIN accounts_account a ON a.id = e.account_id
         WHERE a.kind = 'client' AND e.created_at < %(end)s
         GROUP BY e.account_id
        """,
        {"start": "2026-06-01 00:00+03", "end": "2026-07-01 00:00+03"},
    )
    reference.append(time.perf_counter() - began)
    return {
        "seconds_median": round(statistics.median(times), 3),
        "rows": rows,
        "reference_from_ledger_s": round(statistics.median(reference), 3),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that over an exec from the forked parent,
    so a spawned child reported the benchmark's own peak (725 MB at 10M entries).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _export_child(rows: int, queue) -> None:
    _django()
    from reports.adhoc.compiler import adhoc_report
    from reports.exports import write_xlsx

    definition = {
        "dataset": "entries",
        "dimensions": ["entry", "account", "kind", "day"],
        "measures": [],
        "filters": [{"field": "account_kind", "op": "eq", "value": "client"}],
    }
    report = adhoc_report(definition, streamed=True)
    report.rows = itertools.islice(report.rows, rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "export.xlsx")
        began = time.perf_counter()
        written = write_xlsx(report, path)
        seconds = time.perf_counter() - began
        size = os.path.getsize(path)
    queue.put(
        {
            "rows": written,
            "seconds": round(seconds, 1),
            "rows_per_s": round(written / seconds),
            "file_mb": round(size / 1e6, 1),
            "peak_rss_mb": _peak_rss_mb(),
        }
    )


def _baseline_child(queue) -> None:
    _django()
    from reports.adhoc import compiler  # noqa: F401  (the same imports as the export)
    from reports.exports import write_xlsx  # noqa: F401

    queue.put({"peak_rss_mb": _peak_rss_mb()})


def bench_export(rows: int) -> dict:
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    child = spawn.Process(target=_baseline_child, args=(queue,))
    child.start()
    baseline = queue.get()
    child.join()
    child = spawn.Process(target=_export_child, args=(rows, queue))
    child.start()
    result = queue.get()
    child.join()
    return {**result, "reference_django_only_rss_mb": baseline["peak_rss_mb"]}


def _poster(account_ids, seconds, start, queue, seed) -> None:
    _django()
    from django.db import connection

    from ledger.services import payment_post

    rng = random.Random(seed)
    payment_post(account=account_ids[0], amount="1.00", channel="card")
    start.wait()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        payment_post(account=rng.choice(account_ids), amount="1.00", channel="card")
        done += 1
    connection.close()
    queue.put(done)


def _projector(stop, queue) -> None:
    _django()
    from reports.projections import projections_update

    runs = folded = 0
    while not stop.is_set():
        folded += projections_update().entries
        runs += 1
        stop.wait(1.0)
    queue.put({"runs": runs, "entries_folded": folded})


def bench_posting(brand_id: int, seconds: float, rounds: int = 2, workers: int = 2) -> dict:
    account_ids = [
        row[0]
        for row in _sql(
            "SELECT account_id FROM accounts_account_brands WHERE brand_id = %s LIMIT 5000",
            [brand_id],
        )
    ]
    from django.db import connection

    connection.close()
    spawn = mp.get_context("spawn")
    rates: dict[str, list[float]] = {"alone": [], "with_projector": []}
    projector_runs: list[dict] = []
    # Alternating rounds, so that the machine's other load weighs on both alike.
    for label in ("alone", "with_projector") * rounds:
        start = spawn.Barrier(workers + 1)
        queue, stop = spawn.Queue(), spawn.Event()
        procs = [
            spawn.Process(target=_poster, args=(account_ids, seconds, start, queue, n))
            for n in range(workers)
        ]
        projector = None
        if label == "with_projector":
            projector = spawn.Process(target=_projector, args=(stop, queue))
            projector.start()
        for proc in procs:
            proc.start()
        start.wait()
        done = sum(queue.get() for _ in procs)
        for proc in procs:
            proc.join()
        rates[label].append(round(done / seconds, 1))
        if projector is not None:
            stop.set()
            projector_runs.append(queue.get())
            projector.join()
    out = {
        label: {"postings_per_s": statistics.median(values), "rounds": values}
        for label, values in rates.items()
    }
    out["with_projector"]["projector"] = projector_runs
    out["ratio"] = round(
        out["with_projector"]["postings_per_s"] / out["alone"]["postings_per_s"], 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--hot", type=int, default=100_000, help="entries of the hot account")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--export-rows", type=int, default=EXPORT_ROWS)
    parser.add_argument(
        "--only",
        choices=["statement", "turnover"],
        help="populate, then measure the statements (or the turnover sheet) alone",
    )
    args = parser.parse_args()
    population = populate(args.entries, args.hot)
    from reports.projections import projections_rebuild, projections_update

    if args.only == "statement":
        statements = bench_statement(population["hot"], args.calls)
        print(json.dumps({"database": BENCH_URL.rsplit("/", 1)[-1], "statement": statements}))
        return
    began = time.perf_counter()
    rebuilt = projections_rebuild() if population["built"] else projections_update()
    projection_s = round(time.perf_counter() - began, 1)
    if args.only == "turnover":
        turnover = bench_turnover(5)
        print(json.dumps({"database": BENCH_URL.rsplit("/", 1)[-1], "turnover": turnover}))
        return
    result = {
        "database": BENCH_URL.rsplit("/", 1)[-1],
        "cpu_count": os.cpu_count(),
        "entries": _sql("SELECT count(*) FROM ledger_entry")[0][0],
        "population": population,
        "projection": {"seconds": projection_s, "entries": rebuilt.entries},
        "statement": bench_statement(population["hot"], args.calls),
        "turnover_month_per_account": bench_turnover(5),
        "xlsx_export": bench_export(args.export_rows),
        "posting": bench_posting(population["brand"], args.seconds),
        "targets": TARGETS,
    }
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
