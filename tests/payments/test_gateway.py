"""Online payments through the real sandbox gateway over loopback: success, failure,
timeouts and retries, dead letters, duplicate and forged callbacks, lost callbacks settled
by polling. Callbacks reach the app over HTTP (pytest-django's live server)."""

from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from ledger.models import Transaction
from payments.gateway.signing import SIGNATURE_HEADER, sign
from payments.models import GatewayCall, GatewayCallback, PaymentIntent
from payments.rules import PaymentRefused
from payments.services import payment_rule_set
from payments.services.gateway import (
    gateway_call_attempt,
    gateway_call_retry,
    gateway_calls_due,
    payment_intent_create,
    payment_intent_settle,
    payment_intents_poll,
)
from tests.factories import AccountFactory, BrandFactory
from tests.ledger.concurrency import run_in_threads
from tests.payments.conftest import SANDBOX_SECRET

pytestmark = pytest.mark.django_db(transaction=True)
LATER = timedelta(hours=1)


@pytest.fixture
def gateway(sandbox, live_server, settings):
    settings.BILLING_GATEWAY_CALLBACK_URL = f"{live_server.url}/payments/gateway/callback/"
    return sandbox


@pytest.fixture
def account():
    return AccountFactory(brands=[BrandFactory()])


def balance(account):
    account.refresh_from_db()
    return account.balance


def created_at_gateway(account, amount="250.00"):
    from core.caller import Caller

    intent = payment_intent_create(
        account=account,
        amount=amount,
        return_url="https://shop.example/back",
        caller=Caller.system("test"),
    )
    assert intent.status == "created" and intent.redirect_url == ""
    assert gateway_calls_due() == 1
    intent.refresh_from_db()
    return intent


