"""A run of a period that another run left drafts for (same accounts, brand and period).

A draft is a proposal nobody posted: the newer run re-rates the accounts and replaces the
drafts of other runs with its own invoices (issued or drafts, per its mode), so it bills
with what is known now, and the older run, approved later, issues what is still its own.
A draft that another transaction is acting on right now (an approval issuing it, a void)
is left to it, and the run records the account as skipped (``draft_in_other_run``,
counted in ``failed``) instead of silently billing nothing.
"""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, transaction

from invoicing import services
from invoicing.ingest import usage_ingest_records
from invoicing.models import Invoice, InvoiceRun, InvoiceRunFailure
from ledger.models import Transaction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_accounts(make_account, service, subscribe):
    accounts = [make_account(), make_account()]
    first = subscribe(accounts[0], service, "flat", price=Decimal("300.00"))
    services.subscription_create(
        account=accounts[1], tariff=first.tariff, starts_on=date(2026, 1, 1)
    )
    return accounts


def accruals():
    return list(
        Transaction.objects.filter(kind="accrual", subject_type="invoice").values_list(
            "amount", flat=True
        )
    )


def test_invoice_run_replaces_the_drafts_of_an_earlier_draft_run(two_accounts, bill):
    drafted = bill("2026-01", mode="draft")
    assert drafted.status == InvoiceRun.Status.DRAFT_READY
    assert Invoice.objects.filter(run=drafted, status="draft").count() == 2

    issued = bill("2026-01")

    assert issued.status == InvoiceRun.Status.COMPLETED
    assert (issued.invoices_issued, issued.failed) == (2, 0)
    invoices = Invoice.objects.filter(period__code="2026-01", kind="invoice")
    assert {(i.account_id, i.status, i.run_id) for i in invoices} == {
        (a.pk, "issued", issued.pk) for a in two_accounts
    }
    assert accruals() == [Decimal("300.00")] * 2
    # The draft run has nothing left to issue: approving it bills nothing twice.
    services.invoice_run_approve(run=drafted)
    for chunk in drafted.chunks.filter(status="pending"):
        services.invoice_run_chunk_process(chunk_id=chunk.pk)
    drafted.refresh_from_db()
    assert drafted.status == InvoiceRun.Status.COMPLETED
    assert accruals() == [Decimal("300.00")] * 2


def test_draft_run_again_rates_with_what_is_known_now(account, service, subscribe, bill):
    subscribe(account, service, "per_unit", price=Decimal("2.00"))
    usage = {
        "account": account.pk,
        "service": service.pk,
        "occurred_at": "2026-01-10T10:00:00+03:00",
    }
    usage_ingest_records(records=[{**usage, "quantity": "10", "external_id": "u1"}])
    first = bill("2026-01", mode="draft")
    usage_ingest_records(records=[{**usage, "quantity": "5", "external_id": "u2"}])
    second = bill("2026-01", mode="draft")
    [draft] = Invoice.objects.filter(period__code="2026-01")
    assert (draft.run_id, draft.total) == (second.pk, Decimal("30.00"))
    assert not Invoice.objects.filter(run=first).exists()


def test_invoice_run_records_accounts_whose_draft_another_transaction_holds(two_accounts, bill):
    drafted = bill("2026-01", mode="draft")
    held, free = two_accounts
    held_draft = Invoice.objects.get(run=drafted, account=held)
    locked, release = threading.Event(), threading.Event()

    def hold_the_draft():  # as an approval or a void in progress would
        try:
            with transaction.atomic():
                Invoice.objects.select_for_update().get(pk=held_draft.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_draft)
    holder.start()
    assert locked.wait(30)
    try:
        run = bill("2026-01")
    finally:
        release.set()
        holder.join(30)

    assert (run.invoices_issued, run.processed, run.failed) == (1, 2, 1)
    [skip] = InvoiceRunFailure.objects.filter(run=run)
    assert (skip.account_id, skip.code) == (held.pk, "draft_in_other_run")
    assert f"#{drafted.pk}" in skip.message
    assert Invoice.objects.get(account=free, period__code="2026-01").status == "issued"
    held_draft.refresh_from_db()
    assert (held_draft.status, held_draft.run_id) == ("draft", drafted.pk)
