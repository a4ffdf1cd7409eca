"""Fixtures of the staff UI (imported by tests/conftest.py): one signed-in client per role,
a funded account to act on."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from backoffice.roles import ACCOUNTANT, ADMINISTRATOR, OPERATOR, ensure_roles, role_assign
from ledger import services
from ledger.models import Transaction
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory
from tests.ledger.conftest import ledger_state

ROLES = (OPERATOR, ACCOUNTANT, ADMINISTRATOR)


@pytest.fixture
def ui_roles(db):
    return ensure_roles()


def staff_user(role: str | None, username: str | None = None):
    user = UserFactory(username=username or f"{role or 'viewer'}-user", is_staff=True)
    user.save()
    if role is not None:
        role_assign(user, role)
    return user


def viewer_user():
    """Staff who may only look: every view permission of the UI's models, nothing else."""
    user = staff_user(None, "viewer-user")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["accounts", "ledger", "invoicing", "approvals"],
            codename__startswith="view_",
        )
    )
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ui_users(ui_roles):
    made = {role: staff_user(role) for role in ROLES}
    made["viewer"] = viewer_user()
    return made


@pytest.fixture
def as_role(ui_users):
    """``as_role("operator")``: a test client signed in as that role's user."""
    return lambda role: signed_in(ui_users[role])


@pytest.fixture
def ui_brand(db):
    return BrandFactory(name="Food Delivery")


@pytest.fixture
def ui_service(ui_brand):
    return ServiceFactory(brand=ui_brand, name="Orders")


@pytest.fixture
def ui_account(ui_brand):
    """A payer account with 1,000.00 paid in and a 300.00 write-off limit per day."""
    acc = AccountFactory(brands=[ui_brand], write_off_limit_day=Decimal("300.00"))
    services.payment_post(account=acc, amount=Decimal("1000.00"), channel="bank")
    acc.refresh_from_db()
    return acc


@pytest.fixture
def ui_snapshot(db):
    return ledger_state


@pytest.fixture
def ui_posted(db):
    """The number of transactions: what a refused request must leave unchanged."""
    return lambda: Transaction.objects.count()
