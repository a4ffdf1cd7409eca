"""Maker-checker under real parallel transactions on PostgreSQL (threads, one connection
each, started together): a request is executed once however many approve it at once, one
key files one request, and expiry never overtakes an approval in progress."""

from __future__ import annotations

import time
from decimal import Decimal
from unittest import mock

import pytest

from approvals.models import ApprovalRequest
from approvals.services import approval_approve, approval_reject, approvals_expire_due
from core.caller import Caller
from ledger import maker_checker
from ledger.models import Transaction
from tests.approvals.conftest import CHECKER_PERMISSIONS, staff_user
from tests.ledger.concurrency import codes, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 8
real_refund_post = maker_checker.refund_post


def slow_refund_post(**kwargs):
    """The real refund, after a pause inside the approving transaction: every other
    approver reaches the request's row lock while the first still holds it."""
    time.sleep(0.3)
    return real_refund_post(**kwargs)


def _request(account, maker_caller) -> ApprovalRequest:
    return maker_checker.refund_request(
        account=account, amount="20000.00", channel="bank", caller=maker_caller
    )


def test_concurrent_approvals_execute_the_refund_once(account, maker_caller):
    filed = _request(account, maker_caller)
    checkers = [Caller.for_user(staff_user(*CHECKER_PERMISSIONS)) for _ in range(WORKERS)]
    with mock.patch.object(maker_checker, "refund_post", slow_refund_post):
        outcomes = run_in_threads(
            [lambda c=c: approval_approve(request=filed.pk, checker=c) for c in checkers]
        )
    assert codes(outcomes) == {None: 1, "approval_not_pending": WORKERS - 1}
    [winner] = [checkers[o.index] for o in outcomes if o.ok]
    refund = Transaction.objects.get(kind="refund")
    decided = ApprovalRequest.objects.get(pk=filed.pk)
    assert (decided.status, decided.checker_ref, decided.result_id) == (
        "approved",
        winner.ref,
        refund.pk,
    )
    account.refresh_from_db()
    assert account.balance == Decimal("30000.00")


def test_concurrent_approve_and_reject_decide_once(account, maker_caller):
    filed = _request(account, maker_caller)
    approver, rejecter = (Caller.for_user(staff_user(*CHECKER_PERMISSIONS)) for _ in range(2))
    with mock.patch.object(maker_checker, "refund_post", slow_refund_post):
        outcomes = run_in_threads(
            [
                lambda: approval_approve(request=filed.pk, checker=approver),
                lambda: approval_reject(request=filed.pk, checker=rejecter, reason="no"),
            ]
        )
    assert codes(outcomes) == {None: 1, "approval_not_pending": 1}
    decided = ApprovalRequest.objects.get(pk=filed.pk)
    refunds = Transaction.objects.filter(kind="refund").count()
    assert (decided.status, refunds) in {("approved", 1), ("rejected", 0)}


def test_expiry_waits_for_an_approval_in_progress(account, maker_caller):
    filed = _request(account, maker_caller)
    checker = Caller.for_user(staff_user(*CHECKER_PERMISSIONS))
    later = filed.expires_at  # the sweep runs as if the TTL were over

    def sweep():
        time.sleep(0.1)  # the approval takes the row lock first
        return approvals_expire_due(now=later)

    with mock.patch.object(maker_checker, "refund_post", slow_refund_post):
        approval, expired = run_in_threads(
            [lambda: approval_approve(request=filed.pk, checker=checker), sweep]
        )
    assert approval.ok and expired.value == 0
    assert ApprovalRequest.objects.get(pk=filed.pk).status == "approved"
    assert Transaction.objects.filter(kind="refund").count() == 1


def test_one_key_filed_in_parallel_is_one_request(account, maker_caller):
    outcomes = run_in_threads(
        [
            lambda: maker_checker.refund_request(
                account=account,
                amount="20000.00",
                channel="bank",
                caller=maker_caller,
                idempotency_key="same",
            )
            for _ in range(WORKERS)
        ]
    )
    assert codes(outcomes) == {None: WORKERS}
    assert {o.value.pk for o in outcomes} == {ApprovalRequest.objects.get().pk}
    assert sorted(o.value.replayed for o in outcomes).count(False) == 1
