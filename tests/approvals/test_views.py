"""The approvals queue in the staff UI: another accountant approves (the move executes
once), nobody approves their own request, an operator may look but not decide."""

from decimal import Decimal

import pytest
from django.urls import reverse

from approvals.models import ApprovalRequest
from ledger.maker_checker import adjustment_request
from ledger.models import Transaction
from ledger.services import Caller
from tests.ui_fixtures import signed_in, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(ui_users, ui_account):
    return adjustment_request(
        account=ui_account,
        amount=Decimal("20.00"),
        reason="goodwill",
        caller=Caller.for_user(ui_users["accountant"]),
    )


def test_queue_lists_pending_requests_and_exports_them(as_role, pending):
    client = as_role("operator")
    page = client.get(reverse("approvals:queue")).content.decode()
    assert f'href="{reverse("approvals:request", args=[pending.pk])}"' in page
    export = client.get(reverse("approvals:queue") + "?status=pending&export=csv")
    assert export["Content-Type"].startswith("text/csv")
    assert "goodwill" in b"".join(export.streaming_content).decode()


def test_another_accountant_approves_and_the_adjustment_posts(ui_roles, pending, ui_account):
    checker = signed_in(staff_user("accountant", "second-accountant"))
    page = checker.get(reverse("approvals:request", args=[pending.pk])).content.decode()
    assert 'id="approve"' in page
    checker.post(reverse("approvals:decide", args=[pending.pk, "approve"]))
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.APPROVED
    ui_account.refresh_from_db()
    assert ui_account.balance == Decimal("1020.00")
    checker.post(reverse("approvals:decide", args=[pending.pk, "approve"]))  # again: refused
    assert Transaction.objects.filter(kind="adjustment").count() == 1


def test_the_maker_cannot_approve_their_own_request(as_role, pending, ui_snapshot):
    before = ui_snapshot()
    client = as_role("accountant")
    page = client.get(reverse("approvals:request", args=[pending.pk])).content.decode()
    assert 'id="approve"' not in page
    assert 'id="own-request"' in page
    response = client.post(reverse("approvals:decide", args=[pending.pk, "approve"]), follow=True)
    assert "You cannot approve or reject your own request." in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.PENDING
    assert ui_snapshot() == before


def test_an_operator_may_not_decide_even_by_a_crafted_post(as_role, pending, ui_snapshot):
    before = ui_snapshot()
    client = as_role("operator")
    assert (
        'id="approve"'
        not in client.get(reverse("approvals:request", args=[pending.pk])).content.decode()
    )
    assert client.post(reverse("approvals:decide", args=[pending.pk, "approve"])).status_code == 403
    assert (
        client.post(
            reverse("approvals:decide", args=[pending.pk, "reject"]), {"reason": "no"}
        ).status_code
        == 403
    )
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.PENDING
    assert ui_snapshot() == before


def test_reject_needs_a_reason_and_moves_nothing(ui_roles, pending, ui_snapshot):
    before = ui_snapshot()
    checker = signed_in(staff_user("accountant", "second-accountant"))
    checker.post(reverse("approvals:decide", args=[pending.pk, "reject"]), {"reason": ""})
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.PENDING
    checker.post(reverse("approvals:decide", args=[pending.pk, "reject"]), {"reason": "no basis"})
    pending.refresh_from_db()
    assert pending.status == ApprovalRequest.Status.REJECTED
    assert pending.reason == "no basis"
    assert ui_snapshot() == before
