"""Reversals: a transaction undone by its mirror image, at most once.

``Original`` is what a reversal needs to know of the transaction it mirrors,
read from the database (``Original.load``) or, in a bulk posting, from a
posting written earlier in the same call (``Original.of_posting``).
``ReversalItem.plan`` is shared by ``transaction_reverse`` and the bulk service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.caller import SYSTEM, Caller
from core.errors import ValidationFailed
from ledger.exceptions import AlreadyReversed, InvalidOperation
from ledger.models import Entry, Hold, Transaction, TransactionKind
from ledger.services.idempotency import IdempotencyRecord, constraint_name, idempotent
from ledger.services.locking import chain_of, lock_accounts
from ledger.services.money import business_date, pk_of
from ledger.services.operations import Context, Operation, Plan, write_plan
from ledger.services.rules import KIND_DISCRETIONARY, apply_to_balance, check_status, unspend
from ledger.services.writer import Leg, Posting, header

REVERSAL_UNIQUE_CONSTRAINT = "ledger_transaction_reversal_of_id_key"
# Header fields a reversal copies from its original (with their values when not named).
_COPIED = {
    "counter_account_id": None,
    "brand_id": None,
    "service_id": None,
    "channel": "",
    "subject_type": "",
    "subject_id": "",
}


@dataclass(slots=True)
class Original:
    """The transaction a reversal mirrors: its header, its entries (as legs), and for a
    hold capture the day its hold reserved the funds."""

    pk: int | None
    kind: str
    account_id: int
    amount: Decimal
    currency: str
    created_at: datetime
    legs: list[Leg]
    copied: dict[str, Any]
    hold_reserved_on: date | None = None
    posting: Posting | None = None

    @classmethod
    def load(cls, original_id: int) -> Original:
        """Read an original from the database (refusing a reversal or a reversed one)."""
        txn = Transaction.objects.get(pk=original_id)
        if txn.kind == TransactionKind.REVERSAL:
            raise InvalidOperation("A reversal cannot itself be reversed.", transaction=txn.pk)
        if Transaction.objects.filter(reversal_of_id=txn.pk).exists():
            raise AlreadyReversed(transaction=txn.pk)
        entries = list(Entry.objects.filter(transaction_id=txn.pk).order_by("id"))
        reserved_on = None
        if txn.kind == TransactionKind.HOLD_CAPTURE:
            reserved_on = Hold.objects.values_list("reserved_on", flat=True).get(pk=txn.hold_id)
        return cls.of_transaction(txn, entries, reserved_on)

    @classmethod
    def of_transaction(
        cls, txn: Transaction, entries: list[Entry], reserved_on: date | None
    ) -> Original:
        return cls(
            pk=txn.pk,
            kind=txn.kind,
            account_id=txn.account_id,
            amount=txn.amount,
            currency=txn.currency,
            created_at=txn.created_at,
            legs=[Leg(e.account_id, e.amount, e.subaccount_id, e.balance_after) for e in entries],
            copied={name: getattr(txn, name) for name in _COPIED},
            hold_reserved_on=reserved_on,
        )

    @classmethod
    def of_posting(cls, posting: Posting) -> Original:
        """An original planned earlier in the same bulk call (its id comes with the write)."""
        head = posting.header
        return cls(
            pk=None,
            kind=head["kind"],
            account_id=head["account_id"],
            amount=head["amount"],
            currency=head["currency"],
            created_at=posting.at,
            legs=posting.legs,
            copied={name: head.get(name, default) for name, default in _COPIED.items()},
            hold_reserved_on=posting.hold.reserved_on if posting.hold is not None else None,
            posting=posting,
        )

    def client_ids(self) -> set[int]:
        """The client accounts its entries moved (payers and the sub-accounts they named)."""
        return {leg.account_id for leg in self.legs if leg.balance_after is not None} | {
            leg.subaccount_id for leg in self.legs if leg.subaccount_id
        }


@dataclass(slots=True, kw_only=True)
class ReversalItem(Operation):
    """Undo a transaction (``transaction_reverse``). ``transaction`` is its id, or (bulk only)
    the item of the same call that posts it. ``original`` is what the planner mirrors."""

    operation: ClassVar[str] = "reversal"
    transaction: int | Operation
    reason: str
    idempotency_key: str | None = None
    original: Original | None = field(default=None, repr=False, compare=False)

    def prepare(self, caller: Caller, now: Any) -> None:
        if not self.reason or not self.reason.strip():
            raise ValidationFailed("A reversal needs a reason.", field="reason")

    def request(self) -> dict[str, Any]:
        original_id = self.transaction if isinstance(self.transaction, int) else None
        return {"transaction": original_id, "reason": self.reason}

    def account_ids(self) -> tuple[int, ...]:
        return (*self.original.client_ids(), self.original.account_id)

    def plan(self, ctx: Context) -> Plan:
        original, locked, now = self.original, ctx.locked, ctx.now
        ref = original.pk
        for leg in original.legs:
            moved = locked.get(leg.account_id) if leg.balance_after is not None else None
            if moved is not None and moved.parent_id is not None:
                # It paid for itself then and is a funds-free sub-account now: the mirror
                # entry has no balance to land on (and must not hit the new payer's).
                raise InvalidOperation(
                    f"Account {moved.number} has since become a sub-account; correct this"
                    " posting with an adjustment instead.",
                    transaction=ref,
                    account=moved.number,
                )
        for acc_id in original.client_ids():
            check_status(chain_of(locked, acc_id), allow_blocked=True)
        legs = []
        for leg in original.legs:
            if leg.balance_after is not None:
                after = apply_to_balance(locked[leg.account_id], -leg.amount, now)
                legs.append(Leg(leg.account_id, -leg.amount, leg.subaccount_id, after))
            else:
                legs.append(Leg(leg.account_id, -leg.amount))
        if original.kind in KIND_DISCRETIONARY:
            # A capture counts against the limits of the day its hold reserved the
            # funds, not the day it was captured: give the room back to that day.
            spent_on = (
                original.hold_reserved_on
                if original.kind == TransactionKind.HOLD_CAPTURE
                else business_date(original.created_at)
            )
            unspend(
                chain_of(locked, original.account_id),
                original.amount,
                spent_on,
                business_date(now),
            )
        head = header(
            kind=TransactionKind.REVERSAL,
            caller=ctx.caller,
            account_id=original.account_id,
            amount=original.amount,
            currency=original.currency,
            memo=self.reason.strip(),
            reversal_of_id=ref,
            metadata={"reversed_kind": original.kind},
            **original.copied,
        )
        return Plan(posting=Posting(head, legs, now, reversal_of=original.posting))


def transaction_reverse(
    *,
    transaction_obj: Transaction | int,
    reason: str,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Undo a transaction with its mirror image, at most once (a unique constraint guarantees it).

    Never refused for funds: it corrects a mistake and may create debt.
    Refused when a client account involved is closed, for a reversal itself,
    and with ``already_reversed`` the second time. Locks every client account
    of the original (and the named account's chain, whose write-off room is
    given back for a write-off reversed on the same day or month).
    """
    item = ReversalItem(transaction=pk_of(transaction_obj), reason=reason)
    item.prepare(caller, None)

    def run(record: IdempotencyRecord | None) -> Transaction:
        item.original = Original.load(item.transaction)
        locked = lock_accounts(item.account_ids())
        ctx = Context(locked, timezone.now(), caller)
        plan = item.plan(ctx)
        try:
            with transaction.atomic():
                return write_plan(plan, ctx, record)
        except IntegrityError as exc:
            if constraint_name(exc) == REVERSAL_UNIQUE_CONSTRAINT:
                raise AlreadyReversed(transaction=item.transaction) from None
            raise

    return idempotent(
        caller=caller,
        key=idempotency_key,
        operation=item.operation,
        request=item.request(),
        run=run,
    )
