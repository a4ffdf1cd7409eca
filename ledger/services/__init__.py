"""Ledger services: every operation that moves money.

Each posting runs in one database transaction that
1. replays the original result when the caller's idempotency key was seen
   (or refuses with ``idempotency_conflict`` when the request differs)
   (``idempotency.py``);
2. locks every client account it touches *and all their ancestors up to the
   root payer* in one statement, ordered by primary key (``FOR NO KEY UPDATE``),
   so concurrent postings never deadlock and never overspend (``locking.py``);
3. plans the posting in Python on the locked rows: checks status, currency,
   write-off limits and available funds, raising a ``DomainError`` with a
   stable code, and moves the accounts' running state in memory (the rules in
   ``rules.py``, applied by each kind's planner in ``postings.py``,
   ``charges.py``, ``holds.py`` and ``reversals.py``);
4. writes the transaction, its entries, the idempotency record and the new
   running state of the locked accounts in a single SQL statement
   (``writer.py``, the one writer of ledger rows; its SQL in ``sql.py``).

Bulk postings (``bulk.py``: ``post_bulk``, ``accruals_post_bulk``) run the same
planners over many items in one transaction, on the same locked state in
memory, and write them through the writer's set path (COPY).

System accounts (clearing, revenue, refunds, ...) are never locked: entries
are appended to them and their balance is the sum of those entries
(``system_accounts.py``).

Write-off counters (``spent_day`` / ``spent_month``) live on each account of
the chain and are updated under the same lock. They count discretionary
write-offs (debits, transfers out, hold captures) and active holds; releasing
a hold or reversing a write-off on the same day / month gives the room back.

Amounts are parsed by ``money()`` and business dates come from
``business_date()`` (``money.py``).
"""

# Tests patch ``ledger.services.timezone.now`` (that is, django.utils.timezone.now).
from django.utils import timezone  # noqa: F401

from core.caller import SYSTEM, Caller
from core.errors import ValidationFailed
from ledger.exceptions import DomainError
from ledger.services.bulk import accruals_post_bulk, post_bulk
from ledger.services.charges import (
    AccrualItem,
    ChargeItem,
    CreditNoteItem,
    DebitItem,
    accrual_post,
    credit_note_post,
    debit_post,
)
from ledger.services.checks import register_payment_check, run_payment_checks
from ledger.services.holds import (
    HoldCaptureItem,
    HoldCreateItem,
    HoldExpireItem,
    HoldVoidItem,
    hold_capture,
    hold_create,
    hold_expire,
    hold_void,
    holds_expire_due,
)
from ledger.services.idempotency import IdempotencyRecord, idempotent
from ledger.services.locking import (
    AccountStructureChanged,
    LockedAccount,
    chain_of,
    hot_cursor,
    lock_accounts,
    run_locked,
)
from ledger.services.money import (
    CURRENCY_DECIMALS,
    MAX_AMOUNT,
    ZERO,
    business_date,
    money,
    request_hash,
)
from ledger.services.operations import Operation
from ledger.services.postings import (
    AdjustmentItem,
    PaymentItem,
    RefundItem,
    TransferItem,
    adjustment_post,
    payment_post,
    refund_post,
    transfer_post,
)
from ledger.services.reversals import ReversalItem, transaction_reverse
from ledger.services.rules import (
    KIND_DISCRETIONARY,
    BrandNotLinked,
    apply_to_balance,
    check_brand,
    check_currency,
    check_funds,
    check_status,
    check_write_off_limits,
    credit_refusal,
    spend,
    unspend,
)
from ledger.services.system_accounts import clear_system_account_cache, system_account_id
from ledger.services.writer import (
    Leg,
    Posting,
    posted_balance_after,
    posted_payer,
    take_transaction_ids,
    write_accounts,
    write_postings,
)

__all__ = [
    "CURRENCY_DECIMALS",
    "KIND_DISCRETIONARY",
    "MAX_AMOUNT",
    "SYSTEM",
    "ZERO",
    "AccountStructureChanged",
    "AccrualItem",
    "AdjustmentItem",
    "BrandNotLinked",
    "Caller",
    "ChargeItem",
    "CreditNoteItem",
    "DebitItem",
    "DomainError",
    "HoldCaptureItem",
    "HoldCreateItem",
    "HoldExpireItem",
    "HoldVoidItem",
    "IdempotencyRecord",
    "Leg",
    "LockedAccount",
    "Operation",
    "PaymentItem",
    "Posting",
    "RefundItem",
    "ReversalItem",
    "TransferItem",
    "ValidationFailed",
    "accrual_post",
    "accruals_post_bulk",
    "adjustment_post",
    "apply_to_balance",
    "business_date",
    "chain_of",
    "check_brand",
    "check_currency",
    "check_funds",
    "check_status",
    "check_write_off_limits",
    "clear_system_account_cache",
    "credit_note_post",
    "credit_refusal",
    "debit_post",
    "hold_capture",
    "hold_create",
    "hold_expire",
    "hold_void",
    "holds_expire_due",
    "hot_cursor",
    "idempotent",
    "lock_accounts",
    "money",
    "payment_post",
    "post_bulk",
    "posted_balance_after",
    "posted_payer",
    "refund_post",
    "register_payment_check",
    "request_hash",
    "run_locked",
    "run_payment_checks",
    "spend",
    "system_account_id",
    "take_transaction_ids",
    "transaction_reverse",
    "transfer_post",
    "unspend",
    "write_accounts",
    "write_postings",
]
