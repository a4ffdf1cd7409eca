"""Webhooks that can be trusted: events reach only the partners that may read what they are
about (transfers redacted per receiver), the signature carries a timestamp, and endpoints
on loopback, private or link-local addresses are refused when saved and, after DNS
resolution, at delivery. DNS is the only thing mocked: it is outside the system."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from accounts.models import Account
from core.caller import Caller
from ledger.services import payment_post, transfer_post
from partners import webhooks
from partners.destinations import DestinationRefused
from partners.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from partners.services import webhook_endpoint_create
from partners.tasks import deliver_webhook
from tests.api.helpers import post
from tests.api.test_webhooks import Receiver
from tests.factories import AccountFactory, UserFactory

SECRET = "s3cret-for-tests"
TYPES = ("transaction.posted", "payment.received", "hold.created", "hold.voided")


class FakeDns(dict):
    """Host name -> address (or a list of answers, one per lookup); counts the lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []


@pytest.fixture
def dns(monkeypatch) -> FakeDns:
    """Host names resolved as the test says; anything else (IP literals) as usual."""
    names = FakeDns()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in names:
            return real(host, port, *args, **kwargs)
        names.lookups.append(host)
        answer = names[host]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        family = socket.AF_INET6 if ":" in answer else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (answer, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.fixture
def endpoints(side_a, side_b, dns):
    """Both partners subscribe to everything, at public addresses (resolved by ``dns``)."""
    dns["hooks.a.example"] = "93.184.216.34"
    dns["hooks.b.example"] = "93.184.216.35"
    return {
        side.partner.pk: webhook_endpoint_create(
            partner=side.partner, url=f"https://hooks.{n}.example/in", event_types=TYPES
        )
        for side, n in ((side_a, "a"), (side_b, "b"))
    }


def received(side) -> list[tuple[str, dict]]:
    """(event type, data) of every delivery made to the partner's endpoints."""
    deliveries = WebhookDelivery.objects.filter(endpoint__partner=side.partner).select_related(
        "event"
    )
    return [(d.event.type, d.event.data) for d in deliveries.order_by("id")]


# --------------------------------------------------------------------------- who receives what


def test_events_about_a_shared_account_reach_only_the_partners_who_may_read_them(
    side_a, side_b, endpoints
):
    shared = AccountFactory(brands=[side_a.brand, side_b.brand])
    operator = UserFactory(is_staff=True)
    operator.save()
    payment_post(account=shared, amount="100.00", channel="bank", caller=Caller.for_user(operator))
    assert received(side_a) == [] and received(side_b) == []  # the operator's: neither reads it

    a_debit = post(
        side_a.api,
        "/api/v1/debits/",
        {"account": shared.pk, "amount": "3.00", "brand": side_a.brand.pk},
    ).json()
    b_payment = post(
        side_b.api,
        "/api/v1/payments/",
        {"account": shared.pk, "amount": "7.00", "channel": "card"},
    ).json()
    b_hold = post(
        side_b.api,
        "/api/v1/holds/",
        {"account": shared.pk, "amount": "2.00", "brand": side_b.brand.pk},
    ).json()
    post(side_b.api, f"/api/v1/holds/{b_hold['id']}/void/")

    assert received(side_a) == [("transaction.posted", a_debit)]  # as the API answered it
    assert [(t, d["id"]) for t, d in received(side_b)] == [
        ("transaction.posted", b_payment["id"]),
        ("payment.received", b_payment["id"]),
        ("hold.created", b_hold["id"]),
        ("hold.voided", b_hold["id"]),
    ]
    assert received(side_b)[0][1] == b_payment
    assert received(side_b)[3][1] == side_b.api.get(f"/api/v1/holds/{b_hold['id']}/").json()


def test_account_that_only_one_partner_uses_sends_it_everything(side_a, side_b, endpoints):
    operator = UserFactory(is_staff=True)
    operator.save()
    payment = payment_post(
        account=side_a.account, amount="9.00", channel="cash", caller=Caller.for_user(operator)
    )
    assert [(t, d["id"]) for t, d in received(side_a)] == [
        ("transaction.posted", payment.pk),
        ("payment.received", payment.pk),
    ]
    assert received(side_b) == []


def test_a_transfer_is_sent_to_each_partner_as_it_reads_it(side_a, side_b, endpoints):
    operator = UserFactory(is_staff=True)
    operator.save()
    txn = transfer_post(
        from_account=side_b.account,
        to_account=side_a.account,
        amount="40.00",
        caller=Caller.for_user(operator),
    )
    events = WebhookEvent.objects.filter(type="transaction.posted")
    assert events.count() == 2  # one redaction per receiver
    for side, other in ((side_a, side_b), (side_b, side_a)):
        [(event_type, data)] = received(side)
        assert event_type == "transaction.posted"
        assert data == side.api.get(f"/api/v1/transactions/{txn.pk}/").json()
        by_named = {e["subaccount"] or e["account"]: e for e in data["entries"] if e["account"]}
        assert set(by_named) == {side.account.pk}
        hidden = [e for e in data["entries"] if e["account"] is None]
        assert len(hidden) == 1 and hidden[0]["balance_after"] is None
        assert other.account.pk not in {e["account"] for e in data["entries"]}


def test_a_transfer_neither_side_of_which_a_partner_reads_is_not_sent_to_it(
    side_a, side_b, endpoints
):
    one, two = AccountFactory(brands=[side_b.brand]), AccountFactory(brands=[side_b.brand])
    payment_post(account=one, amount="10.00", channel="bank")
    transfer_post(from_account=one, to_account=two, amount="5.00")
    assert received(side_a) == []
    assert [t for t, _ in received(side_b)] == [
        "transaction.posted",
        "payment.received",
        "transaction.posted",
    ]


# --------------------------------------------------------------------------- signature


def test_signature_header_format_and_verification(side_a, settings):
    settings.BILLING_WEBHOOK_ALLOW_PRIVATE = True
    with Receiver([200]) as receiver:
        webhook_endpoint_create(
            partner=side_a.partner,
            url=receiver.url,
            event_types=["transaction.posted"],
            secret=SECRET,
        )
        post(
            side_a.api,
            "/api/v1/debits/",
            {"account": side_a.account.pk, "amount": "1.00", "brand": side_a.brand.pk},
        )
        before = int(time.time())
        assert deliver_webhook(WebhookDelivery.objects.get().pk) is True
    [request] = receiver.requests
    header, body = request["headers"]["X-Billing-Signature"], request["body"]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match, header
    assert before - 1 <= int(match[1]) <= time.time() + 1
    assert webhooks.verify_signature(SECRET, header, body)
    assert not webhooks.verify_signature("another secret", header, body)
    assert not webhooks.verify_signature(SECRET, header, body.replace(b"1.00", b"9.00"))
    # A replay later than five minutes is refused; a forged timestamp breaks the HMAC.
    assert not webhooks.verify_signature(SECRET, header, body, now=int(match[1]) + 301)
    assert webhooks.verify_signature(SECRET, header, body, now=int(match[1]) + 299)
    forged = header.replace(f"t={match[1]}", f"t={int(match[1]) + 600}")
    assert not webhooks.verify_signature(SECRET, forged, body, now=int(match[1]) + 600)
    assert json.loads(body)["type"] == "transaction.posted"


def test_each_attempt_is_signed_afresh_over_the_same_body(side_a, settings):
    """A retry an hour later carries a new ``t`` (receivers refuse old ones), same body."""
    settings.BILLING_WEBHOOK_ALLOW_PRIVATE = True
    with Receiver([500, 200]) as receiver:
        webhook_endpoint_create(
            partner=side_a.partner,
            url=receiver.url,
            event_types=["transaction.posted"],
            secret=SECRET,
        )
        post(
            side_a.api,
            "/api/v1/debits/",
            {"account": side_a.account.pk, "amount": "1.00", "brand": side_a.brand.pk},
        )
        delivery = WebhookDelivery.objects.get()
        deliver_webhook(delivery.pk)
        time.sleep(1.1)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        deliver_webhook(delivery.pk)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    signatures = [r["headers"]["X-Billing-Signature"] for r in (first, second)]
    assert signatures[0] != signatures[1]
    assert all(webhooks.verify_signature(SECRET, s, first["body"]) for s in signatures)


# --------------------------------------------------------------------------- destinations

PRIVATE = ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "192.168.0.10", "::ffff:127.0.0.1"]


