"""A run's chunks are cut and written by the server: the accounts in order, ``chunk_size``
at a time, for the plan (the accounts subscribed in the period) and for the approval of a
draft run (the accounts with drafts); the planning process never holds the ids."""

import tracemalloc
from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from invoicing import services
from invoicing.models import Invoice, InvoiceRun, InvoiceRunChunk, Subscription, Tariff
from invoicing.services.runs import invoice_run_plan
from tests.factories import ServiceFactory, accounts_bulk

pytestmark = pytest.mark.django_db


def subscribed_accounts(service, count, *, starts_on=date(2026, 1, 1), ends_on=None):
    created = accounts_bulk(service.brand, count, f"PL{service.pk:04d}{starts_on:%m}")
    tariff = Tariff.objects.filter(service=service).first() or services.tariff_create(
        service=service, kind="flat", price="10.00", valid_from=date(2025, 1, 1)
    )
    Subscription.objects.bulk_create(
        Subscription(
            account=account, service=service, tariff=tariff, starts_on=starts_on, ends_on=ends_on
        )
        for account in created
    )
    return sorted(account.pk for account in created)


def chunks_of(run, phase):
    return list(
        InvoiceRunChunk.objects.filter(run=run, phase=phase)
        .order_by("index")
        .values_list("index", "account_ids", "status", "processed", "failed")
    )


def test_a_plan_cuts_the_periods_subscribed_accounts_in_order(brand):
    service = ServiceFactory(brand=brand)
    billed = subscribed_accounts(service, 95)
    subscribed_accounts(service, 3, starts_on=date(2026, 2, 1))  # after the period
    subscribed_accounts(ServiceFactory(), 4)  # another brand's
    run = InvoiceRun.objects.create(
        period=services.billing_period_get("2026-01"), brand=brand, chunk_size=10
    )
    invoice_run_plan(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.total, run.chunks_total) == (InvoiceRun.Status.RUNNING, 95, 10)
    assert chunks_of(run, InvoiceRun.Phase.RATE) == [
        (index, billed[index * 10 : index * 10 + 10], "pending", 0, 0) for index in range(10)
    ]


def test_an_approval_cuts_the_accounts_with_drafts_in_order(brand):
    service = ServiceFactory(brand=brand)
    accounts = subscribed_accounts(service, 7)
    run = InvoiceRun.objects.create(
        period=services.billing_period_get("2026-01"),
        brand=brand,
        chunk_size=3,
        mode=InvoiceRun.Mode.DRAFT,
        status=InvoiceRun.Status.DRAFT_READY,
    )
    with_drafts = accounts[1:]  # the first account's draft was issued elsewhere
    for account_id in accounts:
        issued = account_id == accounts[0]
        Invoice.objects.create(
            run=run,
            account_id=account_id,
            brand=brand,
            period=run.period,
            status=Invoice.Status.ISSUED if issued else Invoice.Status.DRAFT,
            number=f"PL-{account_id}" if issued else None,
            issued_at=timezone.now() if issued else None,
            currency="RUB",
            subtotal=Decimal("10.00"),
            vat=Decimal("0.00"),
            total=Decimal("10.00"),
            rated_at=timezone.now(),
            inputs_checked_at=timezone.now(),
        )
    services.invoice_run_approve(run=run)
    run.refresh_from_db()
    assert (run.status, run.phase, run.total, run.chunks_total) == (
        InvoiceRun.Status.RUNNING,
        InvoiceRun.Phase.ISSUE,
        6,
        2,
    )
    assert chunks_of(run, InvoiceRun.Phase.ISSUE) == [
        (0, with_drafts[:3], "pending", 0, 0),
        (1, with_drafts[3:], "pending", 0, 0),
    ]


def test_planning_does_not_hold_the_accounts_ids(brand):
    """Python's peak allocation while planning 5,000 accounts stays that of a handful of
    queries (fetching the ids, listing, chunking and quoting them: about 1 MB)."""
    service = ServiceFactory(brand=brand)
    subscribed_accounts(service, 5000)
    run = InvoiceRun.objects.create(
        period=services.billing_period_get("2026-01"), brand=brand, chunk_size=1000
    )
    tracemalloc.start()
    try:
        invoice_run_plan(run_id=run.pk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    run.refresh_from_db()
    assert (run.total, run.chunks_total) == (5000, 5)
    assert peak < 200_000, peak
