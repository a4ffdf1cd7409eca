"""Holds: funds reserved on the root payer for a later capture, void or expiry.

A hold is checked exactly like a debit when it is created, counts against the
payer's ``held`` and the chain's write-off limits while active, and is
released when captured (fully or partly: a write-off), voided or expired.
Items (``HoldCreateItem``, ``HoldCaptureItem``, ``HoldVoidItem``,
``HoldExpireItem``) carry the planners the bulk service shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account
from brands.models import Brand, Service
from core.caller import SYSTEM, Caller
from core.errors import ValidationFailed
from ledger.exceptions import HoldNotActive, InvalidAmount
from ledger.models import Hold, Transaction, TransactionKind
from ledger.services.idempotency import IdempotencyRecord, idempotent
from ledger.services.locking import LockedAccount, chain_of, lock_accounts, run_locked
from ledger.services.money import ZERO, business_date, money, pk_of
from ledger.services.operations import Context, Operation, Plan, post_one, write_plan
from ledger.services.rules import (
    apply_to_balance,
    check_brand,
    check_currency,
    check_funds,
    check_status,
    check_write_off_limits,
    release,
    reserve,
    spend,
)
from ledger.services.writer import Leg, Posting, header


def hold_default_expiry(now: datetime) -> datetime:
    return now + timedelta(minutes=settings.BILLING_HOLD_TTL_MINUTES)


@dataclass(slots=True, kw_only=True)
class HoldCreateItem(Operation):
    """Reserve funds for a later capture (``hold_create``). ``service`` as in ``ChargeItem``."""

    operation: ClassVar[str] = "hold_create"
    account_id: int
    amount: Any
    brand_id: int
    service_id: int | None = None
    subject_type: str = ""
    subject_id: str = ""
    metadata: dict[str, Any] | None = None
    memo: str = ""
    expires_at: datetime | None = None
    currency: str | None = None
    idempotency_key: str | None = None
    service: Any = field(default=None, repr=False, compare=False)

    def prepare(self, caller: Caller, now: datetime) -> None:
        self.amount = money(self.amount, self.currency)

    def check_expiry(self, now: datetime) -> None:
        if self.expires_at is not None and self.expires_at <= now:
            raise ValidationFailed("A hold must expire in the future.", field="expires_at")

    def request(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "amount": self.amount,
            "brand": self.brand_id,
            "service": self.service_id,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "expires_at": self.expires_at,
            "metadata": self.metadata or {},
            "memo": self.memo,
        }

    def account_ids(self) -> tuple[int, ...]:
        return (self.account_id,)

    def plan(self, ctx: Context) -> Plan:
        now, amount = ctx.now, self.amount
        today = business_date(now)
        chain = chain_of(ctx.locked, self.account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, self.currency, amount)
        check_status(chain, allow_blocked=False)
        check_brand(named, self.brand_id, self.service)
        check_write_off_limits(chain, amount, today)
        check_funds(payer, amount, now)
        spend(chain, amount, today)
        reserve(payer, amount)
        hold = Hold(
            account_id=self.account_id,
            payer_id=payer.id,
            amount=amount,
            currency=named.currency,
            brand_id=self.brand_id,
            service_id=pk_of(self.service),
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            metadata=self.metadata or {},
            memo=self.memo,
            expires_at=self.expires_at or hold_default_expiry(now),
            reserved_on=today,
            caller=ctx.caller.ref,
            created_by_id=ctx.caller.user_id,
            request_id=ctx.caller.request_id,
            created_at=now,
        )
        return Plan(new_hold=hold, hold_previous=None)


@dataclass(slots=True, kw_only=True)
class HoldItem(Operation):
    """An operation on an existing hold: ``hold`` is its id, or (bulk only) the
    ``HoldCreateItem`` of the same call that creates it. ``hold_obj`` is the row the
    planner works on (locked, or created earlier in the same batch)."""

    hold: int | HoldCreateItem
    hold_obj: Hold | None = field(default=None, repr=False, compare=False)

    @property
    def hold_id(self) -> int | None:
        return self.hold if isinstance(self.hold, int) else None

    def account_ids(self) -> tuple[int, ...]:
        return (self.hold_obj.account_id, self.hold_obj.payer_id)


@dataclass(slots=True, kw_only=True)
class HoldCaptureItem(HoldItem):
    """Turn a hold into a write-off, fully (``amount`` None) or partly (``hold_capture``)."""

    operation: ClassVar[str] = "hold_capture"
    amount: Any = None
    idempotency_key: str | None = None

    def prepare(self, caller: Caller, now: datetime) -> None:
        self.amount = None if self.amount is None else money(self.amount)

    def request(self) -> dict[str, Any]:
        return {"hold": self.hold_id, "amount": self.amount}

    def plan(self, ctx: Context) -> Plan:
        hold, now, locked = self.hold_obj, ctx.now, ctx.locked
        if hold.status != Hold.Status.ACTIVE or hold.expires_at <= now:
            raise HoldNotActive(hold=hold.pk, status=hold.status)
        captured = hold.amount if self.amount is None else money(self.amount, hold.currency)
        if captured > hold.amount:
            raise InvalidAmount(
                "A capture cannot exceed the held amount.",
                held=str(hold.amount),
                requested=str(captured),
            )
        chain = chain_of(locked, hold.account_id)
        check_status(chain, allow_blocked=True)
        payer = locked[hold.payer_id]
        release(chain, payer, hold.amount, captured, hold.reserved_on, business_date(now))
        revenue = ctx.system(
            Account.Kind.REVENUE,
            hold.currency,
            brand_id=hold.brand_id,
            service_id=hold.service_id,
        )
        after = apply_to_balance(payer, -captured, now)
        head = header(
            kind=TransactionKind.HOLD_CAPTURE,
            caller=ctx.caller,
            account_id=hold.account_id,
            amount=captured,
            currency=hold.currency,
            brand_id=hold.brand_id,
            service_id=hold.service_id,
            subject_type=hold.subject_type,
            subject_id=hold.subject_id,
            metadata=hold.metadata,
            memo=hold.memo,
            hold_id=hold.pk,
        )
        sub = hold.account_id if hold.account_id != payer.id else None
        legs = [Leg(payer.id, -captured, sub, after), Leg(revenue, captured)]
        hold.status = Hold.Status.CAPTURED
        hold.captured_amount = captured
        hold.closed_at = now
        return Plan(
            posting=Posting(head, legs, now, hold=hold),
            closed_hold=hold,
            hold_previous=Hold.Status.ACTIVE,
        )


@dataclass(slots=True, kw_only=True)
class HoldVoidItem(HoldItem):
    """Release a hold without charging anything (``hold_void``)."""

    operation: ClassVar[str] = "hold_void"
    status: ClassVar[str] = Hold.Status.VOIDED
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        return {"hold": self.hold_id}

    def plan(self, ctx: Context) -> Plan:
        hold, now = self.hold_obj, ctx.now
        if hold.status != Hold.Status.ACTIVE:
            raise HoldNotActive(hold=hold.pk, status=hold.status)
        if self.status == Hold.Status.EXPIRED and hold.expires_at > now:
            raise HoldNotActive("The hold has not expired yet.", hold=hold.pk)
        chain = chain_of(ctx.locked, hold.account_id)
        payer = ctx.locked[hold.payer_id]
        release(chain, payer, hold.amount, ZERO, hold.reserved_on, business_date(now))
        hold.status = self.status
        hold.closed_at = now
        return Plan(closed_hold=hold, hold_previous=Hold.Status.ACTIVE)


@dataclass(slots=True, kw_only=True)
class HoldExpireItem(HoldVoidItem):
    """Release a hold whose expiry has passed (``hold_expire``); takes no idempotency key."""

    operation: ClassVar[str] = "hold_expire"
    status: ClassVar[str] = Hold.Status.EXPIRED


def hold_create(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    expires_at: datetime | None = None,
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Hold:
    """Reserve funds on the root payer for a later capture (a pre-order).

    Checked exactly like a debit; the reserved amount counts against
    ``held`` of the payer and the write-off limits of the whole chain.
    """
    item = HoldCreateItem(
        account_id=pk_of(account),
        amount=amount,
        brand_id=pk_of(brand),
        service_id=pk_of(service),
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        expires_at=expires_at,
        currency=currency,
    )
    item.prepare(caller, None)
    item.service = (
        Service.objects.only("id", "brand_id").get(pk=service)
        if isinstance(service, int)
        else service
    )
    item.check_expiry(timezone.now())
    return post_one(item, caller=caller, idempotency_key=idempotency_key, prepared=True)


def _lock_hold(hold_id: int) -> tuple[dict[int, LockedAccount], Hold, datetime]:
    """Lock the hold's account chain (and its original payer), then the hold itself."""
    ids = Hold.objects.filter(pk=hold_id).values_list("account_id", "payer_id").first()
    if ids is None:
        raise Hold.DoesNotExist(f"No hold with id {hold_id}.")
    locked = lock_accounts(ids)
    hold = Hold.objects.select_for_update().get(pk=hold_id)
    return locked, hold, timezone.now()