@pytest.mark.parametrize("address", PRIVATE)
def test_endpoint_resolving_to_a_private_address_is_refused_when_saved(side_a, dns, address):
    dns["hooks.partner.example"] = address
    with pytest.raises(DestinationRefused) as refused:
        webhook_endpoint_create(
            partner=side_a.partner,
            url="https://hooks.partner.example/in",
            event_types=["transaction.posted"],
        )
    assert refused.value.details["field"] == "url" and address in refused.value.message
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://[::1]/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "ftp://hooks.partner.example/x",
        "file:///etc/passwd",
    ],
)
def test_literal_private_addresses_and_other_schemes_are_refused(side_a, dns, url):
    dns["hooks.partner.example"] = "93.184.216.34"
    with pytest.raises(DestinationRefused):
        webhook_endpoint_create(partner=side_a.partner, url=url, event_types=["hold.created"])
    assert not WebhookEndpoint.objects.exists()


def test_admin_form_refuses_a_private_endpoint(client, side_a, dns):
    admin = UserFactory(is_staff=True, is_superuser=True)
    admin.save()
    client.force_login(admin)
    dns["internal.example"] = "10.0.0.5"
    response = client.post(
        "/admin/partners/webhookendpoint/add/",
        {
            "partner": side_a.partner.pk,
            "url": "https://internal.example/hook",
            "secret": "s",
            "event_types": ["transaction.posted"],
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "private address" in str(response.context["adminform"].form.errors["url"])
    assert not WebhookEndpoint.objects.exists()


def test_the_operator_may_allow_private_destinations(side_a, dns, settings):
    settings.BILLING_WEBHOOK_ALLOW_PRIVATE = True
    dns["hooks.internal"] = "10.0.0.7"
    endpoint = webhook_endpoint_create(
        partner=side_a.partner, url="http://hooks.internal/in", event_types=["hold.created"]
    )
    assert endpoint.pk


@pytest.mark.parametrize("address", PRIVATE)
def test_delivery_checks_the_address_again_after_dns_resolution(side_a, dns, settings, address):
    """Saved while the name pointed at a public address, then the DNS answer changed
    (rebinding): the delivery is refused, logged as a failed attempt, and nothing is sent."""
    dns["hooks.partner.example"] = "93.184.216.34"
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]
        webhook_endpoint_create(
            partner=side_a.partner,
            url=f"http://hooks.partner.example:{port}/in",
            event_types=["transaction.posted"],
        )
        post(
            side_a.api,
            "/api/v1/debits/",
            {"account": side_a.account.pk, "amount": "1.00", "brand": side_a.brand.pk},
        )
        dns["hooks.partner.example"] = address
        assert deliver_webhook(WebhookDelivery.objects.get().pk) is True  # an attempt was made
    assert receiver.requests == []
    attempt = WebhookAttempt.objects.get()
    assert not attempt.succeeded and attempt.response_status is None
    assert attempt.error.startswith("Destination refused") and address in attempt.error
    assert WebhookDelivery.objects.get().status == "pending"  # retried later with backoff
    assert Account.objects.get(pk=side_a.account.pk).balance == 999  # the debit stands


def test_delivery_connects_to_the_checked_address_with_the_hosts_name(side_a, dns, settings):
    """The name is resolved once per attempt, by the check; the connection goes to that very
    address (a second answer, which a rebinding DNS would give the HTTP client, is never
    asked for) and the Host header still names the URL's host."""
    settings.BILLING_WEBHOOK_ALLOW_PRIVATE = True  # the receiver of this test is on loopback
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]
        dns["hooks.partner.example"] = "127.0.0.1"
        webhook_endpoint_create(
            partner=side_a.partner,
            url=f"http://hooks.partner.example:{port}/in?tenant=7",
            event_types=["transaction.posted"],
        )
        post(
            side_a.api,
            "/api/v1/debits/",
            {"account": side_a.account.pk, "amount": "1.00", "brand": side_a.brand.pk},
        )
        dns.lookups.clear()
        dns["hooks.partner.example"] = ["127.0.0.1", "192.0.2.1"]  # then somewhere else
        assert deliver_webhook(WebhookDelivery.objects.get().pk) is True
    assert dns.lookups == ["hooks.partner.example"]
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"hooks.partner.example:{port}"
    assert request["path"] == "/in?tenant=7"
    assert WebhookAttempt.objects.get().succeeded
