"""Receivers of ledger and catalogue signals (connected in ``InvoicingConfig.ready``).

``transaction_posted`` fires for every posting, inside its transaction: the
receiver returns after one string comparison for anything but payments and
payment reversals (debits are benchmarked in the thousands per second).
``service_vat_rate_changing`` fires before a service's VAT rate changes: VAT is
part of every line's amount, so the change must not reach billed days.
"""

from ledger.models import TransactionKind

PAYMENT = TransactionKind.PAYMENT.value
REVERSAL = TransactionKind.REVERSAL.value


def allocate_on_posting(sender, transaction, **kwargs) -> None:
    kind = transaction.kind
    if kind == PAYMENT:
        from invoicing.services import payment_allocate

        payment_allocate(transaction)
    elif kind == REVERSAL and transaction.metadata.get("reversed_kind") == PAYMENT:
        from invoicing.services import payment_reversal_unallocate

        payment_reversal_unallocate(transaction)


def refuse_vat_change_on_billed_days(sender, service, vat_rate, **kwargs) -> None:
    """Refuse (``period_closed``) while today lies in a closed period: its lines are billed."""
    from invoicing.services import check_days_open, today

    check_days_open(today())
