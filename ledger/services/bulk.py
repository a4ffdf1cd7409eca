"""Bulk postings: many items of the common kinds in one database transaction.

    post_bulk(items, *, caller=SYSTEM, now=None) -> list[Transaction | Hold | DomainError]

``items`` is a sequence of item objects, the same classes the single services
build from their arguments, so the rules, the requests hashed for idempotency
keys and the rows written are the same:

=====================  ======================================  ====================
item                   single service                          result
=====================  ======================================  ====================
``PaymentItem``        ``payment_post``                        ``Transaction``
``DebitItem``          ``debit_post``                          ``Transaction``
``AccrualItem``        ``accrual_post``                        ``Transaction``
``CreditNoteItem``     ``credit_note_post``                    ``Transaction``
``TransferItem``       ``transfer_post``                       ``Transaction``
``RefundItem``         ``refund_post``                         ``Transaction``
``AdjustmentItem``     ``adjustment_post``                     ``Transaction``
``HoldCreateItem``     ``hold_create``                         ``Hold``
``HoldCaptureItem``    ``hold_capture``                        ``Transaction``
``HoldVoidItem``       ``hold_void``                           ``Hold``
``HoldExpireItem``     ``hold_expire`` (no idempotency key)    ``Hold``
``ReversalItem``       ``transaction_reverse``                 ``Transaction``
=====================  ======================================  ====================

Accounts, brands and services are named by id (``account_id``, ``brand_id``,
``service_id``); every item also takes ``caller`` (default: the call's
``caller``; an adjustment's must be staff with ``ledger.post_adjustment``),
``at`` and, except ``HoldExpireItem``, ``idempotency_key``.

**Semantics.** Result ``i`` is what the single service would have returned
for ``items[i]`` had the items been posted one by one, in order, each at its
own moment ``at``: the ``Transaction`` or ``Hold`` (``.replayed`` False, or
True when its idempotency key was already used for the same request, in the
database or by an earlier item of the call), or the ``DomainError`` that
refused it. A refused item changes nothing; the others are posted. The same
rule functions (``rules.py``) run through the same planners, in item order,
on the locked accounts in memory: status, currency, write-off limits per
transaction / day / month with the spent counters, available funds and the
credit line (limit, period, expiry), holds reserving funds, reversals
mirroring their original. Extra refusals that a single call raises as
exceptions: an unknown account, service, hold or transaction is refused with
``not_found``; an item that refers to a refused item with
``invalid_operation``.

**Duplicate payments.** A ``PaymentItem`` whose ``external_id`` is already
posted in its payer scope (the partner, or the channel for staff and the
system: ``ledger.models.PAYER_SCOPE_SQL``) is refused alone with
``DuplicatePayment`` (``details["transaction"]`` = the original): in the
database (one look-up of every external id of the call, on the unique index,
once the accounts are locked) or earlier in the same call (the first that posts
wins; later ones name its transaction). A unique violation inside a COPY would
abort the whole statement, so duplicates are found set-based before writing;
the unique index stays the final guard: should a concurrent posting store one
of the call's external ids between the look-up and the write, the call is
rolled back and run again from the start, and the item is then refused as a
duplicate. As for single postings, the idempotency key decides first (a replay
stays a replay).

**Moments.** ``at`` (default: ``now``, itself defaulting to the current time)
is the item's moment: its rows' ``created_at``, the business date its limits
count on, when a balance went negative, whether a credit line or a hold has
expired. Items must come in chronological order (``at`` never decreasing) and
no ``at`` may lie after ``now``; anything else is a ``ValueError`` before any
work. Posting history into the past is for accounts with no later postings:
each account's ``balance_after`` chain follows entry ids, which are taken in
item order. Accounts' ``updated_at`` becomes ``now``.

**Referring to other items.** ``HoldCaptureItem`` / ``HoldVoidItem`` /
``HoldExpireItem`` take ``hold=`` the id of a hold in the database or the
``HoldCreateItem`` object of an earlier item of the same call;
``ReversalItem`` takes ``transaction=`` an id or the earlier item object that
posts it. An item that refers to another item of the call cannot carry an
idempotency key (its request would name an id that does not exist yet): post
it in a later call by id if it needs one.

**Cost.** One call is one database transaction holding the locks on every
account the items touch (with their payer chains, locked in one statement in
id order) and on the database holds they close; a few bulk reads (keys,
holds, originals, services); and the writer's set path (``writer.py``): ids
from the sequences, ``COPY`` of holds, transactions, entries and keys, one
``UPDATE`` of the accounts and one of the closed holds. Batches of tens of
thousands of items are the intended size (the demo-data generator posts
months of history for many accounts in chronological batches). Runs inside
the caller's transaction when there is one; ``transaction_posted`` and
``hold_changed`` are sent after the write, in item order, preceded by one
``transactions_posted`` with every transaction of the call (set-based receivers:
invoicing allocates a call's payments there in a few statements).

``accruals_post_bulk`` (the invoice run's path) is ``post_bulk`` over
``AccrualItem``s.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError
from django.utils import timezone

from brands.models import Service
from core.batch import gc_paused
from core.caller import SYSTEM, Caller
from core.errors import NotFoundInScope
from ledger.exceptions import AlreadyReversed, DomainError, IdempotencyConflict, InvalidOperation
from ledger.models import Entry, Hold, Transaction, TransactionKind
from ledger.services.charges import AccrualItem, ChargeItem
from ledger.services.holds import HoldCreateItem, HoldItem, HoldVoidItem
from ledger.services.idempotency import (
    IdempotencyRecord,
    constraint_name,
    record_for,
    replay_many,
)
from ledger.services.locking import (
    LockedAccount,
    chain_of,
    check_postable,
    lock_accounts,
    run_locked,
)
from ledger.services.operations import Context, Operation, Plan
from ledger.services.postings import PaymentItem, duplicate_payment, payments_posted
from ledger.services.reversals import Original, ReversalItem
from ledger.services.sql import PAYMENT_EXTERNAL_ID_CONSTRAINT
from ledger.services.system_accounts import SystemAccounts
from ledger.services.writer import write_postings
from ledger.signals import hold_changed, transaction_posted, transactions_posted

Result = Transaction | Hold | DomainError

# How often a call is run again when a concurrent posting stored one of its payments'
# external ids between the look-up and the write (each run sees the ones committed).
DUPLICATE_RETRIES = 3


def _referent(item: Operation) -> Any:
    """The other item of the call this one names (None when it names an id, or nothing)."""
    if isinstance(item, HoldItem):
        return None if isinstance(item.hold, int) else item.hold
    if isinstance(item, ReversalItem):
        return None if isinstance(item.transaction, int) else item.transaction
    return None


def _check_call(items: Sequence[Operation], now: datetime) -> tuple[list[datetime], dict[int, int]]:
    """Each item's moment, and ``{index: index of the item it refers to}``; ValueError on
    anything that is the caller's mistake rather than a refusal."""
    positions = {id(item): index for index, item in enumerate(items)}
    if len(positions) != len(items):
        raise ValueError("The same item object appears twice in the call.")
    moments: list[datetime] = []
    refs: dict[int, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Operation):
            raise TypeError(f"Item {index} is not a ledger item: {item!r}.")
        at = item.at or now
        if at > now:
            raise ValueError(f"Item {index} is dated after now ({at} > {now}).")
        if moments and at < moments[-1]:
            raise ValueError(f"Item {index} is dated before item {index - 1}: keep them in order.")
        moments.append(at)
        referent = _referent(item)
        if referent is None:
            continue
        target = positions.get(id(referent))
        if target is None or target >= index:
            raise ValueError(f"Item {index} refers to an item that is not earlier in this call.")
        if isinstance(item, HoldItem) and not isinstance(referent, HoldCreateItem):
            raise ValueError(f"Item {index} names a hold by an item that creates none.")
        if isinstance(item, ReversalItem) and isinstance(referent, HoldCreateItem | HoldVoidItem):
            raise ValueError(f"Item {index} reverses an item that posts no transaction.")
        if getattr(item, "idempotency_key", None) is not None:
            raise ValueError(
                f"Item {index} refers to another item of the call and so cannot carry an"
                " idempotency key."
            )
        refs[index] = target
    return moments, refs


