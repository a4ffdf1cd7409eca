"""Saved ad-hoc reports: create, change, share, delete (the owner only), and what a user sees."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q, QuerySet

from core.errors import NotFoundInScope, PermissionDenied
from reports.adhoc.compiler import parse
from reports.models import SavedReport


def saved_reports_visible_to(user: Any) -> QuerySet[SavedReport]:
    """The user's own reports and those shared with them or one of their groups."""
    return SavedReport.objects.filter(
        Q(owner=user) | Q(shared_with_users=user) | Q(shared_with_groups__in=user.groups.all())
    ).distinct()


def saved_report_get(*, user: Any, report_id: int) -> SavedReport:
    found = saved_reports_visible_to(user).filter(pk=report_id).first()
    if found is None:
        raise NotFoundInScope("saved report: not found.")
    return found


def _owned(user: Any, report: SavedReport) -> None:
    if report.owner_id != user.pk:
        raise PermissionDenied("Only the owner may change or delete a saved report.")


@transaction.atomic
def saved_report_create(
    *,
    owner: Any,
    name: str,
    definition: dict,
    users: Iterable[Any] = (),
    groups: Iterable[Group] = (),
) -> SavedReport:
    parse(definition)
    report = SavedReport.objects.create(name=name, owner=owner, definition=definition)
    report.shared_with_users.set(users)
    report.shared_with_groups.set(groups)
    return report


@transaction.atomic
def saved_report_update(
    *,
    user: Any,
    report: SavedReport,
    name: str | None = None,
    definition: dict | None = None,
    users: Iterable[Any] | None = None,
    groups: Iterable[Group] | None = None,
) -> SavedReport:
    """Change a saved report (its owner only); None leaves a part as it is."""
    _owned(user, report)
    if definition is not None:
        parse(definition)
        report.definition = definition
    if name is not None:
        report.name = name
    report.save(update_fields=["name", "definition", "updated_at"])
    if users is not None:
        report.shared_with_users.set(users)
    if groups is not None:
        report.shared_with_groups.set(groups)
    return report


@transaction.atomic
def saved_report_delete(*, user: Any, report: SavedReport) -> None:
    _owned(user, report)
    report.delete()
