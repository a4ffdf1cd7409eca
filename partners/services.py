"""Writes of the partners app: partners, API keys, client links, webhooks, replayable responses."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Client
from accounts.services import client_create
from billing_site.errors import DomainError
from brands.models import Brand
from partners.models import (
    ApiIdempotencyRecord,
    ApiKey,
    Partner,
    PartnerClient,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)

KEY_PREFIX = "bk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


class InvalidPartnerSetting(DomainError):
    code = "validation_error"
    status = 400
    default_message = "An API key is scoped to one or more of its partner's brands."


# --------------------------------------------------------------------------- partners and keys


@transaction.atomic
def partner_get_or_create(*, name: str, brands: Iterable[Brand] = ()) -> Partner:
    """The partner with this name (created if needed), with ``brands`` added to what it may use."""
    partner, _ = Partner.objects.get_or_create(name=name.strip())
    brands = list(brands)
    if brands:
        partner.brands.add(*brands)
    return partner


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *, partner: Partner, brands: Iterable[Brand], name: str = ""
) -> tuple[ApiKey, str]:
    """Create a key scoped to ``brands`` (a subset of the partner's); return it and the raw key.

    The raw key (``bk_<prefix>.<secret>``) is never stored and cannot be shown again.
    """
    brands = list(brands)
    allowed = set(partner.brands.values_list("pk", flat=True))
    if not brands or any(brand.pk not in allowed for brand in brands):
        raise InvalidPartnerSetting(field="brands")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        partner=partner, name=name, prefix=prefix, hashed_secret=_hash_secret(secret)
    )
    key.brands.set(brands)
    return key, f"{KEY_PREFIX}{prefix}.{secret}"


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key: at once in this process, within BILLING_API_KEY_CACHE_SECONDS elsewhere.

    Revoking twice keeps the first revocation time.
    """
    _authenticated.clear()
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


@dataclass(frozen=True)
class ApiPrincipal:
    """Who a request authenticated with an API key is: a partner acting for some brands."""

    key_id: int
    partner_id: int
    partner_name: str
    brand_ids: frozenset[int]

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __str__(self) -> str:
        return f"partner:{self.partner_id} ({self.partner_name})"


_AUTH_SQL = """
SELECT k.id, k.hashed_secret, k.revoked_at, k.last_used_at, p.id, p.name, p.is_active,
       ARRAY(SELECT kb.brand_id FROM partners_apikey_brands kb
             JOIN partners_partner_brands pb ON pb.brand_id = kb.brand_id AND pb.partner_id = p.id
             WHERE kb.apikey_id = k.id)
FROM partners_apikey k JOIN partners_partner p ON p.id = k.partner_id
WHERE k.prefix = %s
"""


# Recently authenticated keys per process: {sha256 of the raw key: (valid until, principal)}.
_authenticated: dict[str, tuple[float, ApiPrincipal]] = {}


def api_key_authenticate(raw_key: str, *, now: datetime | None = None) -> ApiPrincipal | None:
    """The principal of a valid, unrevoked key of an active partner, or None.

    A key seen valid in the last BILLING_API_KEY_CACHE_SECONDS is trusted
    without a query (a revocation reaches other processes within that time).
    Otherwise one indexed lookup by prefix, then a constant-time comparison of
    the secret's hash; ``last_used_at`` is written at most once a minute per key.
    """
    ttl = settings.BILLING_API_KEY_CACHE_SECONDS
    if ttl <= 0 or now is not None:
        return _api_key_lookup(raw_key, now=now)
    digest = hashlib.sha256(raw_key.encode()).hexdigest()
    cached = _authenticated.get(digest)
    clock = time.monotonic()
    if cached is not None and cached[0] > clock:
        return cached[1]
    principal = _api_key_lookup(raw_key, now=now)
    if principal is None:
        _authenticated.pop(digest, None)
    else:
        if len(_authenticated) > 10_000:
            _authenticated.clear()
        _authenticated[digest] = (clock + ttl, principal)
    return principal


def _api_key_lookup(raw_key: str, *, now: datetime | None) -> ApiPrincipal | None:
    if not raw_key.startswith(KEY_PREFIX) or "." not in raw_key:
        return None
    prefix, _, secret = raw_key[len(KEY_PREFIX) :].partition(".")
    if not prefix or not secret or len(prefix) > 16:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_AUTH_SQL, [prefix])
        row = cursor.fetchone()
    if row is None:
        # Same work as a real comparison, so timing does not tell whether a prefix exists.
        hmac.compare_digest(_hash_secret(secret), "0" * 64)
        return None
    key_id, hashed, revoked_at, last_used_at, partner_id, partner_name, active, brand_ids = row
    if not hmac.compare_digest(_hash_secret(secret), hashed):
        return None
    if revoked_at is not None or not active or not brand_ids:
        return None
    now = now or timezone.now()
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        threshold = now - LAST_USED_RESOLUTION
        ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=threshold), pk=key_id
        ).update(last_used_at=now)
    return ApiPrincipal(key_id, partner_id, partner_name, frozenset(brand_ids))


# --------------------------------------------------------------------------- clients


@transaction.atomic
def partner_client_create(*, partner_id: int | None, **fields: Any) -> Client:
    """Create a client; when a partner creates it, the partner sees it before it has accounts."""
    client = client_create(**fields)
    if partner_id is not None:
        PartnerClient.objects.create(partner_id=partner_id, client=client)
    return client


# --------------------------------------------------------------------------- idempotent responses


def api_response_record(
    *, caller: str, key: str, method: str, path: str, status_code: int, body: bytes
) -> None:
    """Keep the response to a money POST; call inside the posting's database transaction.

    A plain INSERT: it runs on every keyed money POST, and the ORM's save path
    costs several times the statement itself.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO partners_apiidempotencyrecord"
            " (caller, key, method, path, status_code, body, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [caller, key, method, path, status_code, body, timezone.now()],
        )


def api_response_replay(*, caller: str, key: str) -> ApiIdempotencyRecord | None:
    return ApiIdempotencyRecord.objects.filter(caller=caller, key=key).first()


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
