"""The staff UI's posting forms: a review step before anything moves, the real services as
the signed-in user, refusals as messages on the form, second-person moves as requests."""

from decimal import Decimal

import pytest
from django.urls import reverse

from approvals.models import ApprovalRequest
from ledger.models import Hold, Transaction

pytestmark = pytest.mark.django_db


def url(ui_account, operation):
    return reverse("ledger:post", args=[ui_account.pk, operation])


def test_payment_is_reviewed_then_posted_once_as_the_user(as_role, ui_users, ui_account, ui_posted):
    client = as_role("operator")
    data = {"amount": "250.00", "channel": "cash", "memo": "at the desk", "idempotency_key": "f1"}
    review = client.post(url(ui_account, "payment"), data)
    assert review.status_code == 200
    assert b'id="review-summary"' in review.content
    assert ui_posted() == 1  # the account's opening payment only
    confirm = {**data, "step": "confirm"}
    first = client.post(url(ui_account, "payment"), confirm)
    again = client.post(url(ui_account, "payment"), confirm)  # a double submit
    assert first.status_code == again.status_code == 302
    txn = Transaction.objects.get(kind="payment", memo="at the desk")
    assert txn.created_by == ui_users["operator"]
    assert txn.caller == f"user:{ui_users['operator'].pk}"
    assert txn.amount == Decimal("250.00")
    ui_account.refresh_from_db()
    assert ui_account.balance == Decimal("1250.00")
    page = client.get(reverse("backoffice:account", args=[ui_account.pk]))
    assert "New balance: 1,250.00 RUB" in page.content.decode()


def test_a_debit_over_the_days_limit_is_refused_on_the_form_with_nothing_moved(
    as_role, ui_account, ui_brand, ui_snapshot
):
    before = ui_snapshot()
    response = as_role("operator").post(
        url(ui_account, "debit"),
        {"amount": "300.01", "brand": ui_brand.pk, "idempotency_key": "d1", "step": "confirm"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-code="write_off_limit_exceeded"' in page
    assert "A write-off limit (per transaction, day or month) would be exceeded." in page
    assert ui_snapshot() == before


def test_refusal_messages_follow_the_users_language(as_role, ui_account, ui_brand):
    client = as_role("operator")
    client.cookies["django_language"] = "ru"
    response = client.post(
        url(ui_account, "debit"),
        {"amount": "5000.00", "brand": ui_brand.pk, "idempotency_key": "d2", "step": "confirm"},
    )
    assert "Будет превышен лимит списания" in response.content.decode()


def test_invalid_input_is_a_field_error_not_a_500(as_role, ui_account, ui_snapshot):
    before = ui_snapshot()
    response = as_role("operator").post(
        url(ui_account, "payment"),
        {"amount": "-5", "channel": "nope", "idempotency_key": "x\x00", "step": "confirm"},
    )
    assert response.status_code == 200
    assert b'data-error="amount"' in response.content
    assert ui_snapshot() == before


def test_an_adjustment_becomes_an_approval_request_and_says_so(
    as_role, ui_users, ui_account, ui_snapshot
):
    before = ui_snapshot()
    client = as_role("accountant")
    response = client.post(
        url(ui_account, "adjustment"),
        {
            "direction": "credit",
            "amount": "15.00",
            "memo": "bank fee refunded",
            "idempotency_key": "a1",
            "step": "confirm",
        },
        follow=True,
    )
    request = ApprovalRequest.objects.get()
    assert request.kind == "ledger.adjustment"
    assert request.maker == ui_users["accountant"]
    assert f"Sent for approval as request #{request.pk}" in response.content.decode()
    assert ui_snapshot() == before


def test_a_large_refund_waits_for_approval_and_a_small_one_posts(as_role, ui_account, settings):
    settings.BILLING_APPROVAL_REFUND_ABOVE = Decimal("100.00")
    client = as_role("accountant")
    base = {"channel": "bank", "step": "confirm"}
    client.post(url(ui_account, "refund"), {**base, "amount": "100.01", "idempotency_key": "r1"})
    client.post(url(ui_account, "refund"), {**base, "amount": "100.00", "idempotency_key": "r2"})
    assert ApprovalRequest.objects.get().kind == "ledger.refund"
    assert Transaction.objects.filter(kind="refund").get().amount == Decimal("100.00")


def test_transfer_hold_capture_and_reversal_through_the_forms(as_role, ui_account, ui_brand):
    from tests.factories import AccountFactory

    target = AccountFactory(brands=[ui_brand])
    client = as_role("accountant")
    client.post(
        url(ui_account, "transfer"),
        {
            "to_account": target.number,
            "amount": "40.00",
            "idempotency_key": "t1",
            "step": "confirm",
        },
    )
    target.refresh_from_db()
    assert target.balance == Decimal("40.00")
    client.post(
        url(ui_account, "hold"),
        {"amount": "60.00", "brand": ui_brand.pk, "idempotency_key": "h1", "step": "confirm"},
    )
    hold = Hold.objects.get()
    client.post(
        reverse("ledger:hold", args=[hold.pk, "capture"]),
        {"amount": "25.00", "idempotency_key": "h2", "step": "confirm"},
    )
    hold.refresh_from_db()
    assert hold.status == Hold.Status.CAPTURED
    assert hold.captured_amount == Decimal("25.00")
    transfer = Transaction.objects.get(kind="transfer")
    client.post(
        reverse("ledger:reverse", args=[transfer.pk]),
        {"reason": "wrong account", "idempotency_key": "v1", "step": "confirm"},
    )
    assert Transaction.objects.get(kind="reversal").reversal_of == transfer
    target.refresh_from_db()
    ui_account.refresh_from_db()
    assert target.balance == Decimal("0.00")
    assert ui_account.balance == Decimal("1000.00") - Decimal("25.00")


def test_a_transfer_to_an_unknown_number_is_a_field_error(as_role, ui_account, ui_snapshot):
    before = ui_snapshot()
    response = as_role("accountant").post(
        url(ui_account, "transfer"),
        {"to_account": "0000000000", "amount": "1.00", "idempotency_key": "t2", "step": "confirm"},
    )
    assert "No client account has this number." in response.content.decode()
    assert ui_snapshot() == before
