"""Month-end benchmark: usage and meter readings in, invoices, PDFs and emails out.

    .venv/bin/python bench/month_end.py [--accounts 100000] [--workers 2] [--pdf-sample 3000]

Builds a population in a brand of its own with bench/invoice_run.py's set-based builder
(not timed): N clients with an email address, one account each, three subscriptions
per account (a flat fee, calls per unit, water on a tiered tariff). Then runs the month
of October 2026 through the real paths, each phase timed:

  usage_ingest     ``manage.py ingest_usage`` (a subprocess) of a CSV file with two
                   call records per account;
  meter_readings   ``manage.py ingest_meter_readings`` (a subprocess) of a CSV file with
                   two water readings per account (30 September, the baseline, and 28
                   October): the meters are installed by their first reading;
  invoice_run      ``manage.py qcluster`` with ``--workers`` processes, an invoice run in
                   issue mode for the brand and period, timed from the start to
                   ``completed``; issuing writes one outbox email per invoice in the
                   same transaction (``emails_enqueued``) and queues the PDF tasks
                   (INVOICING_PDF_ON_ISSUE, the production setting);
  pdfs             a MEASURED SAMPLE: when the run has completed, the cluster is stopped,
                   the first ``--pdf-sample`` invoices' PDF tasks are kept in the queue
                   (the rest are dropped), the cluster is started again and timed until
                   those PDFs are stored; the rate is extrapolated to every invoice;
  emails           the same sample: the PDF tasks queue the sending of their invoices'
                   emails (the outbox's q2 task, the PDF attached from storage, Django's
                   file-based email backend under /tmp), timed until they are sent;
                   extrapolated likewise.

``total_seconds`` adds the measured phases and the extrapolated PDFs and emails
(``total_seconds_measured`` without them). A sampler thread reads the resident memory
(RSS) of every process twice a second: this one, each command and each process of the
q2 cluster (with its children), and the PostgreSQL backends of the benchmark database;
each phase reports its peaks. ``pg_database_size`` is read before the month-end (after
the population) and after it. Checks the outcome: one invoice per account, the
ledger's accruals equal to the invoice totals, one outbox email per invoice, the
sample's PDFs stored and emails sent, no failures.

Uses INVOICE_BENCH_DATABASE_URL (default .../billing_inv), created and migrated on first
use; every run adds its own brand, so runs do not interfere (the database grows).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from q2cluster import q2_cluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from invoice_run import BENCH_URL, _django, _env, prepare  # noqa: E402

TARGET = 2500  # accounts/s for the invoice run itself
PERIOD = "2026-10"
MB = 1 << 20


class MemorySampler(threading.Thread):
    """Peak RSS per process, sampled every ``interval`` seconds, per phase."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.roots: dict[str, psutil.Process] = {"bench": psutil.Process()}
        self.backend_pids: set[int] = set()
        self.peaks: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        # CPU seconds (user + system) per process while counting: {pid: (kind, first, last)}
        self.cpu: dict[int, list] | None = None

    def watch(self, label: str, pid: int) -> None:
        with self.lock:
            self.roots[label] = psutil.Process(pid)

    def unwatch(self, label: str) -> None:
        with self.lock:
            self.roots.pop(label, None)

    def phase(self) -> dict[str, int]:
        """The peaks since the last call, and start again."""
        self.sample()
        with self.lock:
            peaks, self.peaks = self.peaks, {}
        return peaks

    def cpu_start(self) -> None:
        """Count CPU seconds from now on (``cpu_stop`` returns them): the q2 cluster's
        processes and the database's backends, each from the CPU it had at the start (a
        process that appears later from zero), read twice a second, so up to half a second
        of a process that exits in between is missed."""
        self._refresh_backends()
        with self.lock:
            self.cpu = {}
        self.sample()
        with self.lock:
            for entry in self.cpu.values():
                entry[1] = entry[2]

    def cpu_stop(self) -> dict[str, float]:
        self._refresh_backends()
        self.sample()
        with self.lock:
            counted, self.cpu = self.cpu or {}, None
        totals: dict[str, float] = {}
        for kind, first, last in counted.values():
            totals[kind] = totals.get(kind, 0.0) + last - first
        return totals

    def _cpu_note(self, kind: str, process: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            seconds = times.user + times.system
            with self.lock:
                if self.cpu is not None:
                    self.cpu.setdefault(process.pid, [kind, 0.0, 0.0])[2] = seconds

    def _note(self, name: str, rss: int) -> None:
        if rss > self.peaks.get(name, 0):
            self.peaks[name] = rss

    def sample(self) -> None:
        with self.lock:
            roots = dict(self.roots)
            backends = set(self.backend_pids)
        found: dict[str, int] = {}
        for label, root in roots.items():
            try:
                found[label] = root.memory_info().rss
                # This process's children are the commands and the cluster, watched apart.
                children = [] if label == "bench" else root.children(recursive=True)
            except psutil.Error:
                continue
            if label == "qcluster":
                self._cpu_note("q2", root)
            for number, child in enumerate(sorted(children, key=lambda p: p.pid)):
                with contextlib.suppress(psutil.Error):
                    found[f"{label} child {number + 1} ({child.name()})"] = child.memory_info().rss
                if label == "qcluster":
                    self._cpu_note("q2", child)
        backend_rss = []
        for pid in backends:
            with contextlib.suppress(psutil.Error):
                backend = psutil.Process(pid)
                backend_rss.append(backend.memory_info().rss)
                self._cpu_note("postgres", backend)
        with self.lock:
            for name, rss in found.items():
                self._note(name, rss)
            if backend_rss:
                self._note("postgres backend (largest)", max(backend_rss))

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()
            self._refresh_backends()

    def _refresh_backends(self) -> None:
        import psycopg

        try:
            with psycopg.connect(
                BENCH_URL.replace("postgres://", "postgresql://"), autocommit=True
            ) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                ).fetchall()
        except Exception:  # a sampler must never stop the benchmark
            return
        with self.lock:
            self.backend_pids = {row[0] for row in rows}


