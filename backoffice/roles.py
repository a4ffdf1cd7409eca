"""Staff roles as Django groups: what an operator, an accountant and an administrator may do.

The permissions are the very ones the API (``core.api.permissions``: each view's
``required`` map) and the admin check for each move, so a role grants the same
moves in the staff UI, the admin and the API. Each role includes the one before it.
``ensure_roles()`` (``manage.py ensure_roles``, run by ``make migrate``) creates the
groups or sets their permissions back to exactly these; users are put in a role with
``role_assign``. Permissions of an app that is not installed are skipped, so a
permission of a later app (payment registries) can be listed before it lands.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

OPERATOR = "operator"
ACCOUNTANT = "accountant"
ADMINISTRATOR = "administrator"

# Group names (data, not translated): one group per role.
GROUP_NAMES = {OPERATOR: "Operator", ACCOUNTANT: "Accountant", ADMINISTRATOR: "Administrator"}
LABELS = {OPERATOR: _("Operator"), ACCOUNTANT: _("Accountant"), ADMINISTRATOR: _("Administrator")}

OPERATOR_PERMISSIONS = (
    # search and view
    "accounts.view_client",
    "accounts.view_account",
    "brands.view_brand",
    "brands.view_service",
    "ledger.view_transaction",
    "ledger.view_entry",
    "ledger.view_hold",
    "invoicing.view_invoice",
    "invoicing.view_invoicerun",
    "invoicing.view_billingperiod",
    "approvals.view_approvalrequest",
    # payments, debits, holds, block/unblock
    "ledger.post_payment",
    "ledger.post_debit",
    "ledger.post_hold",
    "ledger.settle_hold",
    "accounts.block_account",
    # payment intake: agents, registries and the suspense queue (looking only)
    "payments.view_paymentagent",
    "payments.view_registry",
    "payments.view_suspenseitem",
)
ACCOUNTANT_PERMISSIONS = (
    *OPERATOR_PERMISSIONS,
    # adjustments, reversals, refunds, transfers, and deciding others' requests
    "ledger.post_adjustment",
    "ledger.post_refund",
    "ledger.post_transfer",
    "ledger.reverse_transaction",
    "approvals.approve_request",
    # invoicing: runs, usage and meter readings, recalculation
    "invoicing.add_invoicerun",
    "invoicing.approve_invoicerun",
    "invoicing.view_invoicerunfailure",
    "invoicing.view_subscription",
    "invoicing.view_tariff",
    "invoicing.view_usagerecord",
    "invoicing.add_usagerecord",
    "invoicing.view_meterreading",
    "invoicing.add_meterreading",
    "invoicing.recalculate_invoice",
    # payment intake: upload and apply registries, assign or return suspense
    "payments.apply_registry",
    "payments.resolve_suspenseitem",
    # reports: standard reports, exports, the ad-hoc builder
    "reports.view_reports",
    "reports.add_savedreport",
)
ADMINISTRATOR_PERMISSIONS = (
    *ACCOUNTANT_PERMISSIONS,
    # users and roles
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.view_group",
    # partners and their API keys
    "access.view_partner",
    "access.add_partner",
    "access.change_partner",
    "access.view_apikey",
    "access.add_apikey",
    "access.revoke_apikey",
    # webhooks
    "partners.view_webhookendpoint",
    "partners.add_webhookendpoint",
    "partners.change_webhookendpoint",
    "partners.view_webhookdelivery",
    "partners.redeliver_webhookdelivery",
    # master data: clients, accounts, services, tariffs and subscriptions, one by one or
    # from a spreadsheet (reports.spreadsheets); credit raises still need an approval
    "accounts.add_client",
    "accounts.change_client",
    "accounts.add_account",
    "accounts.change_account",
    "brands.add_service",
    "brands.change_service",
    "invoicing.add_tariff",
    "invoicing.add_subscription",
    "invoicing.change_subscription",
)
ROLES: dict[str, tuple[str, ...]] = {
    OPERATOR: OPERATOR_PERMISSIONS,
    ACCOUNTANT: ACCOUNTANT_PERMISSIONS,
    ADMINISTRATOR: ADMINISTRATOR_PERMISSIONS,
}


class UnknownPermission(LookupError):
    pass


def role_permissions(role: str) -> list[Permission]:
    """The role's permission rows (those of installed apps); a missing one of an installed
    app is an error, never silently a smaller role."""
    installed = {config.label for config in apps.get_app_configs()}
    wanted = [perm.split(".", 1) for perm in ROLES[role] if perm.split(".")[0] in installed]
    query = Q()
    for app_label, codename in wanted:
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(query).select_related("content_type"))
    have = {(p.content_type.app_label, p.codename) for p in found}
    missing = [f"{a}.{c}" for a, c in wanted if (a, c) not in have]
    if missing:
        raise UnknownPermission(f"Permissions not found (run migrate first): {missing}")
    return found


@transaction.atomic
def ensure_roles() -> dict[str, Group]:
    """Create the role groups, or set their permissions back to exactly the role's."""
    groups = {}
    for role, name in GROUP_NAMES.items():
        group, _created = Group.objects.get_or_create(name=name)
        group.permissions.set(role_permissions(role))
        groups[role] = group
    return groups


def role_assign(user: Any, role: str) -> None:
    """Put ``user`` (staff, so that the UI and the admin let them in) in ``role``'s group."""
    group = ensure_roles()[role]
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.groups.add(group)


def roles_of(user: Any) -> list[str]:
    names = set(user.groups.values_list("name", flat=True))
    return [role for role, name in GROUP_NAMES.items() if name in names]


def role_overview() -> list[dict[str, Any]]:
    """Each role with its group's permissions (as stored) and members, for the roles page."""
    groups = {
        group.name: group
        for group in Group.objects.filter(name__in=GROUP_NAMES.values()).prefetch_related(
            "permissions__content_type", "user_set"
        )
    }
    overview = []
    for role, name in GROUP_NAMES.items():
        group = groups.get(name)
        overview.append(
            {
                "role": role,
                "label": LABELS[role],
                "group": name,
                "permissions": sorted(
                    (p.name, f"{p.content_type.app_label}.{p.codename}")
                    for p in (group.permissions.all() if group else [])
                ),
                "users": sorted(u.get_username() for u in (group.user_set.all() if group else [])),
            }
        )
    return overview
