"""Payment allocation, called by the receiver of ``ledger.signals.transaction_posted``
inside the posting's transaction (the account is locked): a payment pays the account's
open invoices oldest first, a payment reversal takes its allocations back (and, when
needed, credit-balance allocations), and a credit note's credit pays the invoice it
adjusts first. Invoices are locked in id order, so allocations never deadlock.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import Account
from invoicing.models import Invoice, InvoiceAllocation
from invoicing.services.inputs import ZERO, today
from invoicing.services.status import S, derived_status, invoice_status_set
from ledger.models import Transaction


def _open_invoices_locked(account_id: int) -> list[Invoice]:
    """The account's open invoices, locked in id order (deadlock-free), oldest issued first."""
    invoices = list(
        Invoice.objects.select_for_update()
        .filter(account_id=account_id, status__in=Invoice.OPEN_STATUSES, total__gt=0)
        .order_by("id")
    )
    invoices.sort(key=lambda inv: (inv.issued_at or timezone.now(), inv.pk))
    return invoices


def _allocate(
    *,
    account_id: int,
    amount: Decimal,
    source: str,
    transaction_id: int | None,
    first: int | None = None,
) -> Decimal:
    """Apply ``amount`` to open invoices, oldest first (``first`` before all). Returns the rest."""
    invoices = _open_invoices_locked(account_id)
    if first is not None:
        invoices.sort(key=lambda inv: inv.pk != first)
    remaining = amount
    on = today()
    allocations = []
    changed = []
    for invoice in invoices:
        if remaining <= 0:
            break
        take = min(invoice.total - invoice.paid_amount, remaining)
        if take <= 0:
            continue
        invoice.paid_amount += take
        remaining -= take
        invoice_status_set(
            invoice=invoice,
            status=derived_status(
                invoice.total, invoice.paid_amount, invoice.due_date, on, invoice.status
            ),
            save=False,
        )
        allocations.append(
            InvoiceAllocation(
                invoice=invoice, source=source, transaction_id=transaction_id, amount=take
            )
        )
        changed.append(invoice)
    if changed:
        Invoice.objects.bulk_update(changed, ["paid_amount", "status"])
        InvoiceAllocation.objects.bulk_create(allocations)
    return remaining


def payment_allocate(txn: Transaction) -> None:
    """A payment was posted (the account is locked): pay open invoices, oldest first."""
    if not Invoice.objects.filter(
        account_id=txn.account_id, status__in=Invoice.OPEN_STATUSES, total__gt=0
    ).exists():
        return
    _allocate(
        account_id=txn.account_id,
        amount=txn.amount,
        source=InvoiceAllocation.Source.PAYMENT,
        transaction_id=txn.pk,
    )


def payment_reversal_unallocate(reversal: Transaction) -> None:
    """A payment was reversed: take its allocations back (newest invoice first).

    When part of the reversed money had reached invoices as a credit balance at
    issue (and so has no trace to this payment), credit-balance allocations are
    taken back, newest first, until the invoices owe at least the account's debt.
    """
    direct = list(
        InvoiceAllocation.objects.filter(transaction_id=reversal.reversal_of_id)
        .values("invoice_id")
        .annotate(total=Sum("amount"))
    )
    taken_back = sum((row["total"] for row in direct), ZERO)
    remainder = reversal.amount - taken_back
    credit_balance = (
        remainder > 0
        and InvoiceAllocation.objects.filter(
            invoice__account_id=reversal.account_id, source=InvoiceAllocation.Source.CREDIT_BALANCE
        ).exists()
    )
    if not direct and not credit_balance:
        return
    amounts = {row["invoice_id"]: row["total"] for row in direct if row["total"] > 0}
    if credit_balance:
        account = Account.objects.only("balance", "parent_id").get(pk=reversal.account_id)
        if account.parent_id is None and account.balance < 0:
            owed = (
                Invoice.objects.filter(
                    account_id=reversal.account_id, status__in=Invoice.OPEN_STATUSES, total__gt=0
                ).aggregate(owed=Sum(F("total") - F("paid_amount")))["owed"]
                or ZERO
            )
            missing = min(-account.balance - owed, remainder)
            if missing > 0:
                for allocation in InvoiceAllocation.objects.filter(
                    invoice__account_id=reversal.account_id,
                    source=InvoiceAllocation.Source.CREDIT_BALANCE,
                ).order_by("-invoice_id"):
                    if missing <= 0:
                        break
                    take = min(allocation.amount, missing)
                    amounts[allocation.invoice_id] = amounts.get(allocation.invoice_id, ZERO) + take
                    missing -= take
    invoices = {
        inv.pk: inv
        for inv in Invoice.objects.select_for_update().filter(pk__in=amounts).order_by("pk")
    }
    on = today()
    allocations, changed = [], []
    for invoice_id in sorted(amounts, reverse=True):
        invoice = invoices[invoice_id]
        take = min(amounts[invoice_id], invoice.paid_amount)
        if take <= 0 or invoice.status == S.VOID:
            continue
        invoice.paid_amount -= take
        invoice_status_set(
            invoice=invoice,
            status=derived_status(
                invoice.total, invoice.paid_amount, invoice.due_date, on, invoice.status
            ),
            save=False,
        )
        allocations.append(
            InvoiceAllocation(
                invoice=invoice,
                source=InvoiceAllocation.Source.PAYMENT_REVERSAL,
                transaction_id=reversal.pk,
                amount=-take,
            )
        )
        changed.append(invoice)
    if changed:
        Invoice.objects.bulk_update(changed, ["paid_amount", "status"])
        InvoiceAllocation.objects.bulk_create(allocations)


def _apply_credit_note(credit_note_id: int, transaction_id: int) -> None:
    """A credit note's credit pays the invoice it adjusts first, then other open invoices."""
    note = Invoice.objects.only("account_id", "adjusts_id", "total").get(pk=credit_note_id)
    _allocate(
        account_id=note.account_id,
        amount=-note.total,
        source=InvoiceAllocation.Source.CREDIT_NOTE,
        transaction_id=transaction_id,
        first=note.adjusts_id,
    )
