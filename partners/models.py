"""Webhooks of the partners (``access.Partner``): endpoints and the outbox that feeds them.

Webhooks use a transactional outbox: ``WebhookEvent`` and one
``WebhookDelivery`` per subscribed endpoint are written in the same database
transaction as the change they describe, then delivered by django-q2 with
exponential backoff; every HTTP attempt is a ``WebhookAttempt``.
"""

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from access.models import ApiKey, Partner
from core.audit.models import audit_event_model


class WebhookEventType(models.TextChoices):
    TRANSACTION_POSTED = "transaction.posted", "Transaction posted"
    PAYMENT_RECEIVED = "payment.received", "Payment received"
    ACCOUNT_BLOCKED = "account.blocked", "Account blocked"
    ACCOUNT_UNBLOCKED = "account.unblocked", "Account unblocked"
    HOLD_CREATED = "hold.created", "Hold created"
    HOLD_CAPTURED = "hold.captured", "Hold captured"
    HOLD_VOIDED = "hold.voided", "Hold voided"
    HOLD_EXPIRED = "hold.expired", "Hold expired"
    INVOICE_ISSUED = "invoice.issued", "Invoice issued"


class WebhookEndpoint(models.Model):
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    secret = models.CharField(
        max_length=128, help_text="Shared secret for the X-Billing-Signature HMAC."
    )
    event_types = ArrayField(
        models.CharField(max_length=64, choices=WebhookEventType.choices),
        help_text="Event types this endpoint receives.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.partner}: {self.url}"


class WebhookEvent(models.Model):
    """Something that happened, as sent to partners: ``{"id", "type", "created_at", "data"}``."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=64, choices=WebhookEventType.choices)
    data = models.JSONField()
    brand_ids = ArrayField(models.BigIntegerField(), default=list)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


class WebhookDelivery(models.Model):
    """The outbox row: one event to one endpoint, retried with backoff until a 2xx."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (gave up)"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        permissions = [("redeliver_webhookdelivery", "Can redeliver webhooks")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="partners_delivery_due_idx",
                condition=Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"delivery #{self.pk} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery #{self.delivery_id}"


# An API key's brands (its scope) are rows of the automatic table access_apikey_brands,
# which exists only once brands.Brand is loaded, after access: its audit table lives here,
# beside the key admin that shows it.
class ApiKeyBrandEvent(
    audit_event_model(
        ApiKey.brands.through,
        fields=["apikey", "brand"],
        change=False,
        delete=True,
        app_label="partners",
        verbose_name="API key brand audit event",
    )
):
    """A brand was added to or removed from an API key's scope (a database trigger)."""
