"""Receivers of ledger and catalogue signals (connected in ``InvoicingConfig.ready``).

``transaction_posted`` fires for every posting, inside its transaction: the
receiver returns after one set lookup for anything that cannot raise a client
balance (debits are benchmarked in the thousands per second).
``service_vat_rate_changing`` fires before a service's VAT rate changes: VAT is
part of every line's amount, so the change must not reach billed days.
"""

from ledger.models import TransactionKind

# Kinds that can raise a client balance; debits, accruals, captures and refunds cannot.
CREDITING = frozenset(
    kind.value
    for kind in (
        TransactionKind.PAYMENT,
        TransactionKind.TRANSFER,
        TransactionKind.CREDIT_NOTE,
        TransactionKind.ADJUSTMENT,
        TransactionKind.REVERSAL,
    )
)


def allocate_on_posting(sender, transaction, **kwargs) -> None:
    """Postings that can raise a payer's balance settle invoices (or take a reversed
    credit's allocations back): see ``invoicing.services.allocation``."""
    if transaction.kind in CREDITING:
        from invoicing.services import posting_allocate

        posting_allocate(transaction)


def refuse_vat_change_on_billed_days(sender, service, vat_rate, **kwargs) -> None:
    """Refuse (``period_closed``) while today lies in a closed period: its lines are billed."""
    from invoicing.services import check_days_open, today

    check_days_open(today())
