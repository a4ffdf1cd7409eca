"""Invoice runs through django-q2 in synchronous mode: totals, ledger, reruns, drafts,
per-account failures."""

from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.test import override_settings

from accounts.models import Account
from invoicing import services
from invoicing.ingest import usage_ingest_records
from invoicing.models import BillingPeriod, Invoice, InvoiceRun, InvoiceRunFailure
from ledger.models import Transaction
from tests.invoicing.population import build_population

pytestmark = pytest.mark.django_db(transaction=True)

SYNC_Q = override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True})


def run_sync(**kwargs) -> InvoiceRun:
    kwargs.setdefault("period", "2026-01")
    kwargs.setdefault("chunk_size", 37)
    with SYNC_Q:
        run = services.invoice_run_start(**kwargs)
    run.refresh_from_db()
    return run


def ledger_accruals() -> Decimal:
    return Transaction.objects.filter(kind="accrual", subject_type="invoice").aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)


def test_invoice_run_bills_every_account_exactly(transactional_db):
    population = build_population(250)
    run = run_sync()
    assert run.status == InvoiceRun.Status.COMPLETED
    assert (run.total, run.processed, run.failed) == (250, 250, 0)
    assert run.chunks_done == run.chunks_total == 7
    invoices = {
        (inv.account_id, inv.brand_id): inv
        for inv in Invoice.objects.filter(period__code="2026-01")
    }
    assert set(invoices) == set(population.expected)
    for key, expected in population.expected.items():
        invoice = invoices[key]
        assert invoice.total == expected, key
        assert invoice.status == Invoice.Status.ISSUED
        assert invoice.subtotal + invoice.vat == invoice.total
        assert invoice.vat == invoice.lines.aggregate(v=Sum("vat"))["v"]
        assert invoice.total == invoice.lines.aggregate(t=Sum("amount"))["t"]
    assert run.invoices_issued == len(population.expected)
    # Every invoice is one accrual in the ledger, and each account owes its invoices.
    assert ledger_accruals() == population.expected_total
    for account in population.accounts:
        account.refresh_from_db()
        owed = sum(v for (acc, _b), v in population.expected.items() if acc == account.pk)
        assert account.balance == -owed
    txn = Transaction.objects.get(pk=invoices[next(iter(invoices))].ledger_transaction_id)
    assert (txn.subject_type, txn.caller) == ("invoice", "system:invoicing")
    assert BillingPeriod.objects.get(code="2026-01").status == BillingPeriod.Status.CLOSED


def test_invoice_run_again_bills_nothing_twice(transactional_db):
    population = build_population(60)
    first = run_sync()
    count, total = Invoice.objects.count(), ledger_accruals()
    second = run_sync()
    assert second.status == InvoiceRun.Status.COMPLETED
    assert second.invoices_issued == 0
    assert Invoice.objects.count() == count == len(population.expected)
    assert ledger_accruals() == total == population.expected_total
    assert first.invoices_issued == count


def test_invoice_run_again_bills_only_what_was_not_billed(transactional_db):
    population = build_population(20)
    # The first run bills one brand only; an account refused then is billed on the rerun.
    refused = population.accounts[0]  # takes both brands
    Account.objects.filter(pk=refused.pk).update(status=Account.Status.BLOCKED)
    Account.objects.filter(pk=refused.pk).update(status=Account.Status.CLOSED)
    first = run_sync(brand=population.brand)
    assert first.failed == 1
    assert BillingPeriod.objects.get(code="2026-01").status == BillingPeriod.Status.OPEN
    Account.objects.filter(pk=refused.pk).update(status=Account.Status.OPEN)
    before = set(Invoice.objects.values_list("pk", flat=True))
    second = run_sync()
    new = {(inv.account_id, inv.brand_id) for inv in Invoice.objects.exclude(pk__in=before)}
    expected_new = {k for k in population.expected if k[1] == population.other_brand.pk} | {
        (refused.pk, population.brand.pk)
    }
    assert new == expected_new
    assert second.invoices_issued == len(expected_new)
    assert ledger_accruals() == population.expected_total


def test_invoice_numbers_gap_free_per_brand_and_year(transactional_db):
    population = build_population(45)
    run_sync(chunk_size=10)
    for brand in (population.brand, population.other_brand):
        numbers = sorted(
            Invoice.objects.filter(brand=brand).values_list("number", flat=True),
        )
        year = numbers[0].split("-")[1]
        assert numbers == [
            f"{brand.invoice_prefix}-{year}-{n:06d}" for n in range(1, len(numbers) + 1)
        ]
        # Ascending with issue order.
        by_id = list(
            Invoice.objects.filter(brand=brand).order_by("pk").values_list("number", flat=True)
        )
        assert by_id == numbers