def _post_on_hold(item: HoldItem, caller: Caller, record: IdempotencyRecord | None) -> Any:
    locked, item.hold_obj, now = _lock_hold(item.hold)
    ctx = Context(locked, now, caller)
    return write_plan(item.plan(ctx), ctx, record)


def hold_capture(
    *,
    hold: Hold | int,
    amount: Any = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Turn a hold into a write-off, fully or partly; a partial capture releases the rest.

    Not refused for funds or limits (they were checked when reserving), nor
    for a blocked account; refused with ``hold_not_active`` once the hold is
    captured, voided or past its expiry.
    """
    item = HoldCaptureItem(hold=pk_of(hold), amount=amount)
    item.prepare(caller, None)
    return idempotent(
        caller=caller,
        key=idempotency_key,
        operation=item.operation,
        request=item.request(),
        run=lambda record: _post_on_hold(item, caller, record),
    )


def hold_void(
    *, hold: Hold | int, caller: Caller = SYSTEM, idempotency_key: str | None = None
) -> Hold:
    """Release a hold without charging anything. Refused once the hold is no longer active."""
    item = HoldVoidItem(hold=pk_of(hold))
    return idempotent(
        caller=caller,
        key=idempotency_key,
        operation=item.operation,
        request=item.request(),
        run=lambda record: _post_on_hold(item, caller, record),
    )


def hold_expire(*, hold: Hold | int) -> Hold:
    """Release a hold whose expiry has passed."""
    item = HoldExpireItem(hold=pk_of(hold))
    return run_locked(lambda: _post_on_hold(item, SYSTEM, None))


def holds_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Expire every active hold past its expiry, each in its own transaction. Returns how many."""
    now = now or timezone.now()
    expired = 0
    # Keyset over (expires_at, id): a hold that ``hold_expire`` refuses (closed meanwhile,
    # or not yet due by the clock when ``now`` is ahead of it) stays active and must not
    # be fetched again, or the sweep would loop over the same batch forever.
    after: Q = Q()
    while True:
        due = list(
            Hold.objects.filter(after, status=Hold.Status.ACTIVE, expires_at__lte=now)
            .order_by("expires_at", "id")
            .values_list("pk", "expires_at")[:batch_size]
        )
        if not due:
            return expired
        for hold_id, _ in due:
            try:
                hold_expire(hold=hold_id)
                expired += 1
            except HoldNotActive:
                continue
        if len(due) < batch_size:
            return expired
        last_id, last_expiry = due[-1]
        after = Q(expires_at__gt=last_expiry) | Q(expires_at=last_expiry, pk__gt=last_id)
