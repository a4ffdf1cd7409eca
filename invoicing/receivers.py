"""Receivers of ledger and catalogue signals (connected in ``InvoicingConfig.ready``).

``transaction_posted`` fires for every posting, inside its transaction: the
receiver returns after one set lookup for anything that cannot raise a client
balance (debits are benchmarked in the thousands per second).
``transactions_posted`` fires once per bulk posting, before each of its
transactions' ``transaction_posted``: when every credit of the call is a payment
(an agent's registry, say), they are allocated set-based there
(``payments_allocate``) and their own signals then return at once.
``service_vat_rate_changing`` fires before a service's VAT rate changes: VAT is
part of every line's amount, so the change must not reach billed days.
"""

from contextvars import ContextVar

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


# Ids of the payments of the current bulk posting already allocated set-based; each one's
# ``transaction_posted`` takes its id out.
_allocated_in_bulk: ContextVar[set[int] | None] = ContextVar("allocated_in_bulk", default=None)


def allocate_on_bulk_posting(sender, transactions, **kwargs) -> None:
    """A bulk posting whose credits are all payments: allocate them in one go. Anything
    else (a transfer, a reversal, a correction among them) is allocated posting by
    posting by ``allocate_on_posting``, in item order."""
    credits = [txn for txn in transactions if txn.kind in CREDITING]
    if not credits or any(txn.kind != TransactionKind.PAYMENT for txn in credits):
        return
    from invoicing.services import payments_allocate

    payments_allocate(credits)
    done = _allocated_in_bulk.get()
    if done is None:
        _allocated_in_bulk.set(done := set())
    done.update(txn.pk for txn in credits)


def allocate_on_posting(sender, transaction, **kwargs) -> None:
    """Postings that can raise a payer's balance settle invoices (or take a reversed
    credit's allocations back): see ``invoicing.services.allocation``."""
    done = _allocated_in_bulk.get()
    if done and transaction.pk in done:
        done.discard(transaction.pk)
        return
    if transaction.kind in CREDITING:
        from invoicing.services import posting_allocate

        posting_allocate(transaction)


def refuse_vat_change_on_billed_days(sender, service, vat_rate, **kwargs) -> None:
    """Refuse (``period_closed``) while today lies in a closed period: its lines are billed."""
    from invoicing.services import check_days_open, today

    check_days_open(today())
