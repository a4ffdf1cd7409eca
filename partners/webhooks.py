"""Webhook outbox: signal receivers that record events, and the signed HTTP delivery.

The ledger and accounts send their signals *inside* the database transaction
that made the change; the receivers here insert the event and one delivery
per subscribed endpoint in that same transaction (so an event exists exactly
when its change does) and queue the delivery with ``transaction.on_commit``.

Posting is hot (thousands per second), so the receivers first look at an
in-process snapshot of which (event type, brand) pairs anyone subscribes to,
refreshed every ``BILLING_WEBHOOK_SUBSCRIPTION_TTL`` seconds and dropped at
once when this process changes an endpoint or a partner. With no subscriber
the receiver returns without touching the database; another process's new
endpoint starts receiving events within the TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from access.models import Partner
from accounts.models import Account
from accounts.signals import account_status_changed
from ledger.api.serializers import HoldSerializer, TransactionSerializer
from ledger.models import Hold, Transaction, TransactionKind
from ledger.signals import hold_changed, transaction_posted
from partners.models import WebhookEndpoint, WebhookEvent, WebhookEventType

SIGNATURE_HEADER = "X-Billing-Signature"

# --------------------------------------------------------------------------- subscriptions

_lock = threading.Lock()
_snapshot: dict[str, Any] = {"expires": 0.0, "subs": {}}


def invalidate_subscriptions(**_: Any) -> None:
    _snapshot["expires"] = 0.0


def subscriptions() -> dict[str, frozenset[int]]:
    """{event type: brand ids some active endpoint of an active partner listens for}."""
    now = time.monotonic()
    if now < _snapshot["expires"]:
        return _snapshot["subs"]
    with _lock:
        if now < _snapshot["expires"]:
            return _snapshot["subs"]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT t.type, pb.brand_id FROM partners_webhookendpoint e"
                " JOIN access_partner p ON p.id = e.partner_id AND p.is_active"
                " JOIN access_partner_brands pb ON pb.partner_id = p.id"
                " CROSS JOIN LATERAL unnest(e.event_types) AS t(type)"
                " WHERE e.is_active"
            )
            pairs: dict[str, set[int]] = {}
            for event_type, brand_id in cursor.fetchall():
                pairs.setdefault(event_type, set()).add(brand_id)
        _snapshot["subs"] = {k: frozenset(v) for k, v in pairs.items()}
        _snapshot["expires"] = now + settings.BILLING_WEBHOOK_SUBSCRIPTION_TTL
        return _snapshot["subs"]


def _brand_ids_of_accounts(account_ids: list[int]) -> set[int]:
    through = Account.brands.through
    return set(
        through.objects.filter(account_id__in=account_ids).values_list("brand_id", flat=True)
    )


_RECORD_SQL = """
WITH ev AS (
    INSERT INTO partners_webhookevent (public_id, type, data, brand_ids, created_at)
    VALUES (%s, %s, %s::jsonb, %s, %s) RETURNING id
)
INSERT INTO partners_webhookdelivery
    (event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
SELECT ev.id, e.id, 'pending', 0, %s, %s
FROM ev, partners_webhookendpoint e JOIN access_partner p ON p.id = e.partner_id
WHERE e.is_active AND p.is_active AND %s = ANY(e.event_types)
  AND EXISTS (SELECT 1 FROM access_partner_brands pb
              WHERE pb.partner_id = p.id AND pb.brand_id = ANY(%s))
RETURNING id
"""


def record_event(event_type: str, data: dict[str, Any], brand_ids: set[int]) -> list[int]:
    """Write the event and its deliveries (in the caller's transaction); queue them on commit."""
    subscribed = subscriptions().get(event_type, frozenset())
    brands = sorted(brand_ids & subscribed)
    if not brands:
        return []
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD_SQL,
            [
                uuid.uuid4(),
                event_type,
                json.dumps(data, cls=DjangoJSONEncoder),
                sorted(brand_ids),
                now,
                now,
                now,
                event_type,
                brands,
            ],
        )
        delivery_ids = [row[0] for row in cursor.fetchall()]
    if delivery_ids:
        from partners.tasks import enqueue_delivery

        def enqueue() -> None:
            for delivery_id in delivery_ids:
                enqueue_delivery(delivery_id)

        transaction.on_commit(enqueue)
    return delivery_ids


# --------------------------------------------------------------------------- event payloads


def transaction_data(txn: Transaction) -> dict[str, Any]:
    """The transaction exactly as the API shows it (``GET /transactions/{id}/``), entries included.

    Built inside the posting's database transaction; a posting just written carries its
    entries, so this costs no query.
    """
    return TransactionSerializer(txn).data


def hold_data(hold: Hold) -> dict[str, Any]:
    """The hold exactly as the API shows it (``GET /holds/{id}/``)."""
    return HoldSerializer(hold).data


# --------------------------------------------------------------------------- receivers


def on_transaction_posted(sender: Any, transaction: Transaction, **_: Any) -> None:
    subs = subscriptions()
    if not subs:
        return
    types = [WebhookEventType.TRANSACTION_POSTED]
    if transaction.kind == TransactionKind.PAYMENT:
        types.append(WebhookEventType.PAYMENT_RECEIVED)
    types = [t for t in types if t in subs]
    if not types:
        return
    account_ids = [transaction.account_id]
    if transaction.counter_account_id:
        account_ids.append(transaction.counter_account_id)
    brand_ids = _brand_ids_of_accounts(account_ids)
    if not any(brand_ids & subs[t] for t in types):
        return
    data = transaction_data(transaction)
    for event_type in types:
        record_event(event_type, data, brand_ids)


_HOLD_EVENTS = {
    Hold.Status.ACTIVE: WebhookEventType.HOLD_CREATED,
    Hold.Status.CAPTURED: WebhookEventType.HOLD_CAPTURED,
    Hold.Status.VOIDED: WebhookEventType.HOLD_VOIDED,
    Hold.Status.EXPIRED: WebhookEventType.HOLD_EXPIRED,
}


def on_hold_changed(sender: Any, hold: Hold, **_: Any) -> None:
    subs = subscriptions()
    event_type = _HOLD_EVENTS.get(hold.status)
    if event_type not in subs:
        return
    brand_ids = _brand_ids_of_accounts([hold.account_id])
    if brand_ids & subs[event_type]:
        record_event(event_type, hold_data(hold), brand_ids)


def on_account_status_changed(
    sender: Any, account: Account, previous_status: str, **_: Any
) -> None:
    if account.status == Account.Status.BLOCKED:
        event_type = WebhookEventType.ACCOUNT_BLOCKED
    elif previous_status == Account.Status.BLOCKED and account.status == Account.Status.OPEN:
        event_type = WebhookEventType.ACCOUNT_UNBLOCKED
    else:
        return
    subs = subscriptions()
    if event_type not in subs:
        return
    brand_ids = _brand_ids_of_accounts([account.pk])
    if brand_ids & subs[event_type]:
        data = {
            "account": account.pk,
            "number": account.number,
            "client": account.client_id,
            "status": account.status,
            "previous_status": previous_status,
            "reason": account.status_reason,
            "changed_at": account.status_changed_at,
        }
        record_event(event_type, data, brand_ids)


def connect() -> None:
    transaction_posted.connect(on_transaction_posted, dispatch_uid="partners.webhooks.txn")
    hold_changed.connect(on_hold_changed, dispatch_uid="partners.webhooks.hold")
    account_status_changed.connect(
        on_account_status_changed, dispatch_uid="partners.webhooks.account_status"
    )
    for model in (WebhookEndpoint, Partner):
        post_save.connect(invalidate_subscriptions, sender=model, dispatch_uid=f"wh.save.{model}")
        post_delete.connect(invalidate_subscriptions, sender=model, dispatch_uid=f"wh.del.{model}")
    m2m_changed.connect(
        invalidate_subscriptions, sender=Partner.brands.through, dispatch_uid="wh.partner.brands"
    )


# --------------------------------------------------------------------------- delivery


def event_body(event: WebhookEvent) -> bytes:
    """The raw body sent for an event; identical on every attempt."""
    payload = {
        "id": str(event.public_id),
        "type": event.type,
        "created_at": event.created_at,
        "data": event.data,
    }
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HttpOutcome:
    status: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failed attempt, never followed with the signed body


_opener = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpOutcome:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.monotonic()
    status: int | None = None
    text, error = "", ""
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
            text = response.read(1000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status = exc.code
        text = exc.read(1000).decode("utf-8", "replace") if exc.fp else ""
        error = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return HttpOutcome(status, text, error, int((time.monotonic() - started) * 1000))


def deliver(endpoint: WebhookEndpoint, event: WebhookEvent, delivery_id: int) -> HttpOutcome:
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "billing-webhooks/1",
        SIGNATURE_HEADER: sign(endpoint.secret, body),
        "X-Billing-Event": event.type,
        "X-Billing-Event-Id": str(event.public_id),
        "X-Billing-Delivery": str(delivery_id),
    }
    return http_post(endpoint.url, body, headers, settings.BILLING_WEBHOOK_TIMEOUT)


def backoff_seconds(attempt_number: int) -> int:
    """Seconds to wait after the n-th failed attempt: base * 2^(n-1), capped."""
    base = settings.BILLING_WEBHOOK_BACKOFF_BASE
    return int(min(base * 2 ** (attempt_number - 1), settings.BILLING_WEBHOOK_BACKOFF_MAX))