def test_invoice_run_draft_then_approve(transactional_db):
    population = build_population(30)
    run = run_sync(mode="draft")
    assert run.status == InvoiceRun.Status.DRAFT_READY
    drafts = Invoice.objects.filter(run=run)
    assert drafts.count() == len(population.expected)
    assert set(drafts.values_list("status", flat=True)) == {"draft"}
    assert not drafts.exclude(number=None).exists()
    assert ledger_accruals() == 0
    with SYNC_Q:
        services.invoice_run_approve(run=run)
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.COMPLETED
    assert (run.processed, run.total) == (len({a for a, _ in population.expected}),) * 2
    assert set(Invoice.objects.filter(run=run).values_list("status", flat=True)) == {"issued"}
    assert ledger_accruals() == population.expected_total
    with pytest.raises(services.RunNotApprovable):
        services.invoice_run_approve(run=run)


def test_invoice_run_after_a_draft_run_bills_each_account_once(transactional_db):
    """The second run replaces the first one's drafts (see test_draft_runs.py); approving
    the first afterwards issues nothing more."""
    population = build_population(10)
    draft = run_sync(mode="draft")
    issue = run_sync(mode="issue")
    assert (issue.invoices_issued, issue.failed) == (len(population.expected), 0)
    with SYNC_Q:
        services.invoice_run_approve(run=draft)
    draft.refresh_from_db()
    assert (draft.status, draft.total) == (InvoiceRun.Status.COMPLETED, 0)  # nothing left
    assert Invoice.objects.filter(status="issued").count() == len(population.expected)
    assert ledger_accruals() == population.expected_total


def test_invoice_run_records_a_refused_account_and_carries_on(transactional_db):
    population = build_population(40)
    closed = population.accounts[7]
    Account.objects.filter(pk=closed.pk).update(status=Account.Status.CLOSED)
    run = run_sync(chunk_size=10)
    assert run.status == InvoiceRun.Status.COMPLETED
    assert (run.processed, run.failed) == (40, 1)
    [failure] = InvoiceRunFailure.objects.filter(run=run)
    assert (failure.account_id, failure.code) == (closed.pk, "account_closed")
    assert not Invoice.objects.filter(account=closed).exists()
    expected = {k: v for k, v in population.expected.items() if k[0] != closed.pk}
    assert ledger_accruals() == sum(expected.values())
    assert Invoice.objects.count() == len(expected)


def test_invoice_run_isolates_an_account_that_breaks_the_set_based_path(transactional_db):
    population = build_population(12)
    broken = population.accounts[3]
    unit_service = broken.subscriptions.get(tariff__kind="per_unit").service
    # 10^13 units at 2.35 overflows an invoice total (NUMERIC(18,2)): the chunk's single
    # INSERT fails, the chunk retries account by account, and only this one fails.
    result = usage_ingest_records(
        records=[
            {
                "account": broken.pk,
                "service": unit_service.pk,
                "quantity": "99999999999999",
                "occurred_at": "2026-01-15T10:00:00+03:00",
                "external_id": "huge",
            }
        ]
    )
    assert result.accepted == 1
    run = run_sync(chunk_size=12)
    assert (run.status, run.processed, run.failed) == (InvoiceRun.Status.COMPLETED, 12, 1)
    [failure] = InvoiceRunFailure.objects.filter(run=run)
    assert failure.account_id == broken.pk
    assert not Invoice.objects.filter(account=broken).exists()
    assert Invoice.objects.count() == len(population.expected) - 1


def test_invoice_run_chunk_task_delivered_twice_does_the_work_once(transactional_db):
    population = build_population(15)
    run = services.invoice_run_start(period="2026-01", chunk_size=5)  # not started: no cluster
    services.invoice_run_plan(run_id=run.pk)
    chunks = list(run.chunks.order_by("index"))
    for chunk in chunks + chunks:
        services.invoice_run_chunk_process(chunk_id=chunk.pk)
    run.refresh_from_db()
    assert (run.status, run.processed, run.chunks_done) == ("completed", 15, 3)
    assert Invoice.objects.count() == len(population.expected)
    assert ledger_accruals() == population.expected_total


def test_invoice_run_unique_constraint_refuses_a_second_invoice(transactional_db):
    population = build_population(1)
    run_sync()
    invoice = Invoice.objects.first()
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO invoicing_invoice (account_id, brand_id, period_id, kind, status,
               currency, subtotal, vat, total, paid_amount, rated_at, inputs_checked_at, pdf)
               SELECT account_id, brand_id, period_id, 'invoice', 'draft', currency, subtotal,
                      vat, total, 0, rated_at, inputs_checked_at, ''
               FROM invoicing_invoice WHERE id = %s""",
            [invoice.pk],
        )
    assert Invoice.objects.count() == len(population.expected)
