"""Maker-checker over HTTP: large refunds and credit-limit raises answer 202 with the
request and move nothing; another staff user approves or rejects it; the maker, a user
without the permission and every API key are refused; partners wait like staff."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from accounts.models import Account
from approvals.models import ApprovalRequest
from ledger.models import Transaction
from ledger.services import debit_post
from tests.api.conftest import make_side
from tests.api.helpers import error_of, ledger_state, post
from tests.approvals.conftest import MAKER_PERMISSIONS, staff_user

pytestmark = pytest.mark.django_db
D = Decimal


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def maker_api(maker):
    return session(maker)


@pytest.fixture
def checker_api(checker):
    return session(checker)


def _refund(api, account, amount="20000.00", key=None):
    return post(
        api,
        "/api/v1/refunds/",
        {"account": account.pk, "amount": amount, "channel": "bank", "memo": "overpaid"},
        key=key,
    )


def _approve(api, request_id):
    return post(api, f"/api/v1/approval-requests/{request_id}/approve/")


# --------------------------------------------------------------------------- refunds


def test_staff_refund_above_the_threshold_waits_and_another_user_approves_it(
    maker, maker_api, checker_api, account
):
    before = ledger_state()
    response = _refund(maker_api, account)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["code"] == "approval_required" and "Sent for approval" in body["message"]
    filed = body["approval_request"]
    assert {k: filed[k] for k in ("kind", "status", "amount", "currency", "maker")} == {
        "kind": "ledger.refund",
        "status": "pending",
        "amount": "20000.00",
        "currency": "RUB",
        "maker": f"user:{maker.pk}",
    }
    assert (filed["target_type"], filed["target_id"], filed["checker"]) == (
        "account",
        account.pk,
        None,
    )
    assert filed["payload"] == {
        "account": account.pk,
        "amount": "20000.00",
        "channel": "bank",
        "memo": "overpaid",
    }
    assert ledger_state() == before

    assert checker_api.get(f"/api/v1/approval-requests/{filed['id']}/").json() == filed
    queue = checker_api.get("/api/v1/approval-requests/?status=pending").json()["results"]
    assert [r["id"] for r in queue] == [filed["id"]]

    approved = _approve(checker_api, filed["id"])
    assert approved.status_code == 200, approved.json()
    decided = approved.json()
    assert (decided["status"], decided["result_type"]) == ("approved", "transaction")
    refund = Transaction.objects.get(pk=decided["result_id"])
    assert (refund.kind, refund.amount, refund.caller) == ("refund", D("20000.00"), filed["maker"])
    assert decided["checker"].startswith("user:") and decided["decided_at"]
    # The transaction says who asked and who approved.
    assert refund.metadata == {"approval_request": filed["id"], "approved_by": decided["checker"]}
    again = _approve(checker_api, filed["id"])
    assert error_of(again) == (409, "approval_not_pending")
    assert Transaction.objects.filter(kind="refund").count() == 1


def test_a_refund_equal_to_the_threshold_posts_at_once(settings, maker_api, account):
    settings.BILLING_APPROVAL_REFUND_ABOVE = D("10000.00")
    assert _refund(maker_api, account, amount="10000.00").status_code == 201
    assert _refund(maker_api, account, amount="10000.01").status_code == 202
    assert Transaction.objects.filter(kind="refund").count() == 1
    assert ApprovalRequest.objects.count() == 1


def test_the_maker_cannot_approve_or_reject_over_the_api(maker, maker_api, account):
    maker.user_permissions.add(Permission.objects.get(codename="approve_request"))
    filed = _refund(maker_api, account).json()["approval_request"]
    before = ledger_state()
    assert error_of(_approve(maker_api, filed["id"])) == (403, "self_approval")
    rejected = post(
        maker_api, f"/api/v1/approval-requests/{filed['id']}/reject/", {"reason": "mine"}
    )
    assert error_of(rejected) == (403, "self_approval")
    assert ledger_state() == before
    assert ApprovalRequest.objects.get().status == "pending"


def test_staff_without_the_approve_permission_is_refused(maker_api, account):
    filed = _refund(maker_api, account).json()["approval_request"]
    colleague = session(staff_user(*MAKER_PERMISSIONS))
    assert colleague.get(f"/api/v1/approval-requests/{filed['id']}/").status_code == 200
    before = ledger_state()
    response = _approve(colleague, filed["id"])
    assert error_of(response) == (403, "permission_denied")
    assert "approvals.approve_request" in response.json()["message"]
    assert ledger_state() == before


def test_rejection_over_the_api_needs_a_reason(maker_api, checker_api, account):
    filed = _refund(maker_api, account).json()["approval_request"]
    url = f"/api/v1/approval-requests/{filed['id']}/reject/"
    assert error_of(post(checker_api, url, {})) == (400, "validation_error")
    before = ledger_state()
    rejected = post(checker_api, url, {"reason": "duplicate of another request"})
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["reason"]) == (
        "rejected",
        "duplicate of another request",
    )
    assert ledger_state() == before
    assert error_of(_approve(checker_api, filed["id"])) == (409, "approval_not_pending")


def test_a_refund_refused_at_approval_answers_the_refusal_and_marks_it_failed(
    maker_api, checker_api, account, brand
):
    filed = _refund(maker_api, account).json()["approval_request"]
    debit_post(account=account, amount="45000.00", brand=brand)
    before = ledger_state()
    response = _approve(checker_api, filed["id"])
    assert error_of(response) == (422, "insufficient_funds")
    assert response.json()["details"]["approval_request"] == filed["id"]
    assert ledger_state() == before
    shown = checker_api.get(f"/api/v1/approval-requests/{filed['id']}/").json()
    assert (shown["status"], shown["error_code"], shown["result_id"]) == (
        "failed",
        "insufficient_funds",
        None,
    )


def test_an_expired_request_answers_409(maker_api, checker_api, account):
    filed = _refund(maker_api, account).json()["approval_request"]
    made = ApprovalRequest.objects.get(pk=filed["id"]).created_at
    ApprovalRequest.objects.filter(pk=filed["id"]).update(
        created_at=made - timedelta(days=10), expires_at=made - timedelta(days=7)
    )
    assert error_of(_approve(checker_api, filed["id"])) == (409, "approval_expired")
    assert ApprovalRequest.objects.get().status == "expired"
    assert not Transaction.objects.filter(kind="refund").exists()


def test_a_refund_filed_with_an_idempotency_key_replays_its_202(maker_api, account):
    first = _refund(maker_api, account, key="refund-1")
    again = _refund(maker_api, account, key="refund-1")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert ApprovalRequest.objects.count() == 1
    other = _refund(maker_api, account, amount="30000.00", key="refund-1")
    assert error_of(other) == (409, "idempotency_conflict")
    # A key first used for a refund that posted is not reused for one that waits.
    assert _refund(maker_api, account, amount="10.00", key="refund-2").status_code == 201
    reused = _refund(maker_api, account, amount="20000.00", key="refund-2")
    assert error_of(reused) == (409, "idempotency_conflict")
    assert ApprovalRequest.objects.count() == 1


# --------------------------------------------------------------------------- partners


def test_a_partners_large_refund_waits_for_staff_and_stays_its_own(checker_api):
    side_a, side_b = make_side("Partner A", funds="30000.00"), make_side("Partner B")
    response = _refund(side_a.api, side_a.account)
    assert response.status_code == 202
    filed = response.json()["approval_request"]
    assert filed["maker"] == f"partner:{side_a.partner.pk}"
    # The partner reads its own requests; another partner sees none of them.
    assert side_a.api.get(f"/api/v1/approval-requests/{filed['id']}/").status_code == 200
    assert [r["id"] for r in side_a.api.get("/api/v1/approval-requests/").json()["results"]] == [
        filed["id"]
    ]
    assert side_b.api.get(f"/api/v1/approval-requests/{filed['id']}/").status_code == 404
    assert side_b.api.get("/api/v1/approval-requests/").json()["results"] == []
    # No key approves anything, whatever it may do.
    for api in (side_a.api, side_b.api):
        response = _approve(api, filed["id"])
        assert error_of(response) == (403, "permission_denied")
        assert "staff" in response.json()["message"]
    decided = _approve(checker_api, filed["id"]).json()
    refund = Transaction.objects.get(pk=decided["result_id"])
    assert refund.caller == f"partner:{side_a.partner.pk}"
    # Its own posting: the partner reads it (and could reverse it).
    assert side_a.api.get(f"/api/v1/transactions/{refund.pk}/").status_code == 200
    assert side_a.api.get(f"/api/v1/approval-requests/{filed['id']}/").json()["status"] == (
        "approved"
    )


# --------------------------------------------------------------------------- credit limits


def test_staff_credit_limit_raise_answers_202_and_changes_nothing_until_approved(
    maker_api, checker_api, account
):
    url = f"/api/v1/accounts/{account.pk}/"
    before = ledger_state()
    response = maker_api.patch(
        url, {"credit_limit": "100000.00", "write_off_limit_day": "500.00"}, format="json"
    )
    assert response.status_code == 202, response.json()
    filed = response.json()["approval_request"]
    assert (filed["kind"], filed["amount"], filed["target_type"]) == (
        "accounts.credit_limit",
        "100000.00",
        "account",
    )
    assert filed["payload"]["changes"] == {
        "credit_limit": "100000.00",
        "write_off_limit_day": "500.00",
    }
    assert ledger_state() == before
    assert maker_api.get(url).json()["credit_limit"] == "0.00"

    decided = _approve(checker_api, filed["id"]).json()
    assert (decided["status"], decided["result_type"], decided["result_id"]) == (
        "approved",
        "account",
        account.pk,
    )
    shown = maker_api.get(url).json()
    assert (shown["credit_limit"], shown["write_off_limit_day"]) == ("100000.00", "500.00")


def test_credit_limit_changes_that_need_no_approval_apply_at_once(settings, maker_api, account):
    settings.BILLING_APPROVAL_CREDIT_LIMIT_ABOVE = D("10000.00")
    url = f"/api/v1/accounts/{account.pk}/"
    at_threshold = maker_api.patch(url, {"credit_limit": "10000.00"}, format="json")
    assert at_threshold.status_code == 200
    Account.objects.filter(pk=account.pk).update(credit_limit=D("90000.00"))
    lowered = maker_api.patch(url, {"credit_limit": "50000.00"}, format="json")
    assert (lowered.status_code, lowered.json()["credit_limit"]) == (200, "50000.00")
    assert not ApprovalRequest.objects.exists()


def test_a_raise_that_waits_is_sent_alone_and_never_at_creation(account):
    maker_api = session(staff_user("accounts.add_account", "accounts.change_account"))
    mixed = maker_api.patch(
        f"/api/v1/accounts/{account.pk}/",
        {"credit_limit": "100000.00", "brands": []},
        format="json",
    )
    assert error_of(mixed) == (400, "validation_error")
    assert "credit_limit" in mixed.json()["details"]
    created = post(
        maker_api, "/api/v1/accounts/", {"client": account.client_id, "credit_limit": "20000.00"}
    )
    assert error_of(created) == (400, "validation_error")
    assert "approval" in created.json()["details"]["credit_limit"][0]
    assert not ApprovalRequest.objects.exists()
    assert Account.objects.filter(client=account.client).count() == 1


def test_a_partners_credit_limit_raise_waits_too(checker_api):
    side = make_side("Partner A")
    response = side.api.patch(
        f"/api/v1/accounts/{side.account.pk}/", {"credit_limit": "100000.00"}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["approval_request"]["maker"] == f"partner:{side.partner.pk}"
    assert Account.objects.get(pk=side.account.pk).credit_limit == 0
