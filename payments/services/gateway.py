"""Online payments: intents, the outbound calls to the gateway, callbacks and the status poll.

* ``payment_intent_create`` checks the account and the payment rules, writes the
  intent and its ``create_payment`` call (an outbox row) in one transaction, and
  queues the call on commit.
* ``gateway_call_attempt`` makes one attempt of a due call: it claims the row
  (a lease under a row lock that concurrent workers skip), calls the gateway
  outside any database transaction, and records the outcome: done, or the next
  attempt after ``base * 2^(n-1)`` seconds, or ``dead`` after the last one (the
  intent is then ``dead``: it never reached the gateway). ``gateway_calls_due``
  retries what is due (a periodic task; it also picks up calls whose queued task
  was lost).
* ``gateway_callback_receive`` logs every callback, refuses a forged one
  (``invalid_signature``, logged as a warning) and settles the intent it names.
* ``payment_intents_poll`` asks the gateway about intents pending longer than
  ``BILLING_GATEWAY_POLL_AFTER_SECONDS`` (lost callbacks) and settles them.
* ``payment_intent_settle`` is where both meet: it locks the intent's row and
  moves it once from ``pending`` (or ``created``) to ``succeeded``, posting the
  payment (channel ``gateway``, external id ``gw:<gateway payment id>``, the
  ledger's idempotency key ``intent:<id>``), or to ``failed``. Anything later
  finds it settled and posts nothing. A payment the ledger or a rule refuses at
  that moment (the account was closed meanwhile) goes to suspense: the money
  has arrived.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from core.caller import Caller
from core.errors import DomainError, ValidationFailed
from ledger.services import money, payment_post, post_bulk
from payments.gateway import GatewayError, adapter
from payments.models import GatewayCall, GatewayCallback, PaymentIntent, SuspenseItem
from payments.rules import refusals
from payments.services.items import SuspenseReceiptItem

logger = logging.getLogger("payments.gateway")
GATEWAY = Caller.system("gateway")
SUSPENSE_REASONS = {
    "account_closed": SuspenseItem.Reason.ACCOUNT_CLOSED,
    "currency_mismatch": SuspenseItem.Reason.CURRENCY_MISMATCH,
}


def backoff_seconds(attempt_number: int) -> int:
    base = settings.BILLING_GATEWAY_BACKOFF_BASE
    return int(min(base * 2 ** (attempt_number - 1), settings.BILLING_GATEWAY_BACKOFF_MAX))


def _enqueue(call_id: int) -> None:
    if settings.BILLING_GATEWAY_ENQUEUE:
        from django_q.tasks import async_task

        async_task("payments.tasks.gateway_call", call_id, group="gateway")


def enqueue_call(call: GatewayCall) -> None:
    transaction.on_commit(lambda: _enqueue(call.pk))


# --------------------------------------------------------------------------- intents


@transaction.atomic
def payment_intent_create(
    *,
    account: Account,
    amount: Any,
    return_url: str,
    caller: Caller,
    brand_id: int | None = None,
) -> PaymentIntent:
    """An online payment to ``account``: checked now (status, rules), created at the gateway
    by a queued call; its ``redirect_url`` appears once the gateway answered."""
    amount = money(amount, account.currency)
    if not return_url.startswith(("http://", "https://")):
        raise ValidationFailed("return_url: an http(s) URL.", return_url=["An http(s) URL."])
    if account.kind != Account.Kind.CLIENT:
        raise ValidationFailed("account: not a client account.", account=["Not a client account."])
    if account.status == Account.Status.CLOSED:
        from accounts.exceptions import AccountClosed

        raise AccountClosed(account=account.number)
    (refusal,) = refusals([(account.pk, amount)], Account.Channel.GATEWAY)
    if refusal is not None:
        raise refusal
    if brand_id is None:
        brand_id = account.brands.order_by("pk").values_list("pk", flat=True).first()
    intent = PaymentIntent.objects.create(
        account=account,
        brand_id=brand_id,
        amount=amount,
        currency=account.currency,
        return_url=return_url,
        caller=caller.ref,
    )
    call = GatewayCall.objects.create(
        kind=GatewayCall.Kind.CREATE_PAYMENT, intent=intent, next_attempt_at=timezone.now()
    )
    enqueue_call(call)
    return intent


def _post_payment(intent: PaymentIntent, gateway_payment_id: str) -> None:
    """Post the intent's money (the row is locked by the caller); to suspense if refused."""
    try:
        with transaction.atomic():
            intent.transaction = payment_post(
                account=intent.account_id,
                amount=intent.amount,
                channel=Account.Channel.GATEWAY,
                external_id=f"gw:{gateway_payment_id}"[:100],
                memo=f"Online payment (intent {intent.pk})",
                currency=intent.currency,
                brand=intent.brand_id,
                metadata={"intent": intent.pk, "gateway_payment": gateway_payment_id},
                caller=GATEWAY,
                idempotency_key=f"intent:{intent.pk}",
            )
        return
    except DomainError as exc:
        refusal = exc
    (receipt,) = post_bulk(
        [
            SuspenseReceiptItem(
                amount=intent.amount,
                currency=intent.currency,
                channel=Account.Channel.GATEWAY,
                memo=f"Suspense: online payment (intent {intent.pk})",
                metadata={"intent": intent.pk, "gateway_payment": gateway_payment_id},
            )
        ],
        caller=GATEWAY,
    )
    if isinstance(receipt, DomainError):  # pragma: no cover - suspense refuses nothing
        raise receipt
    intent.suspense_item = SuspenseItem.objects.create(
        account_number=intent.account.number,
        amount=intent.amount,
        currency=intent.currency,
        received_at=timezone.now(),
        reason=SUSPENSE_REASONS.get(refusal.code, SuspenseItem.Reason.REFUSED_BY_RULE),
        reason_detail=f"{refusal.code}: {refusal.message}"[:500],
        raw=f"gateway payment {gateway_payment_id} for intent {intent.pk}",
        receipt_transaction_id=receipt.pk,
    )


