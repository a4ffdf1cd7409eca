"""The refund saga: money back to the payer's card through the gateway, in recorded steps.

    started --hold--> held --gateway refund--> succeeded --capture--> captured
                                          \\--> declined  --release--> released
    started --hold refused--> refused;  held --gateway unreachable, retries exhausted--> dead

1. **hold**: a ledger hold of the amount on the account (idempotency key
   ``refund-saga:<id>:hold``), so the money cannot be spent while the gateway
   works;
2. **call the gateway** (an outbound call with backoff, ``GatewayCall`` of kind
   ``refund``), idempotent at the gateway on ``refund_id = saga-<id>``: a call
   repeated after a timeout or a crash answers the first one's outcome;
3. **capture** on success: the hold is voided and a ``refund`` posted (keys
   ``:void`` and ``:refund``), in one database transaction; or **release** on
   failure: the hold is voided.

Each step locks the saga's row, checks the status it starts from, does its
work and records the new status with a ``RefundSagaStep`` in the same
transaction. So a crash anywhere leaves the saga at the last recorded step,
and ``refund_saga_run`` (queued at once, and run again by the periodic
``refund_sagas_resume``) carries on from there: a step already done is never
done again, the gateway is asked with the same ``refund_id``, and the ledger's
keys replay. Nothing is refunded twice.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from core.caller import Caller
from core.errors import DomainError, ValidationFailed
from ledger.exceptions import HoldNotActive
from ledger.services import hold_create, hold_void, money, refund_post
from payments.gateway import adapter
from payments.models import GatewayCall, PaymentIntent, RefundSaga, RefundSagaStep

SAGA = Caller.system("refund_saga")
HOLD_DAYS = 30


class RefundExceedsPayment(DomainError):
    code = "refund_exceeds_payment"
    status = 422
    default_message = "The refunds of a payment cannot exceed what was paid."


class RefundNotPossible(DomainError):
    code = "refund_not_possible"
    status = 409
    default_message = "This payment cannot be refunded through the gateway."


def _record(saga: RefundSaga, step: str, **detail: Any) -> None:
    saga.save()
    RefundSagaStep.objects.create(saga=saga, step=step, status_after=saga.status, detail=detail)


def _key(saga: RefundSaga, step: str) -> str:
    return f"refund-saga:{saga.pk}:{step}"


def _enqueue(saga_id: int) -> None:
    if settings.BILLING_GATEWAY_ENQUEUE:
        from django_q.tasks import async_task

        async_task("payments.tasks.refund_saga", saga_id, group="gateway")


@transaction.atomic
def refund_saga_start(
    *,
    intent: PaymentIntent | int,
    amount: Any,
    reason: str,
    kind: str = RefundSaga.Kind.RETURN,
    caller: Caller = SAGA,
) -> RefundSaga:
    """Start refunding (part of) a succeeded online payment. Locks the intent, so the
    refunds started for it never add up to more than it paid."""
    pk = intent.pk if isinstance(intent, PaymentIntent) else intent
    locked = PaymentIntent.objects.select_for_update().filter(pk=pk).first()
    if locked is None:
        from core.errors import NotFoundInScope

        raise NotFoundInScope("payment intent: not found.", intent=pk)
    if locked.status != PaymentIntent.Status.SUCCEEDED or locked.transaction_id is None:
        raise RefundNotPossible(
            "Only a succeeded online payment posted to its account can be refunded.",
            intent=pk,
            status=locked.status,
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("A refund needs a reason.", reason=["This field is required."])
    amount = money(amount, locked.currency)
    taken = RefundSaga.objects.filter(intent=locked).exclude(
        status__in=(RefundSaga.Status.RELEASED, RefundSaga.Status.REFUSED)
    ).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    if taken + amount > locked.amount:
        raise RefundExceedsPayment(
            intent=pk, paid=str(locked.amount), refunding=str(taken), asked=str(amount)
        )
    brand_id = locked.brand_id or locked.account.brands.values_list("pk", flat=True).first()
    if brand_id is None:
        raise RefundNotPossible("The account is linked to no brand to hold the funds for.")
    saga = RefundSaga(
        intent=locked,
        account_id=locked.account_id,
        amount=amount,
        currency=locked.currency,
        kind=kind,
        reason=reason[:500],
        caller=caller.ref,
    )
    _record(saga, "started", amount=str(amount), reason=saga.reason)
    transaction.on_commit(lambda: _enqueue(saga.pk))
    return saga


def _locked(saga_id: int) -> RefundSaga:
    return RefundSaga.objects.select_for_update().select_related("intent").get(pk=saga_id)


@transaction.atomic
def _hold(saga_id: int) -> RefundSaga:
    saga = _locked(saga_id)
    if saga.status != RefundSaga.Status.STARTED:
        return saga
    brand_id = saga.intent.brand_id or saga.account.brands.values_list("pk", flat=True).first()
    try:
        with transaction.atomic():
            hold = hold_create(
                account=saga.account_id,
                amount=saga.amount,
                brand=brand_id,
                memo=f"Refund saga #{saga.pk}: funds held",
                expires_at=timezone.now() + timedelta(days=HOLD_DAYS),
                currency=saga.currency,
                subject_type="refund_saga",
                subject_id=str(saga.pk),
                caller=SAGA,
                idempotency_key=_key(saga, "hold"),
            )
    except DomainError as exc:
        saga.status = RefundSaga.Status.REFUSED
        _record(saga, "hold_refused", code=exc.code, message=exc.message)
        return saga
    saga.hold, saga.status = hold, RefundSaga.Status.HELD
    _record(saga, "held", hold=hold.pk)
    return saga


@transaction.atomic
def _request(saga_id: int) -> GatewayCall:
    """The saga's one refund call (created the first time, found afterwards)."""
    saga = _locked(saga_id)
    call, created = GatewayCall.objects.get_or_create(
        kind=GatewayCall.Kind.REFUND,
        saga=saga,
        defaults={"intent_id": saga.intent_id, "next_attempt_at": timezone.now()},
    )
    if created:
        RefundSagaStep.objects.create(
            saga=saga, step="gateway_requested", status_after=saga.status, detail={"call": call.pk}
        )
    return call


