"""The refund saga against the real sandbox: captured, declined and released, refused,
and killed at each step then resumed, never refunding twice."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from core.caller import Caller
from ledger.models import Hold, Transaction
from payments.gateway import adapter
from payments.models import PaymentIntent, RefundSaga
from payments.services import payment_rule_set
from payments.services.gateway import gateway_calls_due, payment_intent_create
from payments.services.refunds import (
    RefundExceedsPayment,
    refund_saga_run,
    refund_saga_start,
    refund_saga_step,
    refund_sagas_resume,
)
from tests.factories import AccountFactory, BrandFactory


@pytest.fixture
def paid(db, sandbox):
    """An online payment of 100.00 that succeeded at the gateway (and was posted)."""
    sandbox.sandbox.set_switches({"auto_complete": "succeeded"})
    account = AccountFactory(brands=[BrandFactory()])
    intent = payment_intent_create(
        account=account, amount="100.00", return_url="https://x.example/", caller=Caller()
    )
    gateway_calls_due()
    intent.refresh_from_db()
    assert intent.status == "succeeded"
    sandbox.sandbox.set_switches({"auto_complete": None})
    return intent


def balance(intent):
    intent.account.refresh_from_db()
    return intent.account.balance, intent.account.held


def gateway_refunds(sandbox):
    return [r for r in sandbox.sandbox.refunds.values() if r["status"] == "succeeded"]


def assert_refunded_once(sandbox, intent, amount):
    saga = RefundSaga.objects.get()
    assert saga.status == "captured"
    assert [r["amount"] for r in gateway_refunds(sandbox)] == [f"{amount:.2f}"]
    refunds = Transaction.objects.filter(kind="refund")
    assert [(t.amount, t.channel) for t in refunds] == [(amount, "gateway")]
    assert balance(intent) == (Decimal("100.00") - amount, Decimal("0"))
    assert Hold.objects.get(pk=saga.hold_id).status == "voided"
    steps = list(saga.steps.values_list("step", flat=True))
    assert steps == ["started", "held", "gateway_requested", "gateway_answered", "captured"]


def test_a_refund_holds_calls_the_gateway_and_captures(sandbox, paid):
    saga = refund_saga_start(intent=paid, amount="30.00", reason="changed mind")
    assert saga.status == "started"
    done = refund_saga_run(saga=saga)
    assert done.status == "captured" and done.gateway_status == "succeeded"
    assert_refunded_once(sandbox, paid, Decimal("30.00"))
    assert refund_saga_run(saga=saga).status == "captured"  # nothing more
    assert len(gateway_refunds(sandbox)) == 1


def test_a_declined_refund_releases_the_funds(sandbox, paid):
    sandbox.sandbox.set_switches({"fail_refunds_next": 1})
    saga = refund_saga_run(saga=refund_saga_start(intent=paid, amount="30.00", reason="x"))
    assert (saga.status, saga.gateway_status) == ("released", "failed")
    assert balance(paid) == (Decimal("100.00"), Decimal("0"))
    assert Hold.objects.get(pk=saga.hold_id).status == "voided"
    assert not Transaction.objects.filter(kind="refund").exists()


def test_refunds_never_add_up_to_more_than_was_paid(sandbox, paid):
    refund_saga_start(intent=paid, amount="60.00", reason="a")
    with pytest.raises(RefundExceedsPayment):
        refund_saga_start(intent=paid, amount="40.01", reason="b")
    assert RefundSaga.objects.count() == 1


def test_a_refund_the_funds_no_longer_cover_is_refused_without_a_hold(sandbox, paid):
    from ledger.services import debit_post

    debit_post(account=paid.account, amount="90.00", brand=paid.brand_id)
    saga = refund_saga_run(saga=refund_saga_start(intent=paid, amount="50.00", reason="x"))
    assert saga.status == "refused" and saga.hold_id is None
    assert saga.steps.last().detail["code"] == "insufficient_funds"
    assert sandbox.sandbox.refunds == {}


def later(seconds=3600):
    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.parametrize("steps_before_crash", [0, 1, 2])
def test_a_saga_killed_between_steps_resumes_and_refunds_once(sandbox, paid, steps_before_crash):
    """The process dies with the saga ``started`` (0 steps done), ``held`` (1) or
    ``succeeded`` at the gateway (2); the periodic resume carries on from there."""
    saga = refund_saga_start(intent=paid, amount="25.00", reason="crash test")
    for _ in range(steps_before_crash):
        refund_saga_step(saga=saga)
    with mock.patch("django.utils.timezone.now", return_value=later()):
        assert refund_sagas_resume() == 1
    assert_refunded_once(sandbox, paid, Decimal("25.00"))


def test_a_saga_killed_after_the_gateway_refunded_but_before_recording_it(sandbox, paid):
    saga = refund_saga_start(intent=paid, amount="25.00", reason="crash test")
    refund_saga_step(saga=saga)  # held
    # The gateway carries the refund out; the process dies before the answer is recorded.
    adapter().refund(
        payment_id=paid.gateway_payment_id, refund_id=f"saga-{saga.pk}", amount=Decimal("25.00")
    )
    saga.refresh_from_db()
    assert saga.status == "held"
    with mock.patch("django.utils.timezone.now", return_value=later()):
        refund_sagas_resume()
    assert_refunded_once(sandbox, paid, Decimal("25.00"))


def test_a_saga_killed_inside_the_capture_rolls_it_back_and_resumes(sandbox, paid):
    saga = refund_saga_start(intent=paid, amount="25.00", reason="crash test")
    for _ in range(2):
        refund_saga_step(saga=saga)
    saga.refresh_from_db()
    assert saga.status == "succeeded"
    with (
        mock.patch("payments.services.refunds.refund_post", side_effect=RuntimeError("killed")),
        pytest.raises(RuntimeError),
    ):
        refund_saga_step(saga=saga)  # the hold's void is rolled back with it
    saga.refresh_from_db()
    assert saga.status == "succeeded"
    assert Hold.objects.get(pk=saga.hold_id).status == "active"
    with mock.patch("django.utils.timezone.now", return_value=later()):
        refund_sagas_resume()
    assert_refunded_once(sandbox, paid, Decimal("25.00"))


def test_a_gateway_down_for_the_refund_is_retried_then_dead_with_funds_held(sandbox, paid):
    sandbox.sandbox.set_switches({"fail_next": 100})
    saga = refund_saga_run(saga=refund_saga_start(intent=paid, amount="10.00", reason="x"))
    assert saga.status == "held"
    moment = timezone.now()
    for attempt in range(1, 3):
        gateway_calls_due(now=moment + timedelta(hours=attempt))
    saga.refresh_from_db()
    assert saga.status == "dead"
    assert balance(paid) == (Decimal("100.00"), Decimal("10.00"))
    from payments.models import GatewayCall
    from payments.services.gateway import gateway_call_retry

    sandbox.sandbox.set_switches({"fail_next": 0})
    RefundSaga.objects.filter(pk=saga.pk).update(status="held")
    gateway_call_retry(call=GatewayCall.objects.get(saga=saga))
    gateway_calls_due()
    assert refund_saga_run(saga=saga).status == "captured"
    assert len(gateway_refunds(sandbox)) == 1


def test_an_online_overpayment_goes_back_to_the_card(db, sandbox):
    brand = BrandFactory()
    payment_rule_set(brand=brand, overpayment="refund")
    sandbox.sandbox.set_switches({"auto_complete": "succeeded"})
    account = AccountFactory(brands=[brand])
    intent = payment_intent_create(
        account=account, amount="70.00", return_url="https://x.example/", caller=Caller()
    )
    gateway_calls_due()
    saga = RefundSaga.objects.get(intent=intent)
    assert (saga.kind, saga.amount) == ("overpayment", Decimal("70.00"))
    assert refund_saga_run(saga=saga).status == "captured"
    account.refresh_from_db()
    assert account.balance == 0
    assert PaymentIntent.objects.get().status == "succeeded"