@transaction.atomic
def payment_intent_settle(
    *,
    intent: PaymentIntent | int,
    status: str,
    gateway_payment_id: str = "",
    amount: Decimal | None = None,
    source: str = "",
) -> tuple[PaymentIntent, bool]:
    """Settle an intent with what the gateway says; ``(intent, changed)``. Locks the intent.

    ``succeeded`` posts the payment once; ``failed`` marks it failed; ``pending`` changes
    nothing. Already settled: nothing happens (``changed`` False).
    """
    pk = intent.pk if isinstance(intent, PaymentIntent) else intent
    locked = PaymentIntent.objects.select_for_update().select_related("account").get(pk=pk)
    if locked.status in PaymentIntent.SETTLED or status not in ("succeeded", "failed"):
        return locked, False
    gateway_payment_id = gateway_payment_id or locked.gateway_payment_id or ""
    if amount is not None and amount != locked.amount:
        logger.warning(
            "gateway amount %s differs from intent %s (%s): not settled", amount, pk, locked.amount
        )
        return locked, False
    if status == "succeeded":
        _post_payment(locked, gateway_payment_id)
        locked.status = PaymentIntent.Status.SUCCEEDED
    else:
        locked.status = PaymentIntent.Status.FAILED
        locked.failure = f"declined at the gateway ({source})"[:200]
    if gateway_payment_id and not locked.gateway_payment_id:
        locked.gateway_payment_id = gateway_payment_id
    locked.settled_at = timezone.now()
    locked.save()
    if locked.transaction_id is not None:
        _refund_overpayment(locked)
    return locked, True