def refund_saga_call_gateway(*, saga: int) -> dict[str, Any]:
    """The gateway refund call (``gateway_call_attempt`` makes it): ask, then record the
    answer on the saga. Raises ``GatewayError`` to be retried with backoff."""
    current = RefundSaga.objects.select_related("intent").get(pk=saga)
    if current.status != RefundSaga.Status.HELD:
        return {"status": current.gateway_status, "already": current.status}
    refund = adapter().refund(
        payment_id=current.intent.gateway_payment_id,
        refund_id=f"saga-{current.pk}",
        amount=current.amount,
    )
    with transaction.atomic():
        locked = _locked(saga)
        if locked.status == RefundSaga.Status.HELD:
            locked.gateway_status = refund.status
            locked.status = (
                RefundSaga.Status.SUCCEEDED
                if refund.status == "succeeded"
                else RefundSaga.Status.DECLINED
            )
            _record(locked, "gateway_answered", gateway_status=refund.status)
            transaction.on_commit(lambda: _enqueue(saga))
    return {"refund_id": refund.refund_id, "status": refund.status}


@transaction.atomic
def refund_saga_call_dead(*, saga: int, error: str) -> None:
    locked = _locked(saga)
    if locked.status == RefundSaga.Status.HELD:
        locked.status = RefundSaga.Status.DEAD
        _record(locked, "gateway_unreachable", error=error)


def _void(saga: RefundSaga, step: str) -> None:
    # A hold that expired on its own meanwhile has freed the funds already.
    with contextlib.suppress(HoldNotActive):
        hold_void(hold=saga.hold_id, caller=SAGA, idempotency_key=_key(saga, step))


@transaction.atomic
def _capture(saga_id: int) -> RefundSaga:
    saga = _locked(saga_id)
    if saga.status != RefundSaga.Status.SUCCEEDED:
        return saga
    _void(saga, "void")
    refund = refund_post(
        account=saga.account_id,
        amount=saga.amount,
        channel="gateway",
        memo=f"Refund to card (saga #{saga.pk}): {saga.reason}"[:500],
        currency=saga.currency,
        metadata={"refund_saga": saga.pk, "intent": saga.intent_id},
        caller=SAGA,
        idempotency_key=_key(saga, "refund"),
    )
    saga.refund_transaction, saga.status = refund, RefundSaga.Status.CAPTURED
    _record(saga, "captured", refund=refund.pk)
    return saga


@transaction.atomic
def _release(saga_id: int) -> RefundSaga:
    saga = _locked(saga_id)
    if saga.status != RefundSaga.Status.DECLINED:
        return saga
    _void(saga, "release")
    saga.status = RefundSaga.Status.RELEASED
    _record(saga, "released")
    return saga


def refund_saga_step(*, saga: RefundSaga | int) -> RefundSaga:
    """Do the one next step of a saga from its recorded status (nothing when it is final,
    dead, or waiting for the gateway call's next attempt)."""
    from payments.services.gateway import gateway_call_attempt

    pk = saga.pk if isinstance(saga, RefundSaga) else saga
    status = RefundSaga.objects.values_list("status", flat=True).get(pk=pk)
    if status == RefundSaga.Status.STARTED:
        return _hold(pk)
    if status == RefundSaga.Status.HELD:
        call = _request(pk)
        gateway_call_attempt(call_id=call.pk)
    elif status == RefundSaga.Status.SUCCEEDED:
        return _capture(pk)
    elif status == RefundSaga.Status.DECLINED:
        return _release(pk)
    return RefundSaga.objects.get(pk=pk)


def refund_saga_run(*, saga: RefundSaga | int) -> RefundSaga:
    """Step a saga until it is final or must wait (at most a handful of steps)."""
    pk = saga.pk if isinstance(saga, RefundSaga) else saga
    current = RefundSaga.objects.get(pk=pk)
    for _ in range(6):
        before = current.status
        current = refund_saga_step(saga=pk)
        if current.status in RefundSaga.FINAL or current.status == before:
            break
    return current


def refund_sagas_resume(*, older_than_seconds: int = 60) -> int:
    """Carry on every unfinished saga untouched for a while (after a crash); how many moved."""
    quiet = timezone.now() - timedelta(seconds=older_than_seconds)
    waiting = RefundSaga.objects.filter(
        status__in=(
            RefundSaga.Status.STARTED,
            RefundSaga.Status.HELD,
            RefundSaga.Status.SUCCEEDED,
            RefundSaga.Status.DECLINED,
        ),
        updated_at__lte=quiet,
    ).values_list("pk", "status")
    moved = 0
    for pk, status in list(waiting):
        moved += refund_saga_run(saga=pk).status != status
    return moved
