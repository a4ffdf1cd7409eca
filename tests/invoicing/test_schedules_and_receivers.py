"""The q2 schedules of invoicing, and the cost of the allocation receiver on the posting path."""

from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from invoicing.receivers import allocate_on_posting
from invoicing.tasks import SCHEDULES
from ledger.services import accrual_post, payment_post


def test_ensure_schedules_creates_the_monthly_run_and_daily_penalties(db):
    call_command("ensure_schedules")
    call_command("ensure_schedules")  # idempotent
    by_name = {s.name: s for s in Schedule.objects.filter(name__startswith="invoicing:")}
    assert set(by_name) == {spec["name"] for spec in SCHEDULES}
    assert by_name["invoicing: monthly invoice run"].schedule_type == Schedule.MONTHLY
    assert by_name["invoicing: daily penalties"].func == "invoicing.tasks.penalties_daily"
    assert all(s.next_run is not None for s in by_name.values())


def test_allocation_receiver_costs_no_query_for_other_postings(account, brand):
    txn = accrual_post(account=account, amount="10.00", brand=brand)
    with CaptureQueriesContext(connection) as queries:
        allocate_on_posting(sender=None, transaction=txn)
    assert len(queries) == 0


def test_allocation_receiver_costs_one_query_without_open_invoices(account):
    txn = payment_post(account=account, amount="10.00", channel="bank")
    with CaptureQueriesContext(connection) as queries:
        allocate_on_posting(sender=None, transaction=txn)
    assert len(queries) == 1
    assert "invoicing_invoice" in queries[0]["sql"]
