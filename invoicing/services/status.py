"""The invoice status machine: ``INVOICE_TRANSITIONS`` lists the allowed moves,
``invoice_status_set`` is the one row-by-row place a status changes (set-based paths
only make moves the table allows), ``derived_status`` says where an issued invoice
stands after a payment, ``invoice_void`` voids a draft or an unpaid invoice (reversing
its accrual) and ``invoices_mark_overdue`` is the daily set-based move to overdue.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import connection, transaction

from invoicing.exceptions import InvalidInvoiceTransition, InvoicingValidationError
from invoicing.models import Invoice
from invoicing.services.inputs import INVOICING, _pk, today
from ledger import services as ledger

S = Invoice.Status
# Allowed invoice status moves: {from: {to, ...}}. Void and nothing else is final.
INVOICE_TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.ISSUED, S.VOID},
    S.ISSUED: {S.PARTLY_PAID, S.PAID, S.OVERDUE, S.VOID},
    S.PARTLY_PAID: {S.ISSUED, S.PAID, S.OVERDUE},
    S.PAID: {S.ISSUED, S.PARTLY_PAID, S.OVERDUE},
    S.OVERDUE: {S.PAID, S.VOID},
    S.VOID: set(),
}


def derived_status(
    total: Decimal, paid: Decimal, due_date: date | None, on: date, current: str = ""
) -> str:
    """Where an issued invoice stands: paid, overdue, partly paid or just issued.

    Once overdue (the daily job decides), an invoice stays overdue until it is paid.
    """
    if total <= 0:
        return S.ISSUED
    if paid >= total:
        return S.PAID
    if current == S.OVERDUE or (due_date is not None and on > due_date):
        return S.OVERDUE
    if paid > 0:
        return S.PARTLY_PAID
    return S.ISSUED


def check_transition(current: str, new: str) -> None:
    if new != current and new not in INVOICE_TRANSITIONS[current]:
        raise InvalidInvoiceTransition(
            f"An invoice cannot go from {current} to {new}.", current=current, requested=new
        )


def invoice_status_set(*, invoice: Invoice, status: str, save: bool = True) -> Invoice:
    """The one place an invoice changes status row by row, checked against the transitions."""
    check_transition(invoice.status, status)
    invoice.status = status
    if save:
        invoice.save(update_fields=["status"])
    return invoice


def invoice_void(
    *, invoice: Invoice | int, reason: str, caller: ledger.Caller = INVOICING
) -> Invoice:
    """Void a draft, or an unpaid issued invoice (its accrual is reversed in the ledger).

    Locks the account, then the invoice (the order payments use).
    """
    if not reason or not reason.strip():
        raise InvoicingValidationError("Voiding needs a reason.", field="reason")
    invoice_id = _pk(invoice)
    with transaction.atomic():
        account_id = Invoice.objects.values_list("account_id", flat=True).get(pk=invoice_id)
        ledger.lock_accounts([account_id])
        invoice_obj = Invoice.objects.select_for_update().get(pk=invoice_id)
        check_transition(invoice_obj.status, S.VOID)
        if invoice_obj.status != S.DRAFT:
            if invoice_obj.paid_amount > 0 or invoice_obj.allocations.exists():
                raise InvalidInvoiceTransition(
                    "A paid or partly paid invoice cannot be voided.", invoice=invoice_obj.pk
                )
            if invoice_obj.ledger_transaction_id is not None:
                ledger.transaction_reverse(
                    transaction_obj=invoice_obj.ledger_transaction_id,
                    reason=f"Invoice {invoice_obj.number} voided: {reason.strip()}",
                    caller=caller,
                    idempotency_key=f"invoice:{invoice_obj.pk}:void",
                )
        return invoice_status_set(invoice=invoice_obj, status=S.VOID)


def invoices_mark_overdue(*, on: date | None = None) -> int:
    """Mark open invoices past their due date overdue (rows locked in id order)."""
    on = on or today()
    for status in (S.ISSUED, S.PARTLY_PAID):
        check_transition(status, S.OVERDUE)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE invoicing_invoice SET status = 'overdue'
            WHERE id IN (
                SELECT id FROM invoicing_invoice
                WHERE status IN ('issued', 'partly_paid') AND total > 0 AND due_date < %s
                ORDER BY id FOR UPDATE
            )
            """,
            [on],
        )
        return cursor.rowcount
