"""Recalculation: the difference as a debit or credit note linked to the original; nothing
when nothing changed."""

from decimal import ROUND_HALF_UP, Decimal

import pytest

from invoicing import services
from invoicing.exceptions import PeriodNotBilled
from invoicing.ingest import usage_ingest_records
from invoicing.models import Invoice, InvoiceAllocation
from ledger.models import Transaction
from tests.invoicing.reads import rows_read

PRICE = Decimal("2.35")


def cents(value):
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def use(account, service, quantity, day, ext):
    result = usage_ingest_records(
        records=[
            {
                "account": account.pk,
                "service": service.pk,
                "quantity": quantity,
                "occurred_at": f"2026-01-{day:02d}T10:00:00+03:00",
                "external_id": ext,
            }
        ]
    )
    assert result.accepted == 1


@pytest.fixture
def billed(account, service, subscribe, bill):
    subscribe(account, service, "per_unit", price=PRICE)
    use(account, service, "10", 5, "u1")
    bill("2026-01")
    return Invoice.objects.get()


def test_recalculation_issues_nothing_when_nothing_changed(account, billed):
    assert services.invoice_recalculate(account=account, period="2026-01") == []
    assert Invoice.objects.count() == 1


def test_recalculation_bills_late_usage_as_a_debit_note(account, service, billed):
    use(account, service, "4.5", 20, "late-1")
    [note] = services.invoice_recalculate(account=account, period="2026-01")
    assert (note.kind, note.adjusts_id, note.period_id) == (
        "adjustment",
        billed.pk,
        billed.period_id,
    )
    assert note.total == cents(Decimal("14.5") * PRICE) - billed.total
    assert note.vat == cents(cents(Decimal("14.5") * PRICE) * 20 / 120) - billed.vat
    assert note.number.startswith("FD-") and note.number != billed.number
    [line] = note.lines.all()
    assert (line.service_id, line.quantity, line.amount) == (service.pk, Decimal("4.5"), note.total)
    txn = Transaction.objects.get(pk=note.ledger_transaction_id)
    assert (txn.kind, txn.amount, txn.subject_id) == ("accrual", note.total, str(note.pk))
    account.refresh_from_db()
    assert account.balance == -(billed.total + note.total)
    # Asked again: the difference is billed already.
    assert services.invoice_recalculate(account=account, period="2026-01") == []


def test_recalculation_credit_note_when_the_estimate_was_too_high(
    account, service, subscribe, readings, bill, pay
):
    subscribe(account, service, "per_unit", price=PRICE)
    readings(account, service, ("1000", "2025-11-30"), ("1200", "2025-12-31"))
    bill("2026-01")
    original = Invoice.objects.get()
    assert original.lines.get().quantity == Decimal("200")  # estimated from December
    pay(account, "100.00")
    readings(account, service, ("1350", "2026-01-31"))  # January used 150, not 200
    [note] = services.invoice_recalculate(account=account, period="2026-01")
    credit = cents(150 * PRICE) - cents(200 * PRICE)
    assert note.total == credit < 0
    txn = Transaction.objects.get(pk=note.ledger_transaction_id)
    assert (txn.kind, txn.amount) == ("credit_note", -credit)
    # The credit pays the original first, on top of the payment.
    original.refresh_from_db()
    assert original.paid_amount == Decimal("100.00") - credit
    assert InvoiceAllocation.objects.get(source="credit_note").amount == -credit
    account.refresh_from_db()
    assert account.balance == Decimal("100.00") - original.total - credit
    assert original.status == ("paid" if original.paid_amount == original.total else "partly_paid")


def test_recalculation_of_an_unbilled_period_is_refused(account, service, subscribe):
    subscribe(account, service, "per_unit", price=PRICE)
    with pytest.raises(PeriodNotBilled):
        services.invoice_recalculate(account=account, period="2026-01")


def test_next_run_issues_the_adjustment_for_late_usage(account, service, billed, bill):
    use(account, service, "2", 28, "late-2")
    february = bill("2026-02")
    assert february.adjustments_issued == 1
    note = Invoice.objects.get(kind="adjustment")
    assert note.adjusts_id == billed.pk
    assert note.total == cents(Decimal("12") * PRICE) - billed.total
    # The run after that finds nothing new for January.
    march = bill("2026-03")
    assert march.adjustments_issued == 0
    assert Invoice.objects.filter(kind="adjustment").count() == 1


def test_a_chunks_recalculation_check_reads_its_own_accounts_invoices(
    brand, account, service, subscribe, make_account, make_service, bill
):
    """A run chunk looks for its accounts' billed periods with changed inputs by account,
    whatever the planner makes of the invoices table: with ``account_id = ANY(chunk)`` and
    statistics behind a month-end it filtered the whole period's invoices by the chunk,
    0.85 s a chunk once the run had issued 1,200,000 (a run quadratic in its size). Here
    120 other accounts are billed for the period, the statistics are missing and the chunk
    is 200 accounts, one of them billed and with usage that arrived after its invoice."""
    from datetime import date

    from django.db import connection, transaction
    from django.utils import timezone

    from invoicing.services.recalculation import _recalculate_changed

    subscribe(account, service, "per_unit", price=PRICE)
    rental = subscribe(make_account(), make_service(name="Rental"), "flat", price="5.00").tariff
    for _ in range(119):
        services.subscription_create(
            account=make_account(), tariff=rental, starts_on=date(2026, 1, 1)
        )
    use(account, service, "10", 5, "u1")
    run = bill("2026-01", brand=brand)
    assert Invoice.objects.filter(kind="invoice", status="issued").count() == 121
    original = Invoice.objects.get(account=account)
    use(account, service, "4", 20, "late-1")
    chunk = [*range(10**12, 10**12 + 199), account.pk]
    with transaction.atomic(), connection.cursor() as cursor:
        before = rows_read(cursor, "invoicing_invoice")
        outcome = _recalculate_changed(run, chunk, before=timezone.now())
        read = rows_read(cursor, "invoicing_invoice") - before
        [note] = Invoice.objects.filter(adjusts=original)
        transaction.set_rollback(True)
    assert (outcome.adjustments, outcome.failures) == (1, [])
    assert note.total == cents(Decimal("4") * PRICE)
    # The account's invoice found by its index (1 read) and read again to recalculate it
    # (11 reads today); not the period's 121 invoices (132 reads before).
    assert read <= 20, read