def _refund_overpayment(intent: PaymentIntent) -> None:
    """With ``overpayment=refund``, what the payment left above zero goes back to the card."""
    from payments.rules import overpayment_policy
    from payments.services.refunds import refund_saga_start

    if overpayment_policy(intent.account_id) != "refund":
        return
    payer_id = next(
        e.account_id for e in intent.transaction.entries.all() if e.balance_after is not None
    )
    balance, held = Account.objects.filter(pk=payer_id).values_list("balance", "held").get()
    overpaid = min(intent.amount, balance - held)
    if overpaid > 0:
        refund_saga_start(
            intent=intent, amount=overpaid, reason="Overpayment", kind="overpayment", caller=GATEWAY
        )


# --------------------------------------------------------------------------- outbound calls


def _claim(call_id: int, now: datetime) -> GatewayCall | None:
    with transaction.atomic():
        call = (
            GatewayCall.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("intent", "saga")
            .filter(pk=call_id, status=GatewayCall.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if call is None:
            return None
        lease = timedelta(seconds=settings.BILLING_GATEWAY_TIMEOUT * 2 + 30)
        GatewayCall.objects.filter(pk=call.pk).update(next_attempt_at=now + lease)
    return call


def _create_payment(call: GatewayCall) -> dict[str, Any]:
    intent = call.intent
    payment = adapter().create_payment(
        order_id=intent.order_id,
        amount=intent.amount,
        currency=intent.currency,
        return_url=intent.return_url,
        callback_url=settings.BILLING_GATEWAY_CALLBACK_URL,
    )
    with transaction.atomic():
        locked = PaymentIntent.objects.select_for_update().get(pk=intent.pk)
        if locked.status == PaymentIntent.Status.CREATED:
            locked.status = PaymentIntent.Status.PENDING
            locked.gateway_payment_id = payment.id
            locked.redirect_url = payment.redirect_url
            locked.save()
    if payment.status in ("succeeded", "failed"):
        payment_intent_settle(
            intent=intent.pk,
            status=payment.status,
            gateway_payment_id=payment.id,
            amount=payment.amount,
            source="create",
        )
    return {"id": payment.id, "status": payment.status, "redirect_url": payment.redirect_url}


def _give_up(call: GatewayCall) -> None:
    """The call is dead: what it was for cannot go on by itself."""
    if call.kind == GatewayCall.Kind.CREATE_PAYMENT:
        PaymentIntent.objects.filter(pk=call.intent_id, status=PaymentIntent.Status.CREATED).update(
            status=PaymentIntent.Status.DEAD,
            failure=f"the gateway was not reached: {call.last_error}"[:200],
            settled_at=timezone.now(),
        )
    else:
        from payments.services.refunds import refund_saga_call_dead

        refund_saga_call_dead(saga=call.saga_id, error=call.last_error)


def gateway_call_attempt(*, call_id: int, now: datetime | None = None) -> GatewayCall | None:
    """One attempt of a due call (see the module docstring); None when it is not due."""
    now = now or timezone.now()
    call = _claim(call_id, now)
    if call is None:
        return None
    error, retryable, response = "", True, {}
    try:
        if call.kind == GatewayCall.Kind.CREATE_PAYMENT:
            response = _create_payment(call)
        else:
            from payments.services.refunds import refund_saga_call_gateway

            response = refund_saga_call_gateway(saga=call.saga_id)
    except GatewayError as exc:
        error, retryable = str(exc), exc.retryable
    with transaction.atomic():
        call = GatewayCall.objects.select_for_update().get(pk=call.pk)
        call.attempts += 1
        if not error:
            call.status, call.done_at, call.response = (
                GatewayCall.Status.DONE,
                timezone.now(),
                response,
            )
            call.last_error = ""
        else:
            call.last_error = error[:500]
            if not retryable or call.attempts >= settings.BILLING_GATEWAY_MAX_ATTEMPTS:
                call.status = GatewayCall.Status.DEAD
                _give_up(call)
            else:
                call.next_attempt_at = now + timedelta(seconds=backoff_seconds(call.attempts))
        call.save()
    return call


def gateway_calls_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Attempt up to ``limit`` pending calls whose next attempt is due; return how many."""
    now = now or timezone.now()
    due = list(
        GatewayCall.objects.filter(status=GatewayCall.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(gateway_call_attempt(call_id=pk, now=now) is not None for pk in due)


@transaction.atomic
def gateway_call_retry(*, call: GatewayCall | int) -> GatewayCall:
    """Staff take a dead call out of the dead letters: pending again, attempts from zero."""
    pk = call.pk if isinstance(call, GatewayCall) else call
    locked = GatewayCall.objects.select_for_update().get(pk=pk)
    if locked.status != GatewayCall.Status.DEAD:
        return locked
    locked.status, locked.attempts, locked.next_attempt_at = (
        GatewayCall.Status.PENDING,
        0,
        timezone.now(),
    )
    locked.save()
    if locked.kind == GatewayCall.Kind.CREATE_PAYMENT:
        PaymentIntent.objects.filter(pk=locked.intent_id, status=PaymentIntent.Status.DEAD).update(
            status=PaymentIntent.Status.CREATED, failure="", settled_at=None
        )
    enqueue_call(locked)
    return locked


# --------------------------------------------------------------------------- callbacks, poll


def gateway_callback_receive(
    *, body: bytes, headers: dict[str, str], remote_addr: str = ""
) -> GatewayCallback:
    """Log a callback, verify it, settle its intent. Forged or unreadable: refused, logged."""
    signature = next((v for k, v in headers.items() if k.lower() == "x-sandbox-signature"), "")
    record = GatewayCallback(
        body=body.decode("utf-8", "replace")[:100_000].replace("\x00", ""),
        signature=signature[:300],
        remote_addr=remote_addr[:64],
    )
    try:
        event = adapter().parse_callback(body, {"X-Sandbox-Signature": signature})
    except GatewayError as exc:
        record.outcome = (
            GatewayCallback.Outcome.INVALID
            if str(exc) == "malformed_callback"
            else GatewayCallback.Outcome.REFUSED
        )
        record.error = str(exc)[:64]
        record.save()
        logger.warning("gateway callback refused (%s) from %s", exc, remote_addr or "?")
        return record
    record.verified = True
    intent = (
        PaymentIntent.objects.filter(gateway_payment_id=event.payment_id).first()
        or PaymentIntent.objects.filter(order_id=event.order_id).first()
    )
    if intent is None:
        record.outcome, record.error = GatewayCallback.Outcome.UNKNOWN, "unknown_payment"
        record.save()
        return record
    with transaction.atomic():
        _, changed = payment_intent_settle(
            intent=intent.pk,
            status=event.status,
            gateway_payment_id=event.payment_id,
            amount=event.amount,
            source="callback",
        )
        record.intent = intent
        record.outcome = (
            GatewayCallback.Outcome.APPLIED if changed else GatewayCallback.Outcome.ALREADY_SETTLED
        )
        record.save()
    return record


def payment_intents_poll(*, now: datetime | None = None, limit: int = 200) -> int:
    """Ask the gateway about intents pending with no callback for a while; settle them.
    Returns how many were settled."""
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=settings.BILLING_GATEWAY_POLL_AFTER_SECONDS)
    stale = list(
        PaymentIntent.objects.filter(
            status=PaymentIntent.Status.PENDING,
            gateway_payment_id__isnull=False,
            updated_at__lte=quiet_since,
        )
        .order_by("updated_at", "id")
        .values_list("pk", "gateway_payment_id")[:limit]
    )
    settled = 0
    gateway = adapter()
    for pk, payment_id in stale:
        try:
            payment = gateway.payment_status(payment_id)
        except GatewayError as exc:
            logger.info("status of intent %s not known yet: %s", pk, exc)
            continue
        _, changed = payment_intent_settle(
            intent=pk,
            status=payment.status,
            gateway_payment_id=payment.id,
            amount=payment.amount,
            source="poll",
        )
        settled += changed
        if not changed:
            PaymentIntent.objects.filter(pk=pk).update(last_polled_at=now, updated_at=now)
    return settled
