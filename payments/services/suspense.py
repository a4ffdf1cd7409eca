"""Suspense: staff assign each unidentified payment to an account, or return it.

Both lock the suspense item's row first (``SELECT ... FOR UPDATE``), so two
staff resolving the same item at once resolve it once: the second finds it no
longer open (``409 suspense_not_open``). The money moves through the ledger
(``payments.services.items``) in the same database transaction as the status
change.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from core.caller import SYSTEM, Caller
from core.errors import NotFoundInScope, ValidationFailed
from ledger.services.idempotency import record_for, replay
from ledger.services.operations import post_one
from payments.exceptions import SuspenseNotOpen
from payments.models import SuspenseItem
from payments.services.items import SuspenseAssignItem, SuspenseReturnItem


def _replayed(
    pk: int, caller: Caller, key: str | None, operation: str, request: dict
) -> SuspenseItem | None:
    """The item as a keyed request left it, when this key was used for the same request
    (``replayed``); ``idempotency_conflict`` for a different one; None when unseen."""
    record = record_for(caller, key, operation, request)
    if record is None or replay(record.caller, record.key, record.request_hash) is None:
        return None
    item = SuspenseItem.objects.get(pk=pk)
    item.replayed = True
    return item


def _lock_or_replay(
    pk: int, caller: Caller, key: str | None, operation: str, request: dict
) -> SuspenseItem:
    """The item locked and open, or the replay of this key: asked before the lock and again
    when a concurrent twin with the same key resolved the item while this one waited."""
    done = _replayed(pk, caller, key, operation, request)
    if done is not None:
        return done
    try:
        return _lock_open(pk)
    except SuspenseNotOpen:
        done = _replayed(pk, caller, key, operation, request)
        if done is not None:
            return done
        raise


def _lock_open(item: SuspenseItem | int) -> SuspenseItem:
    pk = item.pk if isinstance(item, SuspenseItem) else item
    locked = SuspenseItem.objects.select_for_update().filter(pk=pk).first()
    if locked is None:
        raise NotFoundInScope(f"No suspense item {pk}.", suspense=pk)
    if locked.status != SuspenseItem.Status.OPEN:
        raise SuspenseNotOpen(suspense=pk, status=locked.status)
    return locked


@transaction.atomic
def suspense_assign(
    *,
    item: SuspenseItem | int,
    account: Account | int,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> SuspenseItem:
    """Move a suspense item's money to a client account (a transfer from suspense, allocated
    to the account's open invoices). Refused for a closed account or another currency;
    locks the item, then the account's chain."""
    pk = item.pk if isinstance(item, SuspenseItem) else item
    account_id = account.pk if isinstance(account, Account) else account
    op = SuspenseAssignItem(suspense_item=pk, account_id=account_id, amount=0, currency="")
    locked = _lock_or_replay(pk, caller, idempotency_key, op.operation, op.request())
    if getattr(locked, "replayed", False):
        return locked
    if not Account.objects.filter(pk=account_id, kind=Account.Kind.CLIENT).exists():
        raise NotFoundInScope("account: not found.", account=["Not found."])
    txn = post_one(
        SuspenseAssignItem(
            suspense_item=locked.pk,
            account_id=account_id,
            amount=locked.amount,
            currency=locked.currency,
            memo=f"Suspense #{locked.pk} assigned (registry line {locked.row})",
            metadata={"suspense": locked.pk, "registry": locked.registry_id, "row": locked.row},
        ),
        caller=caller,
        idempotency_key=idempotency_key,
    )
    locked.status = SuspenseItem.Status.ASSIGNED
    locked.assigned_account_id = account_id
    locked.resolution_transaction_id = txn.pk
    locked.resolved_at = timezone.now()
    locked.resolved_by = caller.user
    locked.save()
    locked.replayed = False
    return locked


@transaction.atomic
def suspense_return(
    *,
    item: SuspenseItem | int,
    reason: str,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> SuspenseItem:
    """Return a suspense item's money to the payer (a refund from suspense to refunds payable,
    paid out through the agent). Needs a reason; locks the item."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A return needs a reason.", reason=["This field is required."])
    pk = item.pk if isinstance(item, SuspenseItem) else item
    op = SuspenseReturnItem(suspense_item=pk, amount=0, currency="", reason=reason)
    locked = _lock_or_replay(pk, caller, idempotency_key, op.operation, op.request())
    if getattr(locked, "replayed", False):
        return locked
    txn = post_one(
        SuspenseReturnItem(
            suspense_item=locked.pk,
            amount=locked.amount,
            currency=locked.currency,
            reason=reason,
            memo=f"Suspense #{locked.pk} returned: {reason}"[:500],
            metadata={"suspense": locked.pk, "registry": locked.registry_id, "row": locked.row},
        ),
        caller=caller,
        idempotency_key=idempotency_key,
    )
    locked.status = SuspenseItem.Status.RETURNED
    locked.return_reason = reason[:500]
    locked.resolution_transaction_id = txn.pk
    locked.resolved_at = timezone.now()
    locked.resolved_by = caller.user
    locked.save()
    locked.replayed = False
    return locked