def post_bulk(
    items: Sequence[Operation],
    *,
    caller: Caller = SYSTEM,
    now: datetime | None = None,
    transaction_ids: Sequence[int | None] | None = None,
) -> list[Result]:
    """Post many items in one database transaction; see the module docstring.

    ``transaction_ids`` (one per item, or None): the id item ``i``'s transaction gets if
    it posts, taken beforehand with ``take_transaction_ids`` (ascending in item order,
    so that ids still follow the items); None takes one at the write.
    """
    now = now or timezone.now()
    moments, refs = _check_call(items, now)
    if transaction_ids is not None and len(transaction_ids) != len(items):
        raise ValueError("transaction_ids needs one id (or None) per item.")
    results: list[Any] = [None] * len(items)
    records: list[IdempotencyRecord | None] = [None] * len(items)
    for index, item in enumerate(items):
        who = item.caller or caller
        try:
            item.prepare(who, moments[index])
            if isinstance(item, HoldCreateItem):
                item.check_expiry(moments[index])
            key = getattr(item, "idempotency_key", None)
            if key is not None:
                records[index] = record_for(who, key, item.operation, item.request())
        except DomainError as exc:
            results[index] = exc
    # Started again from scratch if an account chain changes under it (run_locked), or if
    # the unique index refused a payment that a concurrent posting has just stored.
    # (The cyclic collector is paused: a large call builds millions of objects.)
    with gc_paused():
        for attempt in range(DUPLICATE_RETRIES):
            try:
                return run_locked(
                    lambda: _Batch(
                        items, caller, now, moments, refs, list(results), records, transaction_ids
                    ).run()
                )
            except IntegrityError as exc:
                if constraint_name(exc) != PAYMENT_EXTERNAL_ID_CONSTRAINT:
                    raise
                if attempt == DUPLICATE_RETRIES - 1:
                    raise
    raise AssertionError("unreachable")