def _mb(peaks: dict[str, int]) -> dict[str, float]:
    return {name: round(rss / MB, 1) for name, rss in sorted(peaks.items())}


def database_size() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0]


def account_ids(brand_id: int) -> list[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id FROM accounts_account_brands WHERE brand_id = %s"
            " ORDER BY account_id",
            [brand_id],
        )
        return [row[0] for row in cursor.fetchall()]


def write_usage(path: Path, accounts: list[int], service: int, stamp: str) -> int:
    """Two call records per account on days of October (Moscow time)."""
    rng = random.Random(7)
    with path.open("w", buffering=1 << 20) as out:
        out.write("account,service,quantity,occurred_at,external_id\n")
        for account in accounts:
            for k in (1, 2):
                day = 1 + (account + k * 13) % 27
                out.write(
                    f"{account},{service},{rng.randrange(1, 24000) / 100},"
                    f"2026-10-{day:02d}T10:{k:02d}:00+03:00,me{stamp}-{account}-{k}\n"
                )
    return 2 * len(accounts)


def write_readings(path: Path, accounts: list[int], service: int, stamp: str) -> int:
    """Two cumulative water readings per account: the baseline and October's."""
    rng = random.Random(11)
    with path.open("w", buffering=1 << 20) as out:
        out.write("account,service,reading,taken_at,external_id\n")
        for account in accounts:
            base = rng.randrange(0, 900_000) / 1000
            used = rng.randrange(1_000, 40_000) / 1000
            out.write(
                f"{account},{service},{base},2026-09-30T12:00:00+03:00,mr{stamp}-{account}-0\n"
            )
            out.write(
                f"{account},{service},{base + used:.3f},2026-10-28T12:00:00+03:00,"
                f"mr{stamp}-{account}-1\n"
            )
    return 2 * len(accounts)


def run_command(sampler: MemorySampler, label: str, args: list[str]) -> tuple[float, dict]:
    """A manage.py command as a subprocess, its RSS watched; (the process's wall seconds,
    its JSON output, whose ``seconds`` are the ingest's own, Django's start-up aside)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args, "--json"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler.watch(label, process.pid)
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    sampler.unwatch(label)
    if process.returncode != 0:
        raise SystemExit(f"{label} failed ({process.returncode}): {err[-2000:]}")
    return seconds, json.loads(out)


def _phase(seconds: float, count: int, unit: str, sampler: MemorySampler, **extra) -> dict:
    return {
        "seconds": round(seconds, 2),
        unit: count,
        f"{unit}_per_s": round(count / seconds, 1) if seconds else None,
        **extra,
        "peak_rss_mb": _mb(sampler.phase()),
    }


def invoice_run(population: dict, sampler: MemorySampler, workers: int, chunk: int) -> dict:
    from django.db import connection
    from django_q.models import OrmQ

    from invoicing import services
    from invoicing.models import InvoiceRun

    OrmQ.objects.all().delete()  # leftovers of earlier runs would be timed with this one
    sampler.phase()
    with q2_cluster(_env(), workers) as cluster:
        sampler.watch("qcluster", cluster.pid)
        sampler.phase()  # the cluster's start-up is not part of the run
        sampler.cpu_start()
        started = time.perf_counter()
        run = services.invoice_run_start(
            period=PERIOD, brand=population["brand_id"], chunk_size=chunk
        )
        while True:
            time.sleep(0.1)
            run.refresh_from_db()
            if run.status in (InvoiceRun.Status.COMPLETED, InvoiceRun.Status.FAILED):
                break
        seconds = time.perf_counter() - started
        cpu = sampler.cpu_stop()
        sampler.unwatch("qcluster")
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM notifications_emailmessage m
               JOIN invoicing_invoice i ON m.subject_type = 'invoice'
                AND m.subject_id = i.id::text
               WHERE i.run_id = %s""",
            [run.pk],
        )
        emails = cursor.fetchone()[0]
    return {
        "run": run,
        "result": _phase(
            seconds,
            run.processed,
            "accounts",
            sampler,
            status=run.status,
            invoices_issued=run.invoices_issued,
            failed=run.failed,
            emails_enqueued=emails,
            # CPU seconds per 1,000 accounts of the q2 cluster's processes and of the
            # database's backends: what a loaded machine distorts less than the wall clock.
            cpu_seconds_per_1000_accounts={
                kind: round(cpu.get(kind, 0.0) * 1000 / max(run.processed, 1), 3)
                for kind in ("q2", "postgres")
            },
            load_average=[round(x, 2) for x in os.getloadavg()],
        ),
    }


