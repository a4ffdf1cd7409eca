"""Webhook outbox: signal receivers that record events, and the signed HTTP delivery.

The ledger and accounts send their signals *inside* the database transaction
that made the change; the receivers here insert the event and one delivery
per subscribed endpoint in that same transaction (so an event exists exactly
when its change does) and queue the delivery with ``transaction.on_commit``.

A partner receives only events about what it may read with its brands, by the
rules of the API (``ledger.selectors``): on a shared account, only postings
and holds that carry one of its brands or that it posted itself; a transfer is
redacted per receiver as the API shows it (the side outside its scope without
payer and ``balance_after``), so receivers that see it differently get
different event rows.

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
import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from access.models import Partner
from accounts.models import Account
from accounts.selectors import account_brand_ids
from accounts.signals import account_status_changed
from core.api.scope import Scope
from core.caller import Caller
from invoicing.api.serializers import InvoiceSerializer
from invoicing.models import Invoice
from invoicing.signals import invoices_issued
from ledger.api.serializers import HoldSerializer, TransactionSerializer, redact_transfer_sides
from ledger.models import Hold, Transaction, TransactionKind
from ledger.selectors import readable_through
from ledger.signals import hold_changed, transaction_posted
from partners.destinations import DestinationRefused, destination_of, open_connection
from partners.models import WebhookEndpoint, WebhookEvent, WebhookEventType

SIGNATURE_HEADER = "X-Billing-Signature"
# Receivers refuse a signature whose timestamp is further than this from their clock.
SIGNATURE_TOLERANCE_SECONDS = 300

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


# Endpoints that listen for an event type, of active partners acting for one of the
# event's brands, with each partner's brands (what it may read with).
_RECEIVERS_SQL = """
SELECT e.id, p.id,
       ARRAY(SELECT pb.brand_id FROM access_partner_brands pb WHERE pb.partner_id = p.id)
FROM partners_webhookendpoint e JOIN access_partner p ON p.id = e.partner_id
WHERE e.is_active AND p.is_active AND %s = ANY(e.event_types)
  AND EXISTS (SELECT 1 FROM access_partner_brands pb
              WHERE pb.partner_id = p.id AND pb.brand_id = ANY(%s))
ORDER BY e.id
"""

_RECORD_SQL = """
WITH ev AS (
    INSERT INTO partners_webhookevent (public_id, type, data, brand_ids, created_at)
    VALUES (%s, %s, %s::jsonb, %s, %s) RETURNING id
)
INSERT INTO partners_webhookdelivery
    (event_id, endpoint_id, status, attempts, next_attempt_at, created_at)
