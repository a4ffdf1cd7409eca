"""Each role sees exactly its menu items and buttons, and a move it may not make is refused
with 403 on the server even when the POST is crafted by hand; nothing moves."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Account
from approvals.models import ApprovalRequest
from invoicing.models import InvoiceRun
from ledger import services
from ledger.models import Hold

pytestmark = pytest.mark.django_db

MENU = {
    "dashboard": {"operator", "accountant", "administrator", "viewer"},
    "clients": {"operator", "accountant", "administrator", "viewer"},
    "invoices": {"operator", "accountant", "administrator", "viewer"},
    "runs": {"operator", "accountant", "administrator", "viewer"},
    "upload": {"accountant", "administrator"},
    "approvals": {"operator", "accountant", "administrator", "viewer"},
    "roles": {"administrator"},
    "admin": {"administrator"},
    "registries": {"operator", "accountant", "administrator"},
    "suspense": {"operator", "accountant", "administrator"},
    "agents": {"operator", "accountant", "administrator"},
    "registry-upload": {"accountant", "administrator"},
    "reports": {"accountant", "administrator"},
    "sheets": {"accountant", "administrator"},
}
ACTIONS = {
    "payment": {"operator", "accountant", "administrator"},
    "debit": {"operator", "accountant", "administrator"},
    "hold": {"operator", "accountant", "administrator"},
    "block": {"operator", "accountant", "administrator"},
    "refund": {"accountant", "administrator"},
    "transfer": {"accountant", "administrator"},
    "adjustment": {"accountant", "administrator"},
    "reverse": {"accountant", "administrator"},
}
ROLES = ("operator", "accountant", "administrator", "viewer")


@pytest.mark.parametrize("role", ROLES)
def test_menu_shows_exactly_what_the_role_may_open(as_role, role):
    page = as_role(role).get(reverse("backoffice:dashboard")).content.decode()
    for item, roles in MENU.items():
        assert (f'data-menu="{item}"' in page) is (role in roles), item


@pytest.mark.parametrize("role", ROLES)
def test_account_page_shows_exactly_the_moves_the_role_may_make(as_role, role, ui_account):
    page = as_role(role).get(reverse("backoffice:account", args=[ui_account.pk])).content.decode()
    assert ui_account.number in page
    for action, roles in ACTIONS.items():
        assert (f'data-action="{action}"' in page) is (role in roles), action


def test_anonymous_is_sent_to_the_login_page_and_never_sees_a_page(ui_account):
    client = Client()
    for url in (
        reverse("backoffice:dashboard"),
        reverse("backoffice:account", args=[ui_account.pk]),
        reverse("invoicing:runs"),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_a_signed_in_user_who_is_not_staff_is_refused(db, ui_account):
    from tests.factories import UserFactory

    user = UserFactory(username="client-user")
    user.save()
    client = Client()
    client.force_login(user)
    assert client.get(reverse("backoffice:dashboard")).status_code == 403


def post_payment(client, ui_account, step="confirm"):
    return client.post(
        reverse("ledger:post", args=[ui_account.pk, "payment"]),
        {"amount": "50.00", "channel": "bank", "memo": "", "idempotency_key": "k1", "step": step},
    )


@pytest.mark.parametrize(
    ("role", "operation", "data"),
    [
        ("operator", "refund", {"amount": "10.00", "channel": "bank"}),
        ("operator", "transfer", {"amount": "10.00", "to_account": "x"}),
        ("operator", "adjustment", {"amount": "10.00", "direction": "credit", "memo": "r"}),
        ("viewer", "payment", {"amount": "10.00", "channel": "bank"}),
        ("viewer", "debit", {"amount": "10.00"}),
        ("viewer", "hold", {"amount": "10.00"}),
    ],
)
def test_a_crafted_post_of_a_forbidden_move_is_403_and_moves_nothing(
    as_role, ui_snapshot, ui_account, ui_brand, role, operation, data
):
    before = ui_snapshot()
    data = {**data, "brand": ui_brand.pk, "idempotency_key": "crafted", "step": "confirm"}
    response = as_role(role).post(reverse("ledger:post", args=[ui_account.pk, operation]), data)
    assert response.status_code == 403
    assert ui_snapshot() == before
    assert not ApprovalRequest.objects.exists()


def test_reverse_block_and_settle_are_refused_to_roles_without_them(
    as_role, ui_snapshot, ui_account, ui_brand
):
    txn = services.debit_post(account=ui_account, amount=Decimal("5.00"), brand=ui_brand)
    hold = services.hold_create(account=ui_account, amount=Decimal("5.00"), brand=ui_brand)
    before = ui_snapshot()
    operator, viewer = as_role("operator"), as_role("viewer")
    reverse_url = reverse("ledger:reverse", args=[txn.pk])
    assert (
        operator.post(
            reverse_url, {"reason": "x", "idempotency_key": "k", "step": "confirm"}
        ).status_code
        == 403
    )
    block_url = reverse("accounts:status", args=[ui_account.pk, "block"])
    assert viewer.post(block_url, {"reason": "fraud"}).status_code == 403
    capture_url = reverse("ledger:hold", args=[hold.pk, "capture"])
    assert viewer.post(capture_url, {"idempotency_key": "k", "step": "confirm"}).status_code == 403
    assert ui_snapshot() == before
    ui_account.refresh_from_db()
    assert ui_account.status == Account.Status.OPEN
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.ACTIVE


def test_invoice_runs_and_approvals_refuse_roles_without_them(as_role, ui_users):
    from tests.factories import BrandFactory

    BrandFactory()
    operator = as_role("operator")
    response = operator.post(reverse("invoicing:runs"), {"period": "2026-01", "mode": "issue"})
    assert response.status_code == 403
    viewer = as_role("viewer")
    assert (
        viewer.post(reverse("invoicing:runs"), {"period": "2026-01", "mode": "issue"}).status_code
        == 403
    )
    assert not InvoiceRun.objects.exists()
    assert operator.get(reverse("invoicing:upload")).status_code == 403


def test_the_role_that_may_post_does_post(as_role, ui_account):
    """The counterpart of the refusals: the same crafted POST from an operator posts."""
    response = post_payment(as_role("operator"), ui_account)
    assert response.status_code == 302
    ui_account.refresh_from_db()
    assert ui_account.balance == Decimal("1050.00")
