"""Roles are groups holding exactly the permissions the API and the admin check."""

import pytest
from django.contrib.auth.models import Group

from accounts.api.views import AccountViewSet
from approvals.api.views import ApprovalRequestViewSet
from backoffice.roles import (
    ACCOUNTANT,
    ADMINISTRATOR,
    GROUP_NAMES,
    OPERATOR,
    ROLES,
    ensure_roles,
    role_permissions,
    roles_of,
)
from invoicing.api.views import InvoiceRunViewSet
from ledger.api.views import (
    DebitViewSet,
    HoldViewSet,
    PaymentViewSet,
    RefundViewSet,
    TransactionViewSet,
    TransferViewSet,
)
from payments.api.views import RegistryViewSet, SuspenseViewSet
from tests.ui_fixtures import staff_user

pytestmark = pytest.mark.django_db


def perms_of(role: str) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in role_permissions(role)}


def test_ensure_roles_creates_each_group_with_exactly_its_permissions_and_is_idempotent():
    groups = ensure_roles()
    group = groups[OPERATOR]
    group.permissions.add(*role_permissions(ADMINISTRATOR))  # someone widened it by hand
    ensure_roles()
    for role, name in GROUP_NAMES.items():
        stored = Group.objects.get(name=name)
        got = {f"{p.content_type.app_label}.{p.codename}" for p in stored.permissions.all()}
        assert got == set(ROLES[role])
    assert Group.objects.filter(name__in=GROUP_NAMES.values()).count() == 3


def test_each_role_includes_the_one_below():
    assert perms_of(OPERATOR) < perms_of(ACCOUNTANT) < perms_of(ADMINISTRATOR)


@pytest.mark.parametrize(
    ("role", "view", "action", "allowed"),
    [
        (OPERATOR, PaymentViewSet, "create", True),
        (OPERATOR, DebitViewSet, "create", True),
        (OPERATOR, HoldViewSet, "create", True),
        (OPERATOR, HoldViewSet, "capture", True),
        (OPERATOR, AccountViewSet, "block", True),
        (OPERATOR, RefundViewSet, "create", False),
        (OPERATOR, TransferViewSet, "create", False),
        (OPERATOR, TransactionViewSet, "reverse", False),
        (OPERATOR, InvoiceRunViewSet, "create", False),
        (OPERATOR, ApprovalRequestViewSet, "approve", False),
        (ACCOUNTANT, RefundViewSet, "create", True),
        (ACCOUNTANT, TransferViewSet, "create", True),
        (ACCOUNTANT, TransactionViewSet, "reverse", True),
        (ACCOUNTANT, InvoiceRunViewSet, "create", True),
        (ACCOUNTANT, InvoiceRunViewSet, "approve", True),
        (ACCOUNTANT, ApprovalRequestViewSet, "approve", True),
        (ACCOUNTANT, AccountViewSet, "partial_update", False),
        (OPERATOR, RegistryViewSet, "list", True),
        (OPERATOR, SuspenseViewSet, "list", True),
        (OPERATOR, RegistryViewSet, "apply", False),
        (OPERATOR, SuspenseViewSet, "assign", False),
        (ACCOUNTANT, RegistryViewSet, "create", True),
        (ACCOUNTANT, RegistryViewSet, "apply", True),
        (ACCOUNTANT, SuspenseViewSet, "assign", True),
        (ACCOUNTANT, SuspenseViewSet, "return_", True),
    ],
)
def test_roles_grant_the_permissions_the_api_requires(role, view, action, allowed):
    """The UI and the API agree: a role may do in one what it may do in the other."""
    _capability, permission = view.required[action]
    assert (permission in perms_of(role)) is allowed


def test_administrator_manages_users_keys_and_webhooks():
    perms = perms_of(ADMINISTRATOR)
    assert {"auth.change_user", "access.add_apikey", "partners.change_webhookendpoint"} <= perms
    assert not {"auth.change_user", "access.add_apikey"} & perms_of(ACCOUNTANT)


def test_role_assign_makes_staff_and_roles_of_reads_it_back():
    user = staff_user(ACCOUNTANT, "someone")
    assert user.is_staff
    assert roles_of(user) == [ACCOUNTANT]
    assert user.has_perm("ledger.reverse_transaction")
    assert not user.has_perm("auth.change_user")


def test_roles_page_shows_each_role_with_its_members_to_administrators_only(as_role, ui_users):
    from django.urls import reverse

    page = as_role("administrator").get(reverse("backoffice:roles")).content.decode()
    for role in ROLES:
        assert f'data-role="{role}"' in page
    assert ui_users["operator"].username in page.split('data-role="operator"')[1]
    assert "Can post payments received" in page
    assert as_role("accountant").get(reverse("backoffice:roles")).status_code == 403
