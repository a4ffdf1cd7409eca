"""Signals the ledger sends *inside* the posting's database transaction.

Receivers (webhook outbox, invoice allocation, projections) may write rows in
the same transaction, so their effect commits or rolls back with the posting.
They must not do I/O; anything slow goes to ``transaction.on_commit``.
"""

from django.dispatch import Signal

# kwargs: transaction (ledger.models.Transaction)
transaction_posted = Signal()
# kwargs: hold (ledger.models.Hold), previous_status (str or None when created)
hold_changed = Signal()