def pay(intent, outcome="succeeded"):
    """What the payer does on the gateway's page."""
    response = requests.post(
        intent.redirect_url, data={"outcome": outcome}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "https://shop.example/back"


def test_a_paid_intent_posts_the_payment_once_through_the_callback(gateway, account):
    intent = created_at_gateway(account)
    assert intent.status == "pending"
    assert intent.redirect_url.startswith(gateway.sandbox.base_url + "/pay/")
    assert balance(account) == 0
    pay(intent)
    intent.refresh_from_db()
    assert intent.status == "succeeded"
    txn = Transaction.objects.get(pk=intent.transaction_id)
    assert (txn.kind, txn.channel, txn.amount) == ("payment", "gateway", Decimal("250.00"))
    assert txn.external_id == f"gw:{intent.gateway_payment_id}"
    assert balance(account) == Decimal("250.00")
    callback = GatewayCallback.objects.get()
    assert (callback.verified, callback.outcome, callback.intent_id) == (True, "applied", intent.pk)


def test_a_failed_payment_posts_nothing(gateway, account):
    intent = created_at_gateway(account)
    pay(intent, "failed")
    intent.refresh_from_db()
    assert intent.status == "failed" and intent.transaction_id is None
    assert balance(account) == 0


def test_a_timeout_is_retried_with_backoff_and_creates_one_gateway_payment(
    gateway, account, settings
):
    from core.caller import Caller

    settings.BILLING_GATEWAY_BACKOFF_BASE = 60
    gateway.sandbox.set_switches({"hang_next": 1, "hang_seconds": 2.0})
    intent = payment_intent_create(
        account=account, amount="10.00", return_url="https://x.example/", caller=Caller()
    )
    call = GatewayCall.objects.get(intent=intent)
    moment = timezone.now()
    first = gateway_call_attempt(call_id=call.pk, now=moment)
    assert (first.status, first.attempts) == ("pending", 1)
    assert "timeout" in first.last_error
    assert first.next_attempt_at == moment + timedelta(seconds=60)
    assert gateway_calls_due() == 0  # backing off
    second = gateway_call_attempt(call_id=call.pk, now=timezone.now() + LATER)
    assert (second.status, second.attempts) == ("done", 2)
    intent.refresh_from_db()
    assert intent.status == "pending"
    # The hung request was carried out late; the retry found it by order id.
    assert len(gateway.sandbox.payments) == 1


def test_errors_until_the_last_attempt_make_a_dead_letter_that_staff_can_retry(gateway, account):
    from core.caller import Caller

    gateway.sandbox.set_switches({"fail_next": 100})
    intent = payment_intent_create(
        account=account, amount="10.00", return_url="https://x.example/", caller=Caller()
    )
    call = GatewayCall.objects.get(intent=intent)
    moment = timezone.now()
    for attempt in range(3):
        call = gateway_call_attempt(call_id=call.pk, now=moment + LATER * attempt)
        assert call.attempts == attempt + 1
    assert call.status == "dead" and "503" in call.last_error
    intent.refresh_from_db()
    assert intent.status == "dead"
    gateway.sandbox.set_switches({"fail_next": 0})
    gateway_call_retry(call=call)
    assert gateway_calls_due() == 1
    intent.refresh_from_db()
    assert intent.status == "pending"


def test_a_duplicate_callback_posts_nothing_more(gateway, account):
    intent = created_at_gateway(account)
    pay(intent)
    event = gateway.sandbox.callbacks[0]["event"]
    body = __import__("json").dumps(event).encode()
    again = requests.post(
        gateway.sandbox.callbacks[0]["url"],
        data=body,
        headers={SIGNATURE_HEADER: sign(SANDBOX_SECRET, body), "Content-Type": "application/json"},
        timeout=10,
    )
    assert again.status_code == 200 and again.json()["outcome"] == "already_settled"
    assert Transaction.objects.filter(kind="payment").count() == 1
    assert balance(account) == Decimal("250.00")


def test_a_forged_callback_is_refused_logged_and_moves_nothing(gateway, account, caplog):
    intent = created_at_gateway(account)

    body = (
        b'{"event": "payment.succeeded", "payment": {"id": "%s", "order_id": "%s",'
        b' "status": "succeeded", "amount": "250.00"}}'
        % (intent.gateway_payment_id.encode(), intent.order_id.encode())
    )
    from django.conf import settings

    url = settings.BILLING_GATEWAY_CALLBACK_URL
    for header in (sign("not-the-secret", body), "", "t=1,v1=00"):
        response = requests.post(url, data=body, headers={SIGNATURE_HEADER: header}, timeout=10)
        assert response.status_code == 400
    codes = list(GatewayCallback.objects.order_by("id").values_list("outcome", "error"))
    assert codes == [
        ("refused", "invalid_signature"),
        ("refused", "missing_signature"),
        ("refused", "stale_signature"),
    ]
    assert "gateway callback refused" in caplog.text
    intent.refresh_from_db()
    assert intent.status == "pending" and balance(account) == 0


def test_a_lost_callback_is_settled_by_the_status_poll(gateway, account):
    gateway.sandbox.set_switches({"lose_callbacks": True})
    intent = created_at_gateway(account)
    pay(intent)
    intent.refresh_from_db()
    assert intent.status == "pending"  # the callback never came
    assert payment_intents_poll() == 0  # not quiet long enough yet
    assert payment_intents_poll(now=timezone.now() + LATER) == 1
    intent.refresh_from_db()
    assert intent.status == "succeeded" and balance(account) == Decimal("250.00")
    assert payment_intents_poll(now=timezone.now() + LATER) == 0


def test_callback_and_poll_at_once_post_one_payment(sandbox, account):
    sandbox.sandbox.set_switches({"lose_callbacks": True})
    intent = created_at_gateway(account, "40.00")
    pay(intent)
    outcomes = run_in_threads(
        [
            lambda: payment_intent_settle(intent=intent.pk, status="succeeded", source="callback"),
            lambda: payment_intents_poll(now=timezone.now() + LATER),
        ]
    )
    assert all(o.ok for o in outcomes)
    assert Transaction.objects.filter(kind="payment").count() == 1
    assert balance(account) == Decimal("40.00")


def test_a_rule_refuses_the_intent_when_created(sandbox, account):
    from core.caller import Caller

    payment_rule_set(brand=account.brands.get(), allowed_channels=["bank"])
    with pytest.raises(PaymentRefused) as info:
        payment_intent_create(
            account=account, amount="5.00", return_url="https://x.example/", caller=Caller()
        )
    assert info.value.code == "channel_not_allowed"
    assert PaymentIntent.objects.count() == 0 and GatewayCall.objects.count() == 0


def test_sandbox_switches_over_http(sandbox):
    base = sandbox.sandbox.base_url
    answer = requests.post(f"{base}/_control", json={"latency_ms": 5}, timeout=5).json()
    assert answer["latency_ms"] == 5
    assert requests.post(f"{base}/_control", json={"nope": 1}, timeout=5).status_code == 400
    unauthorized = requests.post(f"{base}/api/payments", json={}, timeout=5)
    assert unauthorized.status_code == 401
