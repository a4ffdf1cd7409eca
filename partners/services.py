"""Writes of the partners app: webhook endpoints and the delivery of their outbox."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.models import Partner
from access.services import InvalidPartnerSetting
from partners.destinations import validate_webhook_url
from partners.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)

# --------------------------------------------------------------------------- webhooks


@transaction.atomic
def webhook_endpoint_create(
    *,
    partner: Partner,
    url: str,
    event_types: Iterable[str],
    secret: str | None = None,
    is_active: bool = True,
) -> WebhookEndpoint:
    """Register an endpoint; its URL must resolve to public addresses only
    (unless ``BILLING_WEBHOOK_ALLOW_PRIVATE``), checked again at every delivery."""
    validate_webhook_url(url)
    event_types = sorted(set(event_types))
    unknown = set(event_types) - set(WebhookEventType.values)
    if unknown or not event_types:
        raise InvalidPartnerSetting(
            "Choose one or more known event types.", field="event_types", unknown=sorted(unknown)
        )
    endpoint = WebhookEndpoint(
        partner=partner,
        url=url,
        secret=secret or secrets.token_urlsafe(32),
        event_types=event_types,
        is_active=is_active,
    )
    endpoint.full_clean()
    endpoint.save()
    return endpoint


@transaction.atomic
def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue a delivery again now (after it succeeded or gave up, or ahead of its backoff)."""
    from partners.tasks import enqueue_delivery

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: enqueue_delivery(delivery.pk))
    delivery.refresh_from_db()
    return delivery


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> WebhookAttempt | None:
    """Make one HTTP attempt of a due delivery and log it; None when it is not due.

    The delivery is claimed first (its next attempt pushed past the HTTP
    timeout, under a row lock that concurrent workers skip), so two workers
    never send the same delivery at once and a crashed worker's claim lapses.
    The HTTP request runs outside any database transaction.
    """
    from partners import webhooks

    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(
                pk=delivery_id,
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now,
            )
            .first()
        )
        if delivery is None:
            return None
        lease = timedelta(seconds=settings.BILLING_WEBHOOK_TIMEOUT * 2 + 30)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now + lease)
    outcome = webhooks.deliver(delivery.endpoint, delivery.event, delivery.pk)
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        number = delivery.attempts + 1
        attempted_at = timezone.now()
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            attempted_at=attempted_at,
            response_status=outcome.status,
            response_body=outcome.body,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            succeeded=outcome.succeeded,
        )
        delivery.attempts = number
        delivery.last_attempt_at = attempted_at
        if outcome.succeeded:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.delivered_at = attempted_at
        elif number >= settings.BILLING_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
        else:
            delivery.next_attempt_at = now + timedelta(seconds=webhooks.backoff_seconds(number))
        delivery.save(
            update_fields=[
                "attempts",
                "last_attempt_at",
                "status",
                "delivered_at",
                "next_attempt_at",
            ]
        )
    return attempt


def webhooks_deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Attempt up to ``limit`` pending deliveries whose next attempt is due; return how many."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(webhook_deliver(delivery_id=pk, now=now) is not None for pk in due)
