"""Demo users and their groups: everything about who may do what in the demo, in one place.

``demo_users_ensure`` is the only function that creates users or groups; the staff roles
of the back-office can be rewired here without touching the rest of the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

OPERATORS_GROUP = "Operators"
ACCOUNTANTS_GROUP = "Accountants"

# Operators (call centre, back office) see clients, accounts, the ledger and invoices; they
# edit clients and limits, block accounts and post money through the services' forms.
OPERATOR_VIEW_APPS = ("brands", "accounts", "ledger", "invoicing")
OPERATOR_EXTRA = (
    ("accounts", "add_client"),
    ("accounts", "change_client"),
    ("accounts", "add_account"),
    ("accounts", "change_account"),
    ("accounts", "block_account"),
    ("ledger", "post_payment"),
    ("ledger", "post_debit"),
    ("ledger", "post_refund"),
    ("ledger", "reverse_transaction"),
    ("ledger", "settle_hold"),
    ("ledger", "post_adjustment"),
)
# Accountants run invoicing (tariffs, subscriptions, runs, recalculations, periods) and
# the money side of it (payments, accruals, reversals, adjustments), and see the rest.
ACCOUNTANT_VIEW_APPS = ("brands", "accounts", "ledger", "invoicing", "approvals")
ACCOUNTANT_EXTRA = (
    ("invoicing", "add_tariff"),
    ("invoicing", "change_tariff"),
    ("invoicing", "add_subscription"),
    ("invoicing", "change_subscription"),
    ("invoicing", "add_invoicerun"),
    ("invoicing", "approve_invoicerun"),
    ("invoicing", "change_invoice"),
    ("invoicing", "recalculate_invoice"),
    ("invoicing", "change_billingperiod"),
    ("invoicing", "close_billingperiod"),
    ("ledger", "post_payment"),
    ("ledger", "post_accrual"),
    ("ledger", "post_refund"),
    ("ledger", "post_adjustment"),
    ("ledger", "reverse_transaction"),
    ("approvals", "approve_request"),
)
# username -> (password, e-mail, superuser, group)
USERS = {
    "admin": ("admin", "admin@example.com", True, None),
    "operator": ("operator", "operator@example.com", False, OPERATORS_GROUP),
    "accountant": ("accountant", "accountant@example.com", False, ACCOUNTANTS_GROUP),
}


@dataclass(frozen=True)
class DemoUsers:
    admin: Any
    operator: Any
    accountant: Any


def _permissions(view_apps: tuple[str, ...], extra: tuple[tuple[str, str], ...]) -> list:
    wanted = Q(content_type__app_label__in=view_apps, codename__startswith="view_")
    for app_label, codename in extra:
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(wanted))
    missing = {(a, c) for a, c in extra} - {(p.content_type.app_label, p.codename) for p in found}
    if missing:
        raise LookupError(f"Unknown permissions for the demo groups: {sorted(missing)}")
    return found


def demo_users_ensure() -> DemoUsers:
    """The demo users (admin/admin superuser, operator/operator, accountant/accountant) and
    their groups with the permissions above; existing users keep their passwords."""
    groups = {
        OPERATORS_GROUP: _permissions(OPERATOR_VIEW_APPS, OPERATOR_EXTRA),
        ACCOUNTANTS_GROUP: _permissions(ACCOUNTANT_VIEW_APPS, ACCOUNTANT_EXTRA),
    }
    for name, permissions in groups.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(permissions)
    users = get_user_model().objects
    made = {}
    for username, (password, email, superuser, group) in USERS.items():
        user = users.filter(username=username).first()
        if user is None and superuser:
            user = users.create_superuser(username, email, password)
        elif user is None:
            user = users.create_user(username, email, password, is_staff=True)
        if group:
            user.groups.add(Group.objects.get(name=group))
        made[username] = user
    return DemoUsers(**made)
