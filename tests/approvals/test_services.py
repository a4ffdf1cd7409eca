"""Maker-checker services: filing, approving (the move executed once, through the real
service), rejecting, refusing the maker and the unauthorised, refusals at approval time,
expiry, idempotent filing, thresholds, and the database's own guard."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.exceptions import InvalidAccountStructure
from accounts.maker_checker import (
    CREDIT_LIMIT,
    account_change_needs_approval,
    account_update_request,
    credit_limit_needs_approval,
)
from accounts.models import Account
from accounts.services import account_close, account_update
from approvals import registry, tasks
from approvals.exceptions import (
    ApprovalExpired,
    ApprovalNotPending,
    ApprovalRefused,
    ChangedSinceRequested,
    PermissionDenied,
    SelfApproval,
    UnknownApprovalKind,
)
from approvals.models import ApprovalRequest
from approvals.selectors import approval_requests_about, approvals_awaiting
from approvals.services import (
    approval_approve,
    approval_reject,
    approval_request,
    approvals_expire_due,
)
from core.caller import Caller
from core.errors import IdempotencyConflict, ValidationFailed
from ledger.exceptions import InvalidAmount, InvalidOperation
from ledger.maker_checker import (
    ADJUSTMENT,
    REFUND,
    adjustment_request,
    refund_needs_approval,
    refund_request,
)
from ledger.models import Transaction
from ledger.services import debit_post
from tests.approvals.conftest import request_state, staff_user
from tests.factories import AccountFactory
from tests.ledger.conftest import ledger_state

pytestmark = pytest.mark.django_db
D = Decimal


def _balance(account: Account) -> Decimal:
    return Account.objects.get(pk=account.pk).balance


# --------------------------------------------------------------------------- kinds


def test_every_dangerous_move_has_a_registered_kind():
    assert {kind.name for kind in registry.kinds()} == {
        "ledger.adjustment",
        "ledger.refund",
        "accounts.credit_limit",
        "brands.bank_details",
    }


def test_approval_request_refuses_an_unknown_kind_and_the_system(maker_caller, account):
    with pytest.raises(UnknownApprovalKind):
        approval_request(kind="ledger.nothing", payload={}, summary="x", caller=maker_caller)
    with pytest.raises(PermissionDenied):
        approval_request(kind=REFUND, payload={}, summary="x", caller=Caller.system("test"))
    assert not ApprovalRequest.objects.exists()


# --------------------------------------------------------------------------- approving


def test_adjustment_request_moves_nothing_until_another_user_approves_it_once(
    account, maker, maker_caller, checker_caller
):
    before = ledger_state()
    filed = adjustment_request(
        account=account, amount="-1500.00", reason="double charge", caller=maker_caller
    )
    assert ledger_state() == before
    assert (filed.status, filed.kind, filed.amount, filed.maker) == (
        "pending",
        ADJUSTMENT,
        D("1500.00"),
        maker,
    )
    assert filed.payload == {"account": account.pk, "amount": "-1500.00", "reason": "double charge"}
    assert list(approvals_awaiting()) == [filed]
    assert list(approval_requests_about(account)) == [filed]

    approved = approval_approve(request=filed, checker=checker_caller)

    assert approved.status == "approved"
    assert approved.checker_ref == checker_caller.ref and approved.decided_at is not None
    txn = Transaction.objects.get(kind="adjustment")
    assert approved.result == txn
    assert approved.result_type == ContentType.objects.get_for_model(Transaction)
    # Posted as the maker, from the checker's request, with both recorded.
    assert (txn.caller, txn.created_by, txn.amount, txn.memo) == (
        maker_caller.ref,
        maker,
        D("1500.00"),
        "double charge",
    )
    assert txn.metadata["approval_request"] == filed.pk
    assert txn.metadata["approved_by"] == checker_caller.ref
    assert _balance(account) == D("48500.00")
    with pytest.raises(ApprovalNotPending):
        approval_approve(request=filed, checker=checker_caller)
    assert Transaction.objects.filter(kind="adjustment").count() == 1
    assert list(approvals_awaiting()) == []


def test_refund_request_executes_the_refund_as_the_maker(account, maker_caller, checker_caller):
    filed = refund_request(
        account=account, amount="20000.00", channel="bank", memo="overpaid", caller=maker_caller
    )
    assert _balance(account) == D("50000.00")
    approved = approval_approve(request=filed.pk, checker=checker_caller)
    txn = approved.result
    assert (txn.kind, txn.amount, txn.channel, txn.memo, txn.caller) == (
        "refund",
        D("20000.00"),
        "bank",
        "overpaid",
        maker_caller.ref,
    )
    assert _balance(account) == D("30000.00")


def test_nobody_approves_or_rejects_their_own_request(account, maker, maker_caller):
    filed = adjustment_request(account=account, amount="10.00", reason="fix", caller=maker_caller)
    # Even with the permission to approve.
    maker.user_permissions.add(Permission.objects.get(codename="approve_request"))
    maker = type(maker).objects.get(pk=maker.pk)
    assert maker.has_perm("approvals.approve_request")
    before = ledger_state()
    with pytest.raises(SelfApproval) as refused:
        approval_approve(request=filed, checker=Caller.for_user(maker))
    assert refused.value.code == "self_approval"
    with pytest.raises(SelfApproval):
        approval_reject(request=filed, checker=Caller.for_user(maker), reason="no")
    assert ledger_state() == before
    assert request_state(filed) == ("pending", "", None, "")


def test_a_user_without_the_permission_cannot_decide(account, maker_caller):
    filed = adjustment_request(account=account, amount="10.00", reason="fix", caller=maker_caller)
    clerk = Caller.for_user(staff_user("ledger.post_adjustment", "ledger.post_refund"))
    not_staff = Caller.for_user(staff_user("approvals.approve_request", is_staff=False))
    before = ledger_state()
    for caller in (clerk, not_staff, Caller.for_partner(1), Caller.system("robot")):
        with pytest.raises(PermissionDenied):
            approval_approve(request=filed, checker=caller)
        with pytest.raises(PermissionDenied):
            approval_reject(request=filed, checker=caller, reason="no")
    assert ledger_state() == before
    assert request_state(filed) == ("pending", "", None, "")


def test_rejection_needs_a_reason_and_moves_nothing(account, maker_caller, checker_caller):
    filed = refund_request(account=account, amount="20000.00", channel="bank", caller=maker_caller)
    before = ledger_state()
    with pytest.raises(ValidationFailed):
        approval_reject(request=filed, checker=checker_caller, reason="  ")
    rejected = approval_reject(request=filed, checker=checker_caller, reason="client asked twice")
    assert (rejected.status, rejected.reason, rejected.checker_ref) == (
        "rejected",
        "client asked twice",
        checker_caller.ref,
    )
    assert ledger_state() == before
    with pytest.raises(ApprovalNotPending):
        approval_approve(request=filed, checker=checker_caller)
    assert ledger_state() == before


# --------------------------------------------------------------------------- refused at approval


def test_refund_refused_when_approved_marks_the_request_failed_and_moves_nothing(
    account, brand, maker_caller, checker_caller
):
    filed = refund_request(account=account, amount="20000.00", channel="bank", caller=maker_caller)
    debit_post(account=account, amount="40000.00", brand=brand)  # spent meanwhile
    before = ledger_state()
    with pytest.raises(ApprovalRefused) as refused:
        approval_approve(request=filed, checker=checker_caller)
    assert (refused.value.code, refused.value.status) == ("insufficient_funds", 422)
    assert refused.value.details["approval_request"] == filed.pk
    assert ledger_state() == before
    failed = ApprovalRequest.objects.get(pk=filed.pk)
    assert (failed.status, failed.error_code, failed.checker_ref, failed.result_id) == (
        "failed",
        "insufficient_funds",
        checker_caller.ref,
        None,
    )
    assert failed.error_message
    with pytest.raises(ApprovalNotPending):  # failed is final
        approval_approve(request=filed, checker=checker_caller)


def test_adjustment_on_an_account_closed_meanwhile_fails(maker_caller, checker_caller, brand):
    empty = AccountFactory(brands=[brand])
    filed = adjustment_request(account=empty, amount="5.00", reason="fix", caller=maker_caller)
    account_close(account=empty)
    with pytest.raises(ApprovalRefused) as refused:
        approval_approve(request=filed, checker=checker_caller)
    assert refused.value.code == "account_closed"
    assert request_state(filed)[0::3] == ("failed", "account_closed")
    assert not Transaction.objects.filter(account=empty).exists()


def test_a_maker_who_lost_the_adjustment_permission_is_refused_at_approval(
    account, maker, maker_caller, checker_caller
):
    filed = adjustment_request(account=account, amount="5.00", reason="fix", caller=maker_caller)
    maker.user_permissions.clear()
    with pytest.raises(ApprovalRefused) as refused:
        approval_approve(request=filed, checker=checker_caller)
    assert refused.value.code == "permission_denied"
    assert request_state(filed)[0] == "failed"


def test_filing_refuses_what_could_never_be_executed(account, maker_caller, brand):
    clerk = Caller.for_user(staff_user("ledger.post_refund"))
    with pytest.raises(PermissionDenied):  # no adjustment permission
        adjustment_request(account=account, amount="5.00", reason="fix", caller=clerk)
    with pytest.raises(ValidationFailed, match="reason"):
        adjustment_request(account=account, amount="5.00", reason=" ", caller=maker_caller)
    with pytest.raises(InvalidAmount):
        refund_request(account=account, amount="0.001", channel="bank", caller=maker_caller)
    with pytest.raises(ValidationFailed, match="channel"):
        refund_request(account=account, amount="20000", channel="pigeon", caller=maker_caller)
    employee = AccountFactory(brands=[brand], parent=account)
    with pytest.raises(InvalidOperation):
        refund_request(account=employee, amount="20000", channel="bank", caller=maker_caller)
    assert not ApprovalRequest.objects.exists()


# --------------------------------------------------------------------------- expiry


def test_a_request_expires_after_the_ttl_and_cannot_be_approved(
    settings, clock, account, maker_caller, checker_caller
):
    settings.BILLING_APPROVAL_TTL_HOURS = 24
    filed = refund_request(account=account, amount="20000.00", channel="bank", caller=maker_caller)
    assert filed.expires_at == clock.now + timedelta(hours=24)
    clock.advance(hours=23, minutes=59)
    assert approvals_expire_due() == 0
    clock.advance(minutes=1)
    before = ledger_state()
    with pytest.raises(ApprovalExpired) as expired:
        approval_approve(request=filed, checker=checker_caller)
    assert expired.value.code == "approval_expired"
    assert ledger_state() == before
    assert request_state(filed) == ("expired", "", None, "")
    with pytest.raises(ApprovalNotPending):
        approval_reject(request=filed, checker=checker_caller, reason="late")


def test_the_schedule_marks_due_requests_expired(settings, clock, account, maker_caller):
    settings.BILLING_APPROVAL_TTL_HOURS = 2
    old = adjustment_request(account=account, amount="1.00", reason="a", caller=maker_caller)
    clock.advance(hours=1)
    young = adjustment_request(account=account, amount="2.00", reason="b", caller=maker_caller)
    clock.advance(hours=1, seconds=1)
    assert tasks.expire_requests() == 1
    assert request_state(old)[0] == "expired"
    assert request_state(young)[0] == "pending"
    assert ApprovalRequest.objects.get(pk=old.pk).decided_at == clock.now
    assert [s["func"] for s in tasks.SCHEDULES] == ["approvals.tasks.expire_requests"]
    clock.advance(hours=2)
    assert approvals_expire_due() == 1
    assert approvals_expire_due() == 0


def test_a_rejection_after_expiry_is_refused_and_marks_it_expired(
    settings, clock, account, maker_caller, checker_caller
):
    settings.BILLING_APPROVAL_TTL_HOURS = 1
    filed = adjustment_request(account=account, amount="1.00", reason="a", caller=maker_caller)
    clock.advance(hours=2)
    with pytest.raises(ApprovalExpired):
        approval_reject(request=filed, checker=checker_caller, reason="too late")
    assert request_state(filed)[0] == "expired"


# --------------------------------------------------------------------------- idempotent filing


def test_filing_twice_with_one_key_is_one_request(account, maker_caller):
    first = refund_request(
        account=account, amount="20000.00", channel="bank", caller=maker_caller, idempotency_key="k"
    )
    again = refund_request(
        account=account,
        amount=D("20000"),
        channel="bank",
        caller=maker_caller,
        idempotency_key="k",
    )
    assert (again.pk, first.replayed, again.replayed) == (first.pk, False, True)
    with pytest.raises(IdempotencyConflict):
        refund_request(
            account=account,
            amount="30000.00",
            channel="bank",
            caller=maker_caller,
            idempotency_key="k",
        )
    other_maker = Caller.for_user(staff_user("ledger.post_refund"))
    theirs = refund_request(
        account=account, amount="20000.00", channel="bank", caller=other_maker, idempotency_key="k"
    )
    assert theirs.pk != first.pk  # keys are per maker
    assert ApprovalRequest.objects.count() == 2


# --------------------------------------------------------------------------- thresholds


def test_refund_threshold_is_strictly_above(settings):
    settings.BILLING_APPROVAL_REFUND_ABOVE = D("10000.00")
    assert not refund_needs_approval(D("10000.00"))
    assert refund_needs_approval(D("10000.01"))
    assert not refund_needs_approval(D("9999.99"))


def test_credit_limit_threshold_is_strictly_above_and_lowering_never_waits(settings):
    settings.BILLING_APPROVAL_CREDIT_LIMIT_ABOVE = D("10000.00")
    assert not credit_limit_needs_approval(current=D("0"), new=D("10000.00"))
    assert credit_limit_needs_approval(current=D("0"), new=D("10000.01"))
    assert credit_limit_needs_approval(current=D("20000"), new=D("20000.01"))
    assert not credit_limit_needs_approval(current=D("50000"), new=D("20000"))  # lowering
    assert not credit_limit_needs_approval(current=D("50000"), new=D("50000"))
    assert not credit_limit_needs_approval(current=D("0"), new=None)


# --------------------------------------------------------------------------- credit limits


def test_credit_limit_request_applies_the_change_when_approved(
    account, maker_caller, checker_caller
):
    changes = {"credit_limit": D("25000.00"), "write_off_limit_day": D("500.00")}
    assert account_change_needs_approval(account, changes)
    assert not account_change_needs_approval(account, {"write_off_limit_day": D("1")})
    filed = account_update_request(account=account, changes=changes, caller=maker_caller)
    assert filed.kind == CREDIT_LIMIT and filed.amount == D("25000.00")
    assert filed.payload["changes"] == {"credit_limit": "25000.00", "write_off_limit_day": "500.00"}
    assert filed.payload["previous"] == {"credit_limit": "0.00", "write_off_limit_day": None}
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.credit_limit, fresh.write_off_limit_day) == (D("0.00"), None)
    approved = approval_approve(request=filed, checker=checker_caller)
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.credit_limit, fresh.write_off_limit_day) == (D("25000.00"), D("500.00"))
    assert approved.result == fresh


def test_a_change_made_over_a_stale_value_fails(account, maker_caller, checker_caller):
    filed = account_update_request(
        account=account, changes={"credit_limit": D("25000.00")}, caller=maker_caller
    )
    account_update(account=account, credit_limit=D("5000.00"))
    with pytest.raises(ApprovalRefused) as refused:
        approval_approve(request=filed, checker=checker_caller)
    assert (refused.value.code, refused.value.status) == (
        ChangedSinceRequested.code,
        ChangedSinceRequested.status,
    )
    assert Account.objects.get(pk=account.pk).credit_limit == D("5000.00")


def test_an_invalid_limit_change_is_refused_when_filed(account, brand, maker_caller):
    employee = AccountFactory(brands=[brand], parent=account)
    with pytest.raises(InvalidAccountStructure):
        account_update_request(
            account=employee, changes={"credit_limit": D("25000.00")}, caller=maker_caller
        )
    assert not ApprovalRequest.objects.exists()


# --------------------------------------------------------------------------- the database


def test_the_database_refuses_a_self_decision_and_an_undocumented_one(account, maker_caller):
    filed = adjustment_request(account=account, amount="1.00", reason="a", caller=maker_caller)
    rows = ApprovalRequest.objects.filter(pk=filed.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(status="rejected", reason="mine", checker_ref=F("maker_ref"))
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.update(status="approved", checker_ref="user:999999")  # no time, no result
    assert request_state(filed)[0] == "pending"
