"""Signals the ledger sends *inside* the posting's database transaction.

Receivers (webhook outbox, invoice allocation, projections) may write rows in
the same transaction, so their effect commits or rolls back with the posting.
They must not do I/O; anything slow goes to ``transaction.on_commit``.
"""

from django.dispatch import Signal

# ``use_caching``: the receivers are looked up once per sender, not on every send (a bulk
# posting sends ``transaction_posted`` once per transaction: 200,000 times for a large
# registry). Connecting or disconnecting a receiver clears the cache.

# kwargs: transaction (ledger.models.Transaction)
transaction_posted = Signal(use_caching=True)
# kwargs: transactions (list of ledger.models.Transaction, in item order). Sent once by a
# bulk posting (``post_bulk``) after its write, before its transaction_posted and
# hold_changed signals (which still come one by one, in item order): a receiver may do
# there set-based what it would otherwise do per transaction.
transactions_posted = Signal(use_caching=True)
# kwargs: hold (ledger.models.Hold), previous_status (str or None when created)
hold_changed = Signal(use_caching=True)