SELECT ev.id, endpoint_id, 'pending', 0, %s, %s
FROM ev, unnest(%s::bigint[]) AS endpoint_id
RETURNING id
"""

# What a partner is sent about an object: its scope -> the event data, or None (not readable).
PayloadFor = Callable[[Scope], "dict[str, Any] | None"]


def partner_scope(partner_id: int, brand_ids: Any) -> Scope:
    """What a partner reads with all its brands: the scope its webhooks are filtered by."""
    return Scope(
        brand_ids=frozenset(brand_ids),
        partner_id=partner_id,
        caller=Caller.for_partner(partner_id),
    )


def record_event(event_type: str, payload_for: PayloadFor, brand_ids: set[int]) -> list[int]:
    """Write the event and its deliveries (in the caller's transaction); queue them on commit.

    Each subscribed partner gets what ``payload_for`` gives for its scope, or
    nothing when that is None; partners given the same data share one event row.
    """
    subscribed = subscriptions().get(event_type, frozenset())
    brands = sorted(brand_ids & subscribed)
    if not brands:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_RECEIVERS_SQL, [event_type, brands])
        receivers = cursor.fetchall()
    payloads: dict[int, str | None] = {}
    groups: dict[str, list[int]] = {}
    for endpoint_id, partner_id, partner_brands in receivers:
        if partner_id not in payloads:
            data = payload_for(partner_scope(partner_id, partner_brands))
            payloads[partner_id] = (
                None if data is None else json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True)
            )
        if payloads[partner_id] is not None:
            groups.setdefault(payloads[partner_id], []).append(endpoint_id)
    now = timezone.now()
    delivery_ids: list[int] = []
    with connection.cursor() as cursor:
        for data_json, endpoint_ids in groups.items():
            cursor.execute(
                _RECORD_SQL,
                [
                    uuid.uuid4(),
                    event_type,
                    data_json,
                    sorted(brand_ids),
                    now,
                    now,
                    now,
                    endpoint_ids,
                ],
            )
            delivery_ids.extend(row[0] for row in cursor.fetchall())
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


def transaction_payload(txn: Transaction, account_brands: dict[int, frozenset[int]]) -> PayloadFor:
    """The transaction as each receiver may read it (``GET /transactions/{id}/``), or None."""
    data: dict[str, Any] = {}

    def payload_for(scope: Scope) -> dict[str, Any] | None:
        hidden = frozenset(
            account_id
            for account_id in account_brands
            if not readable_through(
                scope,
                account_brands=account_brands[account_id],
                brand_id=txn.brand_id,
                caller=txn.caller,
            )
        )
        if hidden == frozenset(account_brands):
            return None
        if not data:
            data.update(transaction_data(txn))
        return redact_transfer_sides(data, hidden)

    return payload_for


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
    account_brands = account_brand_ids(account_ids)
    brand_ids = set().union(*account_brands.values())
    if not any(brand_ids & subs[t] for t in types):
        return
    payload_for = transaction_payload(transaction, account_brands)
    for event_type in types:
        record_event(event_type, payload_for, brand_ids)


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
    account_brands = account_brand_ids([hold.account_id])[hold.account_id]
    if not account_brands & subs[event_type]:
        return
    data = hold_data(hold)

    def payload_for(scope: Scope) -> dict[str, Any] | None:
        readable = readable_through(
            scope, account_brands=account_brands, brand_id=hold.brand_id, caller=hold.caller
        )
        return data if readable else None

    record_event(event_type, payload_for, set(account_brands))


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
    brand_ids = set(account_brand_ids([account.pk])[account.pk])
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
        # Any partner acting for one of the account's brands reads the account.
        record_event(event_type, lambda scope: data, brand_ids)


def invoice_payloads(invoice_ids: list[int]) -> list[tuple[frozenset[int], PayloadFor]]:
    """Each issued invoice as the API shows it (``GET /invoices/{id}/``), for the partners
    that may read it: those acting for its brand, on an account linked to their brands."""
    invoices = list(
        Invoice.objects.filter(pk__in=invoice_ids)
        .select_related("period")
        .prefetch_related("lines")
        .order_by("pk")
    )
    account_brands = account_brand_ids(sorted({invoice.account_id for invoice in invoices}))
    payloads = []
    for invoice in invoices:
        data = InvoiceSerializer(invoice).data
        linked = account_brands.get(invoice.account_id, frozenset())

        def payload_for(scope: Scope, brand_id=invoice.brand_id, linked=linked, data=data):
            return data if scope.allows_brand(brand_id) and linked & scope.brand_ids else None

        payloads.append((frozenset({invoice.brand_id}), payload_for))
    return payloads


def on_invoices_issued(sender: Any, invoice_ids: list[int], **_: Any) -> None:
    """``invoice.issued``, one event per invoice of the batch (inside the issuing transaction).

    With no endpoint listening for it, this returns before touching the database.
    """
    subscribed = subscriptions().get(WebhookEventType.INVOICE_ISSUED, frozenset())
    if not subscribed or not invoice_ids:
        return
    for brand_ids, payload_for in invoice_payloads(invoice_ids):
        if brand_ids & subscribed:
            record_event(WebhookEventType.INVOICE_ISSUED, payload_for, set(brand_ids))


def connect() -> None:
    transaction_posted.connect(on_transaction_posted, dispatch_uid="partners.webhooks.txn")
    hold_changed.connect(on_hold_changed, dispatch_uid="partners.webhooks.hold")
    invoices_issued.connect(on_invoices_issued, dispatch_uid="partners.webhooks.invoices")
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


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` with the endpoint's secret."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver checks: a ``v1`` that matches and a ``t`` within ``tolerance`` seconds."""
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


@dataclass(frozen=True)
class HttpOutcome:
    status: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpOutcome:
    """POST once, to the address the URL's host resolves to now, if that address is allowed.

    A refused destination, a connection error or a redirect (never followed)
    is a failed attempt; a 3xx, 4xx or 5xx answer is logged with its status.
    """
    started = time.monotonic()
    status: int | None = None
    text, error = "", ""
    connection_ = None
    try:
        destination = destination_of(url)
        connection_ = open_connection(destination, timeout)
        connection_.request("POST", destination.target, body=body, headers=headers)
        response = connection_.getresponse()
        status = response.status
        text = response.read(1000).decode("utf-8", "replace")
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except DestinationRefused as exc:
        error = f"Destination refused: {exc.message}"[:500]
    except (OSError, ValueError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        if connection_ is not None:
            connection_.close()
    return HttpOutcome(status, text, error, int((time.monotonic() - started) * 1000))


def deliver(endpoint: WebhookEndpoint, event: WebhookEvent, delivery_id: int) -> HttpOutcome:
    """One attempt: the same body every time, signed afresh with this attempt's time."""
    body = event_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "billing-webhooks/1",
        SIGNATURE_HEADER: sign(endpoint.secret, body, int(time.time())),
        "X-Billing-Event": event.type,
        "X-Billing-Event-Id": str(event.public_id),
        "X-Billing-Delivery": str(delivery_id),
    }
    return http_post(endpoint.url, body, headers, settings.BILLING_WEBHOOK_TIMEOUT)


def backoff_seconds(attempt_number: int) -> int:
    """Seconds to wait after the n-th failed attempt: base * 2^(n-1), capped."""
    base = settings.BILLING_WEBHOOK_BACKOFF_BASE
    return int(min(base * 2 ** (attempt_number - 1), settings.BILLING_WEBHOOK_BACKOFF_MAX))