def accruals_post_bulk(
    *, items: list[AccrualItem], caller: Caller = SYSTEM
) -> list[Transaction | DomainError]:
    """Post many accruals in one database transaction (the invoice run's posting path).

    Result ``i`` is the transaction for ``items[i]`` (``.replayed`` when its
    idempotency key was already used for the same request), or the domain
    error that refused that item alone (closed account, invalid amount, brand
    not linked, idempotency conflict). Refused items change nothing; the
    others are posted. ``post_bulk`` with accrual items: the same rules as
    ``accrual_post``, a handful of statements whatever the batch size. Runs
    inside the caller's transaction when there is one.
    """
    return post_bulk(items, caller=caller)  # type: ignore[return-value]


def _refused_referent(index: int, error: DomainError) -> InvalidOperation:
    return InvalidOperation(
        "The item this one refers to was refused.", item=index, refusal=error.code
    )


def _replayed(result: Transaction | Hold) -> Transaction | Hold:
    again = copy.copy(result)
    again.replayed = True
    return again


class _Batch:
    """One attempt at a bulk posting, inside ``run_locked``'s transaction."""

    def __init__(
        self,
        items: Sequence[Operation],
        caller: Caller,
        now: datetime,
        moments: list[datetime],
        refs: dict[int, int],
        results: list[Any],
        records: list[IdempotencyRecord | None],
        transaction_ids: Sequence[int | None] | None = None,
    ) -> None:
        self.items, self.caller, self.now = items, caller, now
        self.transaction_ids = transaction_ids
        self.moments, self.refs, self.results, self.records = moments, refs, results, records
        self.plans: dict[int, Plan] = {}
        self.db_refs: dict[int, int] = {}  # index -> id of a replayed referent's row
        self.reversed_postings: set[int] = set()  # id() of postings of the call reversed
        self.snapshots: dict[int, tuple] = {}  # index -> its hold's (status, captured, closed)
        self.payments_stored: dict[tuple[str, str], int] = {}  # (scope, external id) -> txn id
        # index -> (its refusal, the index of the item of the call that posted the payment)
        self.duplicates_in_call: dict[int, tuple[DomainError, int]] = {}
        self._pending_cache: list[tuple[int, Operation]] | None = None
        self._pending_at = 0

    def run(self) -> list[Result]:
        self._replay_seen_keys()
        self._follow_refs_to_replays()
        if not self._pending():
            return self._write({})
        holds, originals = self._read_references()
        locked = lock_accounts(self._account_ids(holds, originals), strict=False)
        # Looked up once the locks are held, so that little time is left for a concurrent
        # posting of the same external id to commit before this call writes.
        self.payments_stored = payments_posted(
            key for _, key in self._payer_keys() if key is not None
        )
        locked_holds = {
            hold.pk: hold
            for hold in Hold.objects.select_for_update().filter(pk__in=holds).order_by("pk")
        }
        reversed_ids = set(
            Transaction.objects.filter(reversal_of_id__in=originals).values_list(
                "reversal_of_id", flat=True
            )
        )
        self._load_services()
        self._plan_all(locked, locked_holds, originals, reversed_ids)
        return self._write(locked)

    # ----- before locking

    def _replay_seen_keys(self) -> None:
        pending = [r for r, res in zip(self.records, self.results, strict=True) if r and not res]
        seen = replay_many(pending)
        for index, record in enumerate(self.records):
            if record is None or self.results[index] is not None:
                continue
            found = seen.get((record.caller, record.key))
            if found is None:
                continue
            stored_hash, operation, row = found
            if stored_hash != record.request_hash:
                self.results[index] = IdempotencyConflict(
                    "This idempotency key was already used for a different request.",
                    key=record.key,
                    operation=operation,
                )
            else:
                self.results[index] = _replayed(row)

    def _follow_refs_to_replays(self) -> None:
        for index, target in self.refs.items():
            done = self.results[target]
            if isinstance(done, DomainError):
                self.results[index] = self.results[index] or _refused_referent(target, done)
            elif done is not None and self.results[index] is None:
                self.db_refs[index] = done.pk  # the referent replayed a row of the database

    def _payer_keys(self) -> list[tuple[int, tuple[str, str] | None]]:
        """``(index, (payer scope, external id))`` of the pending payments that carry one."""
        return [
            (index, item.payer_key(item.caller or self.caller))
            for index, item in self._pending()
            if isinstance(item, PaymentItem)
        ]

    def _db_id(self, index: int, item: Operation) -> int | None:
        if index in self.db_refs:
            return self.db_refs[index]
        if isinstance(item, HoldItem):
            return item.hold if isinstance(item.hold, int) else None
        if isinstance(item, ReversalItem):
            return item.transaction if isinstance(item.transaction, int) else None
        return None

    def _pending(self) -> list[tuple[int, Operation]]:
        """The items not yet decided. A result, once set, is never unset: while as many are
        decided as at the last call, the list is the same (kept, not rebuilt per phase)."""
        decided = len(self.results) - self.results.count(None)
        if self._pending_cache is None or decided != self._pending_at:
            self._pending_cache = [
                (i, item) for i, item in enumerate(self.items) if self.results[i] is None
            ]
            self._pending_at = decided
        return self._pending_cache

    def _read_references(self) -> tuple[dict[int, tuple[int, int]], dict[int, Any]]:
        """Holds (their account and payer) and originals named by id, read in bulk."""
        hold_ids, txn_ids = set(), set()
        for index, item in self._pending():
            db_id = self._db_id(index, item)
            if db_id is not None:
                (hold_ids if isinstance(item, HoldItem) else txn_ids).add(db_id)
        holds = {
            pk: (account_id, payer_id)
            for pk, account_id, payer_id in Hold.objects.filter(pk__in=hold_ids).values_list(
                "pk", "account_id", "payer_id"
            )
        }
        originals: dict[int, Any] = {}
        if txn_ids:
            txns = Transaction.objects.in_bulk(txn_ids)
            entries: dict[int, list[Entry]] = {pk: [] for pk in txns}
            for entry in Entry.objects.filter(transaction_id__in=txns).order_by("id"):
                entries[entry.transaction_id].append(entry)
            reserved = dict(
                Hold.objects.filter(
                    pk__in={t.hold_id for t in txns.values() if t.hold_id}
                ).values_list("pk", "reserved_on")
            )
            for pk, txn in txns.items():
                if txn.kind == TransactionKind.REVERSAL:
                    originals[pk] = InvalidOperation(
                        "A reversal cannot itself be reversed.", transaction=pk
                    )
                else:
                    originals[pk] = Original.of_transaction(
                        txn, entries[pk], reserved.get(txn.hold_id)
                    )
        return holds, originals

    def _account_ids(self, holds: dict[int, tuple[int, int]], originals: dict[int, Any]) -> set:
        ids: set[int] = set()
        for index, item in self._pending():
            db_id = self._db_id(index, item)
            if isinstance(item, HoldItem | ReversalItem):
                if isinstance(item, HoldItem) and db_id in holds:
                    ids.update(holds[db_id])
                elif isinstance(originals.get(db_id), Original):
                    ids.update(originals[db_id].client_ids())
                    ids.add(originals[db_id].account_id)
                # else: an item of the call, whose accounts are locked for it
            else:
                ids.update(item.account_ids())
        return ids

    def _load_services(self) -> None:
        wanted = {
            item.service_id
            for _, item in self._pending()
            if isinstance(item, ChargeItem | HoldCreateItem)
            and item.service is None
            and item.service_id is not None
        }
        self.services = {s.pk: s for s in Service.objects.filter(pk__in=wanted).only("brand_id")}

    # ----- planning

    def _resolve(
        self,
        index: int,
        item: Operation,
        locked: dict[int, LockedAccount],
        locked_holds: dict[int, Hold],
        originals: dict[int, Any],
        reversed_ids: set,
    ) -> None:
        """Give the item what its planner works on, or refuse it."""
        db_id = self._db_id(index, item)
        target = self.refs.get(index)
        if target is not None and db_id is None:
            refused = self.results[target]
            if isinstance(refused, DomainError):
                raise _refused_referent(target, refused)
        if isinstance(item, HoldItem):
            if db_id is not None:
                item.hold_obj = locked_holds.get(db_id)
                if item.hold_obj is None:
                    raise NotFoundInScope(f"No hold with id {db_id}.", hold=db_id)
            else:
                item.hold_obj = self._plan_of(target).new_hold
        elif isinstance(item, ReversalItem):
            if db_id is not None:
                original = originals.get(db_id)
                if original is None:
                    raise NotFoundInScope(f"No transaction with id {db_id}.", transaction=db_id)
                if isinstance(original, DomainError):
                    raise copy.copy(original)
                if db_id in reversed_ids:
                    raise AlreadyReversed(transaction=db_id)
                item.original = original
            else:
                posting = self._plan_of(target).posting
                if posting.header["kind"] == TransactionKind.REVERSAL:
                    raise InvalidOperation("A reversal cannot itself be reversed.")
                if id(posting) in self.reversed_postings:
                    raise AlreadyReversed()
                item.original = Original.of_posting(posting)
        else:
            for account_id in item.account_ids():
                if account_id not in locked:
                    raise NotFoundInScope(f"No account with id {account_id}.", account=account_id)
                check_postable(locked, account_id)
            needs_service = isinstance(item, ChargeItem | HoldCreateItem) and item.service is None
            if needs_service and item.service_id is not None:
                item.service = self.services.get(item.service_id)
                if item.service is None:
                    raise NotFoundInScope(f"No service with id {item.service_id}.")

    def _plan_of(self, index: int) -> Plan:
        """The plan of a posted item, following in-call replays to the item that posted."""
        while index not in self.plans:
            index = self.results[index]
        return self.plans[index]

    def _plan_all(
        self,
        locked: dict[int, LockedAccount],
        locked_holds: dict[int, Hold],
        originals: dict[int, Any],
        reversed_ids: set,
    ) -> None:
        ctx = Context(locked, self.now, self.caller, SystemAccounts())
        keys: dict[tuple[str, str], int] = {}
        payers = dict(self._payer_keys())
        payments_in_call: dict[tuple[str, str], int] = {}  # (scope, external id) -> index
        for index, item in self._pending():
            record = self.records[index]
            if record is not None:
                first = keys.get((record.caller, record.key))
                if first is not None:
                    if self.records[first].request_hash != record.request_hash:
                        self.results[index] = IdempotencyConflict(
                            "This idempotency key was already used for a different request.",
                            key=record.key,
                            operation=self.records[first].operation,
                        )
                    else:
                        self.results[index] = first  # replays item ``first``, resolved below
                    continue
            payer_key = payers.get(index)
            if payer_key is not None:
                if payer_key in self.payments_stored:
                    original = self.payments_stored[payer_key]
                    self.results[index] = duplicate_payment(original, payer_key[1])
                    continue
                if payer_key in payments_in_call:
                    # Named once the first one is written (its transaction has no id yet).
                    refusal = duplicate_payment(None, payer_key[1])
                    self.results[index] = refusal
                    self.duplicates_in_call[index] = (refusal, payments_in_call[payer_key])
                    continue
            ctx.now, ctx.caller = self.moments[index], item.caller or self.caller
            touched: list[LockedAccount] = []
            try:
                self._resolve(index, item, locked, locked_holds, originals, reversed_ids)
                for account_id in item.account_ids():
                    touched += chain_of(locked, account_id)
                saved = [acc.state() for acc in touched]
                try:
                    plan = item.plan(ctx)
                except DomainError:
                    for acc, state in zip(touched, saved, strict=True):
                        acc.restore(state)
                    raise
            except DomainError as exc:
                self.results[index] = exc
                continue
            self.plans[index] = plan
            if plan.hold is not None:
                hold = plan.hold
                self.snapshots[index] = (hold.status, hold.captured_amount, hold.closed_at)
            if isinstance(item, ReversalItem):
                if item.original.posting is not None:
                    self.reversed_postings.add(id(item.original.posting))
                else:
                    reversed_ids.add(item.original.pk)
            if record is not None:
                keys[record.caller, record.key] = index
            if payer_key is not None:
                payments_in_call[payer_key] = index

    # ----- writing

    def _write(self, locked: dict[int, LockedAccount]) -> list[Result]:
        postings, new_holds, closed_holds, hold_keys = [], [], [], []
        for index, plan in self.plans.items():
            record = self.records[index]
            if plan.posting is not None:
                plan.posting.idempotency = record
                if self.transaction_ids is not None:
                    plan.posting.transaction_id = self.transaction_ids[index]
                postings.append(plan.posting)
            elif record is not None:
                hold_keys.append((record, plan.hold, self.moments[index]))
            if plan.new_hold is not None:
                new_holds.append(plan.new_hold)
            elif plan.closed_hold is not None and plan.closed_hold.pk is not None:
                # A hold of the database (one of the call is written as it ends up). Closed
                # at most once: a second close is refused with ``hold_not_active``.
                closed_holds.append(plan.closed_hold)
        if self.plans:
            write_postings(
                postings,
                accounts=locked.values(),
                now=self.now,
                new_holds=new_holds,
                closed_holds=closed_holds,
                hold_keys=hold_keys,
                send_signals=False,
            )
        if postings:
            transactions_posted.send(
                sender=Transaction, transactions=[p.transaction for p in postings]
            )
        for index, plan in self.plans.items():
            result = plan.result() if plan.posting is not None else self._hold_then(index, plan)
            result.replayed = False
            self.results[index] = result
            if plan.posting is not None:
                transaction_posted.send(sender=Transaction, transaction=plan.posting.transaction)
            if plan.hold is not None:
                hold_changed.send(
                    sender=Hold,
                    hold=self._hold_then(index, plan),
                    previous_status=plan.hold_previous,
                )
        for index, result in enumerate(self.results):
            if isinstance(result, int):
                self.results[index] = _replayed(self.results[result])
        for refusal, first in self.duplicates_in_call.values():
            original = self.results[first].pk
            external_id = refusal.details["external_id"]
            refusal.message = duplicate_payment(original, external_id).message
            refusal.args = (refusal.message,)
            refusal.details["transaction"] = original
        return self.results

    def _hold_then(self, index: int, plan: Plan) -> Hold:
        """The hold as this item left it (a later item of the call may have closed it)."""
        hold = plan.hold
        then = self.snapshots[index]
        if (hold.status, hold.captured_amount, hold.closed_at) == then:
            return hold
        earlier = copy.copy(hold)
        earlier.status, earlier.captured_amount, earlier.closed_at = then
        return earlier
