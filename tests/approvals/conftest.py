"""Maker-checker fixtures: a funded account, a maker, a checker, and a clock to move."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from approvals.models import ApprovalRequest
from core.caller import Caller
from ledger.services import payment_post
from tests.factories import AccountFactory, BrandFactory, UserFactory

MAKER_PERMISSIONS = (
    "ledger.post_adjustment",
    "ledger.post_refund",
    "accounts.view_account",
    "accounts.change_account",
    "brands.change_brand",
    "brands.view_brand",
    "approvals.view_approvalrequest",
)
CHECKER_PERMISSIONS = ("approvals.approve_request", "approvals.view_approvalrequest")


def staff_user(*permissions: str, **fields):
    user = UserFactory(**{"is_staff": True, **fields})
    user.save()  # the factory sets the password without saving
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)  # a fresh permission cache


@pytest.fixture
def brand(db):
    return BrandFactory()


@pytest.fixture
def account(brand):
    """A payer with 50,000.00 of its own funds."""
    account = AccountFactory(brands=[brand])
    payment_post(account=account, amount=Decimal("50000.00"), channel="bank")
    account.refresh_from_db()
    return account


@pytest.fixture
def maker(db):
    """A staff user who may post adjustments and refunds and change limits and brands."""
    return staff_user(*MAKER_PERMISSIONS)


@pytest.fixture
def checker(db):
    """Another staff user, who may approve requests (and nothing else)."""
    return staff_user(*CHECKER_PERMISSIONS)


@pytest.fixture
def maker_caller(maker):
    return Caller.for_user(maker)


@pytest.fixture
def checker_caller(checker):
    return Caller.for_user(checker)


def request_state(request: ApprovalRequest) -> tuple:
    fresh = ApprovalRequest.objects.get(pk=request.pk)
    return fresh.status, fresh.checker_ref, fresh.result_id, fresh.error_code


class Clock:
    """``timezone.now`` moved by hand (every service reads it)."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    frozen = Clock()
    with mock.patch("django.utils.timezone.now", new=frozen):
        yield frozen
