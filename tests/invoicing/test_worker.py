"""A run through a real django-q2 cluster (a ``manage.py qcluster`` subprocess on the test
database), killed mid-run: a second run completes it with exactly one invoice per
(account, brand, period), and resuming the first finds nothing left to bill."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.test import override_settings

from core.db import as_database_owner
from invoicing import services
from invoicing.models import Invoice, InvoiceRun
from ledger.models import Transaction
from tests.invoicing.population import build_population

ROOT = Path(__file__).resolve().parents[2]


def cluster_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the cluster")


def blocked_backends() -> int:
    # The cluster's sessions are the owner's: their wait events are visible to the owner.
    with as_database_owner(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_killed_worker_then_second_run_bills_each_account_once():
    population = build_population(200)
    blocker = population.accounts[150]  # in the eighth chunk of twenty
    # Another session holds the row lock of one account: the worker billing its chunk
    # blocks inside the chunk's transaction (invoices inserted, accrual waiting).
    holder = psycopg.connect(cluster_database_url().replace("postgres://", "postgresql://"))
    holder.execute("SELECT 1 FROM accounts_account WHERE id = %s FOR UPDATE", [blocker.pk])
    env = {**os.environ, "DATABASE_URL": cluster_database_url(), "Q_WORKERS": "2"}
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        run = services.invoice_run_start(period="2026-01", chunk_size=20)
        wait_for(lambda: blocked_backends() > 0 and Invoice.objects.exists())
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait()
        holder.rollback()
        holder.close()
    # The killed worker's connection is gone or about to go: its transaction rolls back.
    with as_database_owner(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.RUNNING
    assert 0 < run.processed < run.total == 200
    assert not Invoice.objects.filter(account=blocker).exists()
    billed_before = Invoice.objects.count()
    assert 0 < billed_before < len(population.expected)

    with override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True}):
        second = services.invoice_run_start(period="2026-01", chunk_size=20)
        second.refresh_from_db()
        assert second.status == InvoiceRun.Status.COMPLETED
        assert second.invoices_issued == len(population.expected) - billed_before
        services.invoice_run_resume(run=run)
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.COMPLETED

    keys = Counter(Invoice.objects.values_list("account_id", "brand_id", "period_id"))
    assert len(keys) == len(population.expected)
    assert set(keys.values()) == {1}
    totals = {(i.account_id, i.brand_id): i.total for i in Invoice.objects.all()}
    assert totals == population.expected
    accrued = Transaction.objects.filter(kind="accrual").aggregate(t=Sum("amount"))["t"]
    assert accrued == population.expected_total
