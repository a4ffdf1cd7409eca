"""Receivers of ledger signals: payment allocation (connected in ``InvoicingConfig.ready``).

``transaction_posted`` fires for every posting, inside its transaction: the
receiver returns after one string comparison for anything but payments and
payment reversals (debits are benchmarked in the thousands per second).
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
