"""Payments allocated to open invoices oldest first; statuses; reversals; credit balances."""

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing import services
from invoicing.exceptions import InvalidInvoiceTransition
from invoicing.models import Invoice, InvoiceAllocation
from ledger.services import accrual_post, transaction_reverse


@pytest.fixture
def two_invoices(account, service, subscribe, bill):
    """January and February invoices of 100.00 each, issued in that order."""
    subscribe(account, service, "flat", price="100.00")
    bill("2026-01")
    bill("2026-02")
    jan, feb = Invoice.objects.order_by("period__starts_on")
    return jan, feb


def state(*invoices):
    result = []
    for invoice in invoices:
        invoice.refresh_from_db()
        result.append((invoice.status, invoice.paid_amount))
    return result


def test_payment_allocated_to_the_oldest_invoice_first(account, two_invoices, pay):
    jan, feb = two_invoices
    assert state(jan, feb) == [("issued", 0), ("issued", 0)]
    payment = pay(account, "60.00")
    assert state(jan, feb) == [("partly_paid", Decimal("60.00")), ("issued", 0)]
    pay(account, "90.00")
    assert state(jan, feb) == [("paid", Decimal("100.00")), ("partly_paid", Decimal("50.00"))]
    pay(account, "70.00")  # 20 more than owed: stays on the balance as credit
    assert state(jan, feb) == [("paid", Decimal("100.00")), ("paid", Decimal("100.00"))]
    assert list(
        InvoiceAllocation.objects.filter(transaction=payment).values_list("invoice", "amount")
    ) == [(jan.pk, Decimal("60.00"))]
    account.refresh_from_db()
    assert account.balance == Decimal("20.00")


def test_payment_reversal_takes_its_allocations_back(account, two_invoices, pay):
    jan, feb = two_invoices
    pay(account, "100.00")
    second = pay(account, "50.00")
    assert state(jan, feb) == [("paid", Decimal("100.00")), ("partly_paid", Decimal("50.00"))]
    transaction_reverse(transaction_obj=second, reason="bounced")
    assert state(jan, feb) == [("paid", Decimal("100.00")), ("issued", Decimal("0.00"))]
    reversal_rows = InvoiceAllocation.objects.filter(source="payment_reversal")
    assert list(reversal_rows.values_list("invoice", "amount")) == [(feb.pk, Decimal("-50.00"))]


def test_overdue_then_paid(account, two_invoices, pay):
    jan, feb = two_invoices
    pay(account, "30.00")
    marked = services.invoices_mark_overdue(on=jan.due_date + timedelta(days=1))
    assert marked == 2
    assert state(jan, feb) == [("overdue", Decimal("30.00")), ("overdue", 0)]
    pay(account, "70.00")
    assert state(jan, feb) == [("paid", Decimal("100.00")), ("overdue", 0)]


def test_credit_balance_pays_a_new_invoice_at_issue(account, service, subscribe, bill, pay):
    subscribe(account, service, "flat", price="100.00")
    pay(account, "130.00")
    bill("2026-01")
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.paid_amount) == ("paid", Decimal("100.00"))
    assert invoice.balance_brought_forward == Decimal("130.00")
    assert InvoiceAllocation.objects.get().source == "credit_balance"
    bill("2026-02")
    february = Invoice.objects.get(period__code="2026-02")
    assert (february.status, february.paid_amount) == ("partly_paid", Decimal("30.00"))
    assert february.balance_brought_forward == Decimal("30.00")


def test_payment_reversal_after_credit_balance_use_reopens_the_invoice(
    account, service, subscribe, bill, pay
):
    subscribe(account, service, "flat", price="100.00")
    payment = pay(account, "100.00")  # no invoice yet: nothing to allocate
    assert not InvoiceAllocation.objects.exists()
    bill("2026-01")
    invoice = Invoice.objects.get()
    assert invoice.status == "paid"
    transaction_reverse(transaction_obj=payment, reason="bounced")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == ("issued", Decimal("0.00"))


def test_other_postings_leave_invoices_alone(account, brand, two_invoices):
    jan, feb = two_invoices
    before = state(jan, feb)
    accrual_post(account=account, amount="5.00", brand=brand)
    assert state(jan, feb) == before
    assert not InvoiceAllocation.objects.exists()


def test_status_transitions_are_checked(account, two_invoices, pay):
    jan, _feb = two_invoices
    with pytest.raises(InvalidInvoiceTransition):
        services.invoice_status_set(invoice=jan, status="draft")
    pay(account, "100.00")
    jan.refresh_from_db()
    with pytest.raises(InvalidInvoiceTransition):
        services.invoice_void(invoice=jan, reason="mistake")
    jan.refresh_from_db()
    assert jan.status == "paid"


def test_void_an_unpaid_invoice_reverses_its_accrual(account, two_invoices):
    jan, feb = two_invoices
    services.invoice_void(invoice=feb, reason="billed by mistake")
    feb.refresh_from_db()
    account.refresh_from_db()
    assert feb.status == "void"
    assert account.balance == -jan.total
    assert feb.ledger_transaction.reversed_by.memo.startswith(f"Invoice {feb.number} voided")
