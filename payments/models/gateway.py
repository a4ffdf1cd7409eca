"""Online payments through a gateway: intents, outbound calls, callbacks, refund sagas.

Design overview
---------------
A **payment intent** is a payer's wish to pay an amount onto an account online.
Creating one writes the intent and an outbound **gateway call** (an outbox
row) in one transaction; a django-q2 task makes the call (exponential backoff
between attempts, a dead-letter state after the last one) and stores the
gateway's payment id and the redirect URL the payer is sent to. The gateway
tells the outcome with a signed **callback** (each one logged, forged ones
too); a periodic poll asks the gateway about intents whose callback never came.
Either way the intent's row is locked and its status moves once from
``pending`` to ``succeeded`` (posting the payment) or ``failed``: a second
callback, a callback racing the poll, all find it settled and post nothing.

A **refund saga** gives money back through the gateway in recorded steps: hold
the funds on the account (a ledger hold), call the gateway (idempotent on the
saga's id), then capture (the hold is released and a refund posted, in one
transaction) on success, or release the hold on failure. Each step is written
before the next begins, and ``refund_saga_resume`` carries on from the last
recorded one after a crash, never refunding twice.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from payments.models.intake import MONEY


def _order_id() -> str:
    return uuid.uuid4().hex


class PaymentIntent(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", "Created (not yet at the gateway)"
        PENDING = "pending", "Pending (the payer is paying)"
        SUCCEEDED = "succeeded", "Succeeded (payment posted)"
        FAILED = "failed", "Failed"
        DEAD = "dead", "Never reached the gateway"

    SETTLED = (Status.SUCCEEDED, Status.FAILED, Status.DEAD)

    order_id = models.CharField(max_length=32, unique=True, default=_order_id, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    brand = models.ForeignKey(
        "brands.Brand",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The brand the payer pays (its refunds hold funds for it).",
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    return_url = models.URLField(max_length=1000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATED)
    gateway_payment_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    redirect_url = models.URLField(max_length=1000, blank=True)
    transaction = models.ForeignKey(
        "ledger.Transaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    suspense_item = models.ForeignKey(
        "payments.SuspenseItem", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    caller = models.CharField(max_length=64, help_text="Who created it: user:<id>, partner:<id>.")
    failure = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="succeeded")
                | Q(transaction__isnull=False)
                | Q(suspense_item__isnull=False),
                name="%(app_label)s_%(class)s_succeeded_is_posted",
                violation_error_message="A succeeded intent names its posting.",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="An intent's amount is positive.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="payments_intent_status_idx"),
        ]

    def __str__(self) -> str:
        return f"intent #{self.pk} {self.amount} {self.currency} ({self.status})"


class RefundSaga(models.Model):
    class Status(models.TextChoices):
        STARTED = "started", "Started"
        HELD = "held", "Funds held"
        SUCCEEDED = "succeeded", "Gateway refunded (capture pending)"
        CAPTURED = "captured", "Refunded (captured)"
        DECLINED = "declined", "Gateway declined (release pending)"
        RELEASED = "released", "Declined (funds released)"
        DEAD = "dead", "Gateway unreachable (funds still held)"
        REFUSED = "refused", "Refused before anything was held"

    FINAL = (Status.CAPTURED, Status.RELEASED, Status.REFUSED)

    class Kind(models.TextChoices):
        OVERPAYMENT = "overpayment", "Overpayment"
        RETURN = "return", "Return"

    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.RETURN)
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STARTED)
    hold = models.ForeignKey(
        "ledger.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    refund_transaction = models.ForeignKey(
        "ledger.Transaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    gateway_status = models.CharField(max_length=20, blank=True)
    caller = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="A refund's amount is positive.",
            ),
            models.CheckConstraint(
                condition=~Q(status="captured") | Q(refund_transaction__isnull=False),
                name="%(app_label)s_%(class)s_captured_has_refund",
                violation_error_message="A captured refund names its refund transaction.",
            ),
        ]

    def __str__(self) -> str:
        return f"refund saga #{self.pk} {self.amount} ({self.status})"


class RefundSagaStep(models.Model):
    """One recorded step of a refund saga (append-only): what was done and what came back."""

    saga = models.ForeignKey(RefundSaga, on_delete=models.PROTECT, related_name="steps")
    step = models.CharField(max_length=20)
    status_after = models.CharField(max_length=10)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.step} -> {self.status_after}"


class GatewayCall(models.Model):
    """An outbound call to the gateway (an outbox row), made by django-q2 with backoff."""

    class Kind(models.TextChoices):
        CREATE_PAYMENT = "create_payment", "Create the payment"
        REFUND = "refund", "Refund"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        DEAD = "dead", "Dead (gave up)"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="calls")
    saga = models.ForeignKey(
        RefundSaga, on_delete=models.PROTECT, null=True, blank=True, related_name="calls"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    response = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["intent"],
                condition=Q(kind="create_payment"),
                name="%(app_label)s_%(class)s_one_create_per_intent",
                violation_error_message="An intent is created at the gateway once.",
            ),
            models.UniqueConstraint(
                fields=["saga"],
                condition=Q(kind="refund"),
                name="%(app_label)s_%(class)s_one_refund_call_per_saga",
                violation_error_message="A saga calls the gateway's refund once (retried).",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="payments_call_due")]

    def __str__(self) -> str:
        return f"{self.kind} call #{self.pk} ({self.status}, {self.attempts} attempts)"


class GatewayCallback(models.Model):
    """Every callback received, verified or not (forged ones are kept as evidence)."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        ALREADY_SETTLED = "already_settled", "Already settled (ignored)"
        REFUSED = "refused", "Refused (signature)"
        UNKNOWN = "unknown", "Unknown payment"
        INVALID = "invalid", "Not a valid callback"

    received_at = models.DateTimeField(auto_now_add=True)
    body = models.TextField()
    signature = models.CharField(max_length=300, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    verified = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.CharField(max_length=64, blank=True)
    intent = models.ForeignKey(
        PaymentIntent, on_delete=models.PROTECT, null=True, blank=True, related_name="callbacks"
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"callback #{self.pk} ({self.outcome})"
