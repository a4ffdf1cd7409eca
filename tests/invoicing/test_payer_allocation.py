"""Money a payer receives settles the invoices of its whole tree (its sub-accounts' too),
from every kind of credit that frees money, and penalties see it.

A sub-account holds no funds: its invoices are posted to the root payer's balance. A
payment to the payer used to settle only the payer's own invoices, so a sub-account's
invoice stayed open, went overdue and accrued penalties on debt already paid.
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import F, Sum

from accounts.services import account_create
from core.caller import Caller
from invoicing import services
from invoicing.models import Invoice, InvoiceAllocation, InvoiceRunChunk, PenaltyAccrual
from invoicing.receivers import allocate_on_posting
from ledger.services import (
    accrual_post,
    adjustment_post,
    payment_post,
    transaction_reverse,
    transfer_post,
)
from ledger.signals import transaction_posted
from tests.factories import AccountFactory, ClientFactory, LegalEntityFactory, UserFactory
from tests.ledger.concurrency import run_in_threads


@pytest.fixture
def staff(db):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="post_adjustment"))
    return Caller.for_user(get_user_model().objects.get(pk=user.pk))


@pytest.fixture
def company(brand):
    """A payer and two employees' sub-accounts under it."""
    client = LegalEntityFactory()
    payer = account_create(client=client, brands=[brand])
    subs = [account_create(client=ClientFactory(), brands=[brand], parent=payer) for _ in range(2)]
    return payer, subs


def subscribe_all(accounts, service, price, subscribe):
    first = subscribe(accounts[0], service, "flat", price=Decimal(price))
    for account in accounts[1:]:
        services.subscription_create(
            account=account, tariff=first.tariff, starts_on=date(2026, 1, 1)
        )


def status_of(account):
    return Invoice.objects.get(account=account, kind="invoice", period__code="2026-01").status


def owed(accounts):
    return Invoice.objects.filter(
        account__in=accounts, status__in=Invoice.OPEN_STATUSES, total__gt=0
    ).aggregate(owed=Sum(F("total") - F("paid_amount")))["owed"] or Decimal("0")


def test_payment_to_the_payer_settles_a_sub_account_invoice_and_no_penalty_accrues(
    company, brand, service, subscribe, bill
):
    payer, (employee, _other) = company
    subscribe(employee, service, "flat", price=Decimal("300.00"))
    services.penalty_policy_set(brand=brand, daily_rate_percent="0.1")
    bill("2026-01")
    invoice = Invoice.objects.get(account=employee)
    payer.refresh_from_db()
    assert (invoice.status, payer.balance) == ("issued", Decimal("-300.00"))

    payment_post(account=payer, amount=Decimal("300.00"), channel="bank")

    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == ("paid", Decimal("300.00"))
    outcome = services.penalties_accrue(on=invoice.due_date + timedelta(days=10))
    assert (outcome.overdue_marked, outcome.accrued) == (0, 0)
    assert not PenaltyAccrual.objects.exists()


def test_payment_pays_the_tree_oldest_first_and_the_named_account_before_the_rest(
    company, service, subscribe, bill
):
    payer, (first, second) = company
    subscribe_all([payer, first, second], service, "100.00", subscribe)
    bill("2026-01")
    # Paid for the second employee: its invoice first, then the oldest of the others.
    payment_post(account=second, amount=Decimal("150.00"), channel="bank")
    assert status_of(second) == "paid"
    oldest = Invoice.objects.filter(account__in=[payer, first]).order_by("issued_at", "pk")[0]
    assert oldest.paid_amount == Decimal("50.00")
    assert owed([payer, first, second]) == Decimal("150.00")