def _deliver_tasks_keep(sample: int) -> tuple[list[int], int]:
    """Keep the first PDF tasks covering ``sample`` invoices (unlocked), drop the rest."""
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import OrmQ

    kept_ids, invoices, dropped = [], [], 0
    for task in OrmQ.objects.order_by("id"):
        if task.func() == "invoicing.tasks.invoice_documents_deliver" and len(invoices) < sample:
            kept_ids.append(task.pk)
            invoices.extend(task.args()[0])
        else:
            task.delete()
            dropped += 1
    OrmQ.objects.filter(pk__in=kept_ids).update(lock=timezone.now() - timedelta(seconds=1))
    return invoices, dropped


def documents(population: dict, run, sampler: MemorySampler, workers: int, sample: int) -> dict:
    from invoicing.models import Invoice
    from notifications.models import EmailMessage

    invoice_ids, dropped = _deliver_tasks_keep(sample)
    stored_before = Invoice.objects.filter(pk__in=invoice_ids).exclude(pdf="").count()
    messages = EmailMessage.objects.filter(
        subject_type="invoice", subject_id__in=[str(pk) for pk in invoice_ids]
    )
    sampler.phase()
    # The clock starts before the cluster: its workers render while it is still starting,
    # so a small sample could be done before a clock started afterwards (a rate of
    # thousands a second). The start-up counts in the PDF seconds (a lower bound).
    started = time.perf_counter()
    with q2_cluster(_env(), workers) as cluster:
        sampler.watch("qcluster", cluster.pid)
        sampler.phase()
        deadline = started + 3600
        while Invoice.objects.filter(pk__in=invoice_ids, pdf="").exists():
            if time.perf_counter() > deadline:
                break
            time.sleep(0.25)
        pdf_seconds = time.perf_counter() - started
        pdf_peaks = sampler.phase()
        mail_started = time.perf_counter()
        while messages.exclude(status=EmailMessage.Status.SENT).exists():
            if time.perf_counter() > deadline:
                break
            time.sleep(0.25)
        mail_seconds = time.perf_counter() - mail_started
        sampler.unwatch("qcluster")
    stored = Invoice.objects.filter(pk__in=invoice_ids).exclude(pdf="").count()
    sent = messages.filter(status=EmailMessage.Status.SENT).count()
    invoices = run.invoices_issued
    pdf_rate = (stored - stored_before) / pdf_seconds if pdf_seconds else 0
    mail_rate = sent / mail_seconds if mail_seconds else 0
    return {
        "pdfs": {
            "measured": "sample, rate extrapolated to every invoice",
            "sample_invoices": len(invoice_ids),
            "stored_before_the_sample": stored_before,
            "seconds": round(pdf_seconds, 2),
            "pdfs_stored": stored,
            "pdfs_per_s": round(pdf_rate, 1),
            "extrapolated_seconds_all": round(invoices / pdf_rate, 1) if pdf_rate else None,
            "queued_pdf_tasks_dropped": dropped,
            "peak_rss_mb": _mb(pdf_peaks),
        },
        "emails": {
            "measured": "sample, rate extrapolated to every invoice",
            "backend": _env()["EMAIL_BACKEND"],
            "seconds": round(mail_seconds, 2),
            "emails_sent": sent,
            "emails_per_s": round(mail_rate, 1),
            "extrapolated_seconds_all": round(invoices / mail_rate, 1) if mail_rate else None,
            "peak_rss_mb": _mb(sampler.phase()),
        },
        "_complete": stored == len(invoice_ids) and sent == len(invoice_ids),
    }


