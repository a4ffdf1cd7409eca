"""Webhooks: the outbox written with the event, signed delivery to a real local HTTP server,
retries with backoff, the attempt log and manual redelivery."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from access.services import partner_get_or_create
from ledger.services import debit_post
from partners import webhooks
from partners.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from partners.services import (
    webhook_endpoint_create,
    webhook_redeliver,
    webhooks_deliver_due,
)
from partners.tasks import deliver_webhook
from tests.api.helpers import post

SECRET = "s3cret-for-tests"


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    """These tests deliver to a server on 127.0.0.1: the operator's switch allows it."""
    settings.BILLING_WEBHOOK_ALLOW_PRIVATE = True


class Receiver:
    """A local HTTP server that answers a scripted list of statuses and records each request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(
                    {
                        "headers": dict(self.headers),
                        "body": body,
                        "status": status,
                        "path": self.path,
                    }
                )
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"try again")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/billing"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscribe(side, url, types=("transaction.posted",)):
    return webhook_endpoint_create(partner=side.partner, url=url, event_types=types, secret=SECRET)


def test_receiver_failing_twice_gets_the_event_once_with_three_attempts_logged(side_a):
    with Receiver([500, 503, 200]) as receiver:
        subscribe(side_a, receiver.url)
        debit = post(
            side_a.api,
            "/api/v1/debits/",
            {"account": side_a.account.pk, "amount": "12.34", "brand": side_a.brand.pk},
        ).json()
        delivery = WebhookDelivery.objects.get()
        assert delivery.event.type == "transaction.posted"

        assert deliver_webhook(delivery.pk) is True  # 500
        assert deliver_webhook(delivery.pk) is False  # backing off: not due yet
        delivery.refresh_from_db()
        assert delivery.status == "pending" and delivery.attempts == 1
        assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=20)

        later = timezone.now() + timedelta(hours=1)
        assert webhooks_deliver_due(now=later) == 1  # 503
        assert webhooks_deliver_due(now=later + timedelta(hours=1)) == 1  # 200
        assert webhooks_deliver_due(now=later + timedelta(days=2)) == 0  # nothing left

    assert [r["status"] for r in receiver.requests] == [500, 503, 200]
    assert sum(200 <= r["status"] < 300 for r in receiver.requests) == 1
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1  # the same event, byte for byte, on every attempt
    body = bodies.pop()
    for request in receiver.requests:
        header = request["headers"]["X-Billing-Signature"]
        timestamp = int(header.split(",")[0].removeprefix("t="))
        signed = f"{timestamp}.".encode() + body
        expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(header, f"t={timestamp},v1={expected}")
    event = json.loads(body)
    assert set(event) == {"id", "type", "created_at", "data"}
    assert event["type"] == "transaction.posted"
    assert event["id"] == str(delivery.event.public_id)
    assert event["data"]["id"] == debit["id"] and event["data"]["amount"] == "12.34"
    assert event["data"] == debit  # the same shape as the API's answer, entries included

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    log = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.response_status, a.succeeded) for a in log] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


def test_signature_does_not_verify_with_another_secret(side_a):
    with Receiver([200]) as receiver:
        subscribe(side_a, receiver.url)
        debit_post(account=side_a.account, amount="1.00", brand=side_a.brand)
        deliver_webhook(WebhookDelivery.objects.get().pk)
    request = receiver.requests[0]
    header = request["headers"]["X-Billing-Signature"]
    assert webhooks.verify_signature(SECRET, header, request["body"])
    assert not webhooks.verify_signature("other", header, request["body"])
    assert request["headers"]["X-Billing-Event"] == "transaction.posted"


def test_outbox_rows_only_for_subscribed_partners_of_the_concerned_brand(side_a, side_b):
    subscribe(side_a, "http://127.0.0.1:9/a", types=("transaction.posted", "payment.received"))
    subscribe(side_b, "http://127.0.0.1:9/b", types=("transaction.posted",))
    post(
        side_a.api,
        "/api/v1/payments/",
        {"account": side_a.account.pk, "amount": "5.00", "channel": "card"},
    )
    deliveries = WebhookDelivery.objects.select_related("event", "endpoint")
    assert sorted((d.event.type, d.endpoint.url) for d in deliveries) == [
        ("payment.received", "http://127.0.0.1:9/a"),
        ("transaction.posted", "http://127.0.0.1:9/a"),
    ]


def test_refused_posting_leaves_no_event(side_a):
    subscribe(side_a, "http://127.0.0.1:9/a")
    response = post(
        side_a.api,
        "/api/v1/debits/",
        {"account": side_a.account.pk, "amount": "99999.00", "brand": side_a.brand.pk},
    )
    assert response.status_code == 422
    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()


def test_account_blocked_and_unblocked_events(side_a):
    subscribe(side_a, "http://127.0.0.1:9/a", types=("account.blocked", "account.unblocked"))
    url = f"/api/v1/accounts/{side_a.account.pk}"
    post(side_a.api, f"{url}/block/", {"reason": "fraud"})
    post(side_a.api, f"{url}/unblock/")
    events = list(WebhookEvent.objects.order_by("id"))
    assert [e.type for e in events] == ["account.blocked", "account.unblocked"]
    assert events[0].data["reason"] == "fraud"
    assert events[0].data["account"] == side_a.account.pk


def test_hold_events(side_a):
    subscribe(side_a, "http://127.0.0.1:9/a", types=("hold.created", "hold.voided"))
    hold = post(
        side_a.api,
        "/api/v1/holds/",
        {"account": side_a.account.pk, "amount": "3.00", "brand": side_a.brand.pk},
    ).json()
    post(side_a.api, f"/api/v1/holds/{hold['id']}/void/")
    assert list(WebhookEvent.objects.order_by("id").values_list("type", flat=True)) == [
        "hold.created",
        "hold.voided",
    ]


def test_no_subscriber_costs_no_query(side_a):
    webhooks.invalidate_subscriptions()
    txn = debit_post(account=side_a.account, amount="1.00", brand=side_a.brand)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(100):
            webhooks.on_transaction_posted(sender=None, transaction=txn)
    assert len(queries) == 0
    assert not WebhookEvent.objects.exists()


def test_delivery_is_queued_on_commit(side_a, django_capture_on_commit_callbacks):
    subscribe(side_a, "http://127.0.0.1:9/a")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        debit_post(account=side_a.account, amount="1.00", brand=side_a.brand)
    assert callbacks
    assert OrmQ.objects.count() == 1


@override_settings(BILLING_WEBHOOK_MAX_ATTEMPTS=2)
def test_gives_up_after_max_attempts_and_admin_redelivery_requeues(side_a):
    with Receiver([500, 500, 200]) as receiver:
        subscribe(side_a, receiver.url)
        debit_post(account=side_a.account, amount="1.00", brand=side_a.brand)
        delivery = WebhookDelivery.objects.get()
        deliver_webhook(delivery.pk)
        webhooks_deliver_due(now=timezone.now() + timedelta(hours=1))
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("failed", 2)
        assert webhooks_deliver_due(now=timezone.now() + timedelta(days=1)) == 0
        webhook_redeliver(delivery=delivery)
        assert deliver_webhook(delivery.pk) is True
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert len(receiver.requests) == 3


def test_unreachable_endpoint_is_a_logged_failed_attempt(side_a):
    subscribe(side_a, "http://127.0.0.1:9/closed-port")
    debit_post(account=side_a.account, amount="1.00", brand=side_a.brand)
    delivery = WebhookDelivery.objects.get()
    assert deliver_webhook(delivery.pk) is True
    attempt = WebhookAttempt.objects.get()
    assert attempt.response_status is None and attempt.error and not attempt.succeeded


@pytest.mark.parametrize("attempt,expected", [(1, 30), (2, 60), (5, 480), (20, 6 * 3600)])
def test_backoff_is_exponential_and_capped(attempt, expected):
    assert webhooks.backoff_seconds(attempt) == expected


def test_partner_get_or_create_adds_brands(side_a, side_b):
    partner = partner_get_or_create(name=side_a.partner.name, brands=[side_b.brand])
    assert partner.pk == side_a.partner.pk
    assert set(partner.brands.all()) == {side_a.brand, side_b.brand}


def _bill_january(*accounts_and_services) -> None:
    """Bill 2026-01 for these (account, service) pairs: a flat tariff, one run to the end."""
    from datetime import date

    from invoicing import services as billing

    for account, service in accounts_and_services:
        tariff = billing.tariff_create(
            service=service, kind="flat", price="300.00", valid_from=date(2026, 1, 1)
        )
        billing.subscription_create(account=account, tariff=tariff, starts_on=date(2026, 1, 1))
    run = billing.invoice_run_start(period="2026-01")
    billing.invoice_run_plan(run_id=run.pk)
    for chunk in run.chunks.filter(status="pending").order_by("index"):
        billing.invoice_run_chunk_process(chunk_id=chunk.pk)


def test_invoice_issued_reaches_only_the_brands_partner_with_the_api_representation(side_a, side_b):
    subscribe(side_a, "http://127.0.0.1:9/a", types=("invoice.issued",))
    subscribe(side_b, "http://127.0.0.1:9/b", types=("invoice.issued",))
    _bill_january((side_a.account, side_a.service), (side_b.account, side_b.service))
    events = list(WebhookEvent.objects.filter(type="invoice.issued").order_by("id"))
    assert len(events) == 2
    by_partner = {
        delivery.endpoint.partner_id: delivery.event
        for delivery in WebhookDelivery.objects.select_related("event", "endpoint")
    }
    for side in (side_a, side_b):
        event = by_partner[side.partner.pk]
        assert event.data["account"] == side.account.pk
        assert event.data["total"] == "300.00"
        shown = side.api.get(f"/api/v1/invoices/{event.data['id']}/")
        assert shown.status_code == 200
        assert json.loads(json.dumps(event.data)) == shown.json()
    # Each event went to its own partner only.
    assert WebhookDelivery.objects.count() == 2


def test_invoice_issued_without_subscribers_writes_nothing(side_a):
    subscribe(side_a, "http://127.0.0.1:9/a", types=("transaction.posted",))
    _bill_january((side_a.account, side_a.service))
    assert not WebhookEvent.objects.filter(type="invoice.issued").exists()