def test_penalties_never_exceed_what_the_payer_owes(company, brand, service, subscribe, bill):
    """Even with an invoice left open while the payer's funds cover most of it (a payment
    allocated before this release, say), those funds bound the penalty's base."""
    payer, (employee, _other) = company
    subscribe(employee, service, "flat", price=Decimal("300.00"))
    services.penalty_policy_set(brand=brand, daily_rate_percent="1")
    bill("2026-01")
    invoice = Invoice.objects.get(account=employee)
    transaction_posted.disconnect(dispatch_uid="invoicing.allocate_payments")
    try:
        payment_post(account=payer, amount=Decimal("250.00"), channel="bank")  # not allocated
    finally:
        transaction_posted.connect(allocate_on_posting, dispatch_uid="invoicing.allocate_payments")
    services.penalties_accrue(on=invoice.due_date + timedelta(days=1))
    [penalty] = PenaltyAccrual.objects.all()
    assert (penalty.base, penalty.amount) == (Decimal("50.00"), Decimal("0.50"))


def test_every_credit_that_frees_money_settles_invoices(
    account, service, subscribe, bill, brand, staff
):
    subscribe(account, service, "flat", price=Decimal("300.00"))
    bill("2026-01")
    invoice = Invoice.objects.get(account=account)
    # A charge of 50.00 besides the invoice, then reversed: that frees the charge, not the
    # invoice (the client still owes all 300.00 of it).
    charge = accrual_post(account=account, amount=Decimal("50.00"), brand=brand)
    transaction_reverse(transaction_obj=charge, reason="entered twice")
    invoice.refresh_from_db()
    assert invoice.paid_amount == Decimal("0.00")
    # An adjustment up by 100.00: the client now owes only 200.00.
    adjustment_post(account=account, amount=Decimal("100.00"), reason="goodwill", caller=staff)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == ("partly_paid", Decimal("100.00"))
    # A transfer in from another client pays in full, like a payment.
    donor = AccountFactory(brands=[brand])
    payment_post(account=donor, amount=Decimal("500.00"), channel="bank")
    transfer = transfer_post(from_account=donor, to_account=account, amount=Decimal("150.00"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == ("partly_paid", Decimal("250.00"))
    sources = set(
        InvoiceAllocation.objects.filter(invoice=invoice).values_list("source", flat=True)
    )
    assert sources == {"credit"}
    # Reversing the transfer takes its allocation back.
    transaction_reverse(transaction_obj=transfer, reason="wrong account")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == ("partly_paid", Decimal("100.00"))
    account.refresh_from_db()
    assert owed([account]) == -account.balance


@pytest.mark.django_db(transaction=True)
def test_payments_to_a_payer_in_parallel_with_a_run_issuing_its_sub_accounts(
    brand, service, subscribe, bill
):
    payer = account_create(client=LegalEntityFactory(), brands=[brand])
    subs = [account_create(client=ClientFactory(), brands=[brand], parent=payer) for _ in range(6)]
    subscribe_all(subs, service, "100.00", subscribe)
    bill("2026-01")
    run = services.invoice_run_start(period="2026-02", chunk_size=2)
    services.invoice_run_plan(run_id=run.pk)
    chunks = list(InvoiceRunChunk.objects.filter(run=run).values_list("pk", flat=True))
    assert len(chunks) == 3

    def pay(index):
        return lambda: payment_post(
            account=payer, amount=Decimal("100.00"), channel="bank", external_id=f"p{index}"
        )

    def chunk(pk):
        return lambda: services.invoice_run_chunk_process(chunk_id=pk)

    outcomes = run_in_threads(
        [pay(0), chunk(chunks[0]), pay(1), chunk(chunks[1]), pay(2), chunk(chunks[2]), pay(3)]
    )
    assert [o.code for o in outcomes] == [None] * 7  # no deadlock, no refusal
    payer.refresh_from_db()
    assert payer.balance == Decimal("-800.00")
    # January's invoices are the oldest: four of them paid whatever the interleaving.
    january = Invoice.objects.filter(period__code="2026-01")
    assert sorted(january.values_list("status", flat=True)) == ["issued"] * 2 + ["paid"] * 4
    assert Invoice.objects.filter(period__code="2026-02", status="issued").count() == 6
    assert owed(subs) == -payer.balance
