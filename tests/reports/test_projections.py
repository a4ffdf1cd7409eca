"""The projector: projections equal the ledger after any postings, in any commit order.

Every test here commits for real (the projector runs its own REPEATABLE READ
transactions and records the snapshot it read in), hence ``transaction=True``.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django_q.models import Schedule
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ledger.exceptions import DomainError
from ledger.models import Transaction
from ledger.services import (
    accrual_post,
    debit_post,
    payment_post,
    refund_post,
    transaction_reverse,
    transfer_post,
)
from reports import projections
from reports.models import DailyTurnover, ProjectionState
from reports.projections import Snapshot, projections_check, projections_update
from reports.selectors import projection_lag
from tests.factories import AccountFactory, BrandFactory, ServiceFactory
from tests.reports.expected import ledger_figures, projection_figures

pytestmark = pytest.mark.django_db(transaction=True)

MSK = ZoneInfo("Europe/Moscow")
D = Decimal


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    frozen = Clock(datetime(2026, 3, 14, 12, 0, tzinfo=MSK))
    with mock.patch("ledger.services.timezone.now", new=frozen):
        yield frozen


@pytest.fixture
def book():
    brand = BrandFactory()
    other = BrandFactory()
    return {
        "brand": brand,
        "other": other,
        "service": ServiceFactory(brand=brand),
        "accounts": [AccountFactory(brands=[brand]) for _ in range(3)],
    }


def assert_projections_equal_ledger() -> None:
    assert projection_figures() == ledger_figures()
    assert projections_check() == []


def test_projections_update_sums_a_hand_computed_ledger(book, clock):
    a, b, _c = book["accounts"]
    brand, service = book["brand"], book["service"]
    payment_post(account=a, amount="100.00", channel="bank")
    debit_post(account=a, amount="30.00", brand=brand, service=service)
    clock.now += timedelta(days=1)  # 15 March
    accrual_post(account=a, amount="12.50", brand=brand, service=service)
    transfer_post(from_account=a, to_account=b, amount="7.50")

    run = projections_update()
    assert run.rebuilt and run.transactions == 4 and run.entries == 8

    daily = {
        (r.day.day, r.kind): (r.credit, r.debit, r.entries) for r in DailyTurnover.objects.all()
    }
    assert daily == {
        (14, "payment"): (D("100.00"), D("0.00"), 1),
        (14, "debit"): (D("0.00"), D("30.00"), 1),
        (15, "accrual"): (D("0.00"), D("12.50"), 1),
        (15, "transfer"): (D("7.50"), D("7.50"), 2),  # out of a, into b
    }
    figures = projection_figures()
    # a: March in 100.00, out 30 + 12.50 + 7.50 (no brand on the payment and transfer).
    assert figures["month"][(a.pk, clock.now.date().replace(day=1), None, "RUB")] == (
        D("100.00"),
        D("7.50"),
        2,
    )
    assert figures["month"][(a.pk, clock.now.date().replace(day=1), brand.pk, "RUB")] == (
        D("0.00"),
        D("42.50"),
        2,
    )
    assert_projections_equal_ledger()

    # Later postings are folded in by the next run, once; a run with nothing new adds nothing.
    payment_post(account=b, amount="5.00", channel="card")
    run = projections_update()
    assert (run.rebuilt, run.transactions, run.entries) == (False, 1, 2)
    assert projections_update().entries == 0
    assert_projections_equal_ledger()
    state = ProjectionState.objects.get()
    assert (state.transactions, state.entries) == (5, 10)


@hypothesis_settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["payment", "debit", "accrual", "transfer", "refund", "reverse"]),
            st.integers(0, 2),
            st.integers(0, 2),
            st.decimals(min_value=D("0.01"), max_value=D("500.00"), places=2),
            st.integers(0, 40),  # hours later
            st.booleans(),  # run the projector after this step
        ),
        min_size=1,
        max_size=15,
    )
)
def test_projections_equal_ledger_aggregates_after_random_postings(book, clock, steps):
    accounts, brand, service = book["accounts"], book["brand"], book["service"]
    for kind, first, second, amount, hours, project in steps:
        clock.now += timedelta(hours=hours)
        account = accounts[first]
        try:
            if kind == "payment":
                payment_post(account=account, amount=amount, channel="bank")
            elif kind == "debit":
                debit_post(account=account, amount=amount, brand=brand, service=service)
            elif kind == "accrual":
                accrual_post(account=account, amount=amount, brand=book["other"])
            elif kind == "transfer" and first != second:
                transfer_post(from_account=account, to_account=accounts[second], amount=amount)
            elif kind == "refund":
                refund_post(account=account, amount=amount, channel="card")
            elif kind == "reverse":
                latest = Transaction.objects.filter(
                    reversal_of__isnull=True, reversed_by__isnull=True
                ).exclude(kind="reversal")
                target = latest.order_by("-id").first()
                if target is not None:
                    transaction_reverse(transaction_obj=target, reason="test")
        except DomainError:
            pass  # refused postings change nothing, in the ledger or the projections
        if project:
            projections_update(batch_size=2)
    projections_update(batch_size=2)
    assert_projections_equal_ledger()


def test_rebuild_is_idempotent_and_the_next_update_adds_nothing(book, clock):
    a, b, _ = book["accounts"]
    for n in range(5):
        clock.now += timedelta(days=n)
        payment_post(account=a, amount=f"{n + 1}0.00", channel="bank")
        accrual_post(account=b, amount="3.00", brand=book["brand"])
    projections_update()
    first = projection_figures()
    call_command("rebuild_reports")
    assert projection_figures() == first
    call_command("rebuild_reports")
    assert projection_figures() == first
    assert projections_update().entries == 0
    assert projection_figures() == first == ledger_figures()


def test_check_reports_finds_a_tampered_projection_and_rebuild_repairs_it(book, clock):
    payment_post(account=book["accounts"][0], amount="10.00", channel="bank")
    projections_update()
    call_command("check_reports")
    DailyTurnover.objects.update(credit=D("11.00"))
    with pytest.raises(SystemExit) as exited:
        call_command("check_reports")
    assert exited.value.code == 1
    call_command("rebuild_reports")
    call_command("check_reports")
    assert DailyTurnover.objects.get().credit == D("10.00")


def test_a_posting_that_commits_after_a_later_one_is_not_skipped(book):
    """The posting that took the lower id commits last: an id watermark would lose it."""
    a, b, c = book["accounts"]
    payment_post(account=c, amount="1.00", channel="bank")  # the clearing account exists
    projections_update()
    posted, release = threading.Event(), threading.Event()
    early: dict = {}

    def slow_posting():
        try:
            with transaction.atomic():
                early["txn"] = payment_post(account=a, amount="1.00", channel="bank")
                posted.set()
                assert release.wait(30)
        finally:
            connection.close()

    worker = threading.Thread(target=slow_posting)
    worker.start()
    assert posted.wait(30)
    late = payment_post(account=b, amount="2.00", channel="bank")
    assert late.pk > early["txn"].pk
    run = projections_update()
    assert (run.transactions, run.entries) == (1, 2)  # only the committed one
    lag = projection_lag()
    assert lag.pending_transactions == 0  # the open one is not committed: nobody sees it
    release.set()
    worker.join(30)
    assert projection_lag().pending_transactions == 1
    run = projections_update()
    assert (run.transactions, run.entries) == (1, 2)  # the early one, now committed
    assert projection_lag().pending_transactions == 0
    assert_projections_equal_ledger()


def test_concurrent_postings_while_the_projector_runs_lose_nothing(book):
    accounts = book["accounts"]
    projections_update()
    stop = threading.Event()
    errors: list[BaseException] = []
    runs: list[int] = []

    def poster(account, count):
        try:
            for n in range(count):
                payment_post(account=account, amount=f"{n % 7 + 1}.00", channel="bank")
                debit_post(account=account, amount="0.50", brand=book["brand"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def projector():
        try:
            while not stop.is_set():
                runs.append(projections_update(batch_size=3).entries)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poster, args=(acc, 25)) for acc in accounts]
    watcher = threading.Thread(target=projector)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    watcher.join(120)
    assert not errors
    assert len(runs) > 1
    projections_update()
    assert Transaction.objects.count() == 150
    assert_projections_equal_ledger()


def test_catch_up_after_downtime_goes_in_batches(book, clock):
    projections_update()
    for n in range(6):
        payment_post(account=book["accounts"][n % 3], amount="1.00", channel="bank")
    assert projection_lag().pending_transactions == 6
    run = projections_update(batch_size=1)
    assert run.batches >= 3 and run.caught_up and run.transactions == 6
    assert projection_lag().pending_transactions == 0
    assert_projections_equal_ledger()


def test_a_second_projector_finds_the_lock_taken_and_does_nothing(book):
    payment_post(account=book["accounts"][0], amount="1.00", channel="bank")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [projections.LOCK_KEY])
        run = projections_update()
        assert run.busy and run.entries == 0
        assert not ProjectionState.objects.exists()
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [projections.LOCK_KEY])
    finally:
        other.close()
    assert projections_update().entries == 2


def test_the_projector_refuses_to_run_inside_a_transaction(book):
    with transaction.atomic(), pytest.raises(RuntimeError):
        projections_update()


def test_snapshot_cut_keeps_only_transactions_below_the_bound():
    snap = Snapshot.parse("100:120:105,110,118")
    assert snap.text() == "100:120:105,110,118"
    assert Snapshot.parse("100:100:").xip == ()
    assert snap.cut(112) == Snapshot(100, 112, (105, 110))
    assert snap.cut(90) == Snapshot(90, 90, ())


def test_ensure_schedules_follows_the_ledger_every_minute():
    call_command("ensure_schedules")
    schedule = Schedule.objects.get(name="reports: follow the ledger")
    assert schedule.func == "reports.tasks.reports_project"
    assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 1)
