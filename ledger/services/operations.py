"""What every posting is made of: an operation that is prepared, locked, planned and written.

An operation (``PaymentItem``, ``DebitItem``, ``HoldCaptureItem``, ...) is a
plain dataclass that is both the bulk service's item and what the single
service builds from its keyword arguments. Each has

* ``prepare(caller, now)``: validate and normalise the input before any lock
  (amounts through ``money()``, channels, reasons, permissions), raising a
  ``DomainError``;
* ``request()``: what its idempotency key remembers (the same for the single
  and the bulk path, so keys are interchangeable between them);
* ``account_ids()``: the client accounts to lock (their chains come along);
* ``plan(ctx)``: pure Python over the locked accounts (``Context``): apply the
  rules of ``rules.py`` in order, raising a ``DomainError``, and return a
  ``Plan`` (the posting and/or the hold written or closed). Nothing is written.

``post_one`` is the single-posting path: idempotency, lock, plan, write, in
one database transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.utils import timezone

from core.caller import SYSTEM, Caller
from core.errors import DomainError
from ledger.models import Hold, Transaction
from ledger.services.idempotency import IdempotencyRecord, idempotent
from ledger.services.locking import LockedAccount, lock_accounts
from ledger.services.system_accounts import system_account_id
from ledger.services.writer import Posting, write_postings
from ledger.signals import hold_changed


@dataclass(slots=True)
class Context:
    """What a planner sees: the locked accounts, the posting's moment, who posts it, and how
    to find a system account."""

    locked: dict[int, LockedAccount]
    now: datetime
    caller: Caller
    system: Callable[..., int] = system_account_id


@dataclass(slots=True)
class Plan:
    """What planning one operation produced; ``result`` is what its service returns."""

    posting: Posting | None = None
    new_hold: Hold | None = None
    closed_hold: Hold | None = None
    # hold_changed's previous_status, when the operation created or closed a hold.
    hold_previous: str | None = None

    @property
    def hold(self) -> Hold | None:
        return self.new_hold or self.closed_hold

    def result(self) -> Transaction | Hold:
        if self.posting is not None:
            return self.posting.transaction
        return self.hold


@dataclass(slots=True, kw_only=True)
class Operation:
    """The base of every item: who posts it (default: the call's caller) and when.

    ``at`` matters to the bulk service only (a single posting happens now).
    """

    operation: ClassVar[str] = ""
    caller: Caller | None = None
    at: datetime | None = None

    def prepare(self, caller: Caller, now: datetime) -> None:
        """Validate and normalise the input (no lock held), or raise a ``DomainError``."""

    def request(self) -> dict[str, Any]:
        raise NotImplementedError

    def account_ids(self) -> tuple[int, ...]:
        raise NotImplementedError

    def plan(self, ctx: Context) -> Plan:
        raise NotImplementedError

    def duplicate_of(self, caller: Caller) -> DomainError | None:
        """The refusal of an operation that repeats one already stored under another
        idempotency key (or none), or None; only payments have one (``duplicate_payment``)."""
        return None


def write_plan(plan: Plan, ctx: Context, record: IdempotencyRecord | None) -> Transaction | Hold:
    """Write what a single posting planned, then tell the hold's listeners."""
    if plan.posting is not None:
        plan.posting.idempotency = record
    hold_keys = [] if record is None or plan.posting is not None else [(record, plan.hold, ctx.now)]
    write_postings(
        [plan.posting] if plan.posting is not None else [],
        accounts=ctx.locked.values(),
        now=ctx.now,
        new_holds=[plan.new_hold] if plan.new_hold is not None else [],
        closed_holds=[plan.closed_hold] if plan.closed_hold is not None else [],
        hold_keys=hold_keys,
    )
    if plan.hold is not None:
        hold_changed.send(sender=Hold, hold=plan.hold, previous_status=plan.hold_previous)
    return plan.result()


def post_one(
    op: Operation,
    *,
    caller: Caller = SYSTEM,
    idempotency_key: str | None,
    prepared: bool = False,
) -> Any:
    """The single-posting path of a simple operation (its accounts known without a query).

    One database transaction: replay or conflict on a seen key; lock the chains;
    plan at ``timezone.now()``; write in one statement.
    """
    if not prepared:
        op.prepare(caller, timezone.now())

    def run(record: IdempotencyRecord | None) -> Transaction | Hold:
        locked = lock_accounts(op.account_ids())
        ctx = Context(locked, timezone.now(), caller)
        return write_plan(op.plan(ctx), ctx, record)

    return idempotent(
        caller=caller,
        key=idempotency_key,
        operation=op.operation,
        request=op.request(),
        run=run,
        duplicate=lambda: op.duplicate_of(caller),
    )