def checks(population: dict, run, emails_enqueued: int, usage: dict, readings: dict) -> dict:
    from django.db.models import Count, Sum

    from invoicing.models import Invoice
    from ledger.models import Transaction

    totals = Invoice.objects.filter(run=run).aggregate(n=Count("id"), total=Sum("total"))
    accruals = Transaction.objects.filter(
        kind="accrual", subject_type="invoice", brand_id=population["brand_id"]
    ).aggregate(n=Count("id"), total=Sum("amount"))
    return {
        "usage_all_accepted": usage["accepted"] == usage["_expected"] and not usage["errors"],
        "readings_all_accepted": readings["accepted"] == readings["_expected"]
        and not readings["errors"],
        "one_invoice_per_account": totals["n"] == population["accounts"],
        "accruals_equal_invoice_totals": accruals["n"] == totals["n"]
        and accruals["total"] == totals["total"],
        "one_outbox_email_per_invoice": emails_enqueued == totals["n"],
        "no_failures": run.failed == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--pdf-sample", type=int, default=3000)
    args = parser.parse_args()
    mail_dir = Path(tempfile.mkdtemp(prefix="month-end-mail-"))
    os.environ.update(
        {
            "INVOICING_PDF_ON_ISSUE": "1",
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(mail_dir),
            "BENCH_PDFS": "1",
        }
    )
    sampler = MemorySampler()
    sampler.start()
    population = prepare(args.accounts, PERIOD, usage_wanted=False, emails=True)
    _django()
    sampler.phase()
    ids = account_ids(population["brand_id"])
    size_before = database_size()
    phases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        usage_csv, readings_csv = Path(tmp) / "usage.csv", Path(tmp) / "readings.csv"
        expected_usage = write_usage(
            usage_csv, ids, population["services"]["calls"], population["stamp"]
        )
        expected_readings = write_readings(
            readings_csv, ids, population["services"]["water"], population["stamp"]
        )
        sampler.phase()
        seconds, usage = run_command(sampler, "ingest_usage", ["ingest_usage", str(usage_csv)])
        usage["_expected"] = expected_usage
        phases["usage_ingest"] = _phase(
            usage["seconds"],
            usage["accepted"],
            "records",
            sampler,
            errors=usage["errors"],
            process_seconds=round(seconds, 2),
        )
        seconds, readings = run_command(
            sampler, "ingest_meter_readings", ["ingest_meter_readings", str(readings_csv)]
        )
        readings["_expected"] = expected_readings
        phases["meter_readings"] = _phase(
            readings["seconds"],
            readings["accepted"],
            "records",
            sampler,
            errors=readings["errors"],
            process_seconds=round(seconds, 2),
        )
    outcome = invoice_run(population, sampler, args.workers, args.chunk_size)
    run = outcome["run"]
    phases["invoice_run"] = outcome["result"]
    docs = documents(population, run, sampler, args.workers, args.pdf_sample)
    phases["pdfs"], phases["emails"] = docs["pdfs"], docs["emails"]
    size_after = database_size()
    sampler.stopped.set()
    result_checks = checks(
        population, run, phases["invoice_run"]["emails_enqueued"], usage, readings
    )
    result_checks["sample_pdfs_stored_and_emails_sent"] = docs["_complete"]
    measured = sum(
        phases[name]["seconds"] for name in ("usage_ingest", "meter_readings", "invoice_run")
    )
    extrapolated = [phases[name]["extrapolated_seconds_all"] for name in ("pdfs", "emails")]
    total = measured + sum(extrapolated) if all(extrapolated) else None
    print(
        json.dumps(
            {
                "benchmark": "month_end",
                "database": BENCH_URL.rsplit("/", 1)[-1],
                "cpu_count": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "accounts": population["accounts"],
                "subscriptions": population["subscriptions"],
                "workers": args.workers,
                "chunk_size": args.chunk_size,
                "period": PERIOD,
                "population_setup_seconds": population["setup_seconds"],
                "database_mb_before": round(size_before / MB, 1),
                "database_mb_after": round(size_after / MB, 1),
                "phases": phases,
                "total_seconds_measured": round(measured, 1),
                "total_seconds": round(total, 1) if total else None,
                "total_accounts_per_s": round(population["accounts"] / total, 1) if total else None,
                "target_invoice_run_accounts_per_s": TARGET,
                "meets_target": phases["invoice_run"]["accounts_per_s"] >= TARGET,
                "checks": result_checks,
            },
            indent=2,
        )
    )
    return 0 if all(result_checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
