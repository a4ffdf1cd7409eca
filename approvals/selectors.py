"""Reads of maker-checker requests for the admin, the API and the staff UI."""

from __future__ import annotations

from datetime import datetime

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import QuerySet
from django.utils import timezone

from approvals.models import ApprovalRequest
from core.api.scope import Scope


def approval_requests() -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.select_related("maker", "checker", "target_type", "result_type")


def approval_requests_in_scope(scope: Scope) -> QuerySet[ApprovalRequest]:
    """Staff see every request; a partner only those its own keys made."""
    requests = approval_requests()
    if scope.is_partner:
        return requests.filter(maker_ref=scope.caller.ref)
    return requests


def approvals_awaiting(*, now: datetime | None = None) -> QuerySet[ApprovalRequest]:
    """Pending requests that can still be approved, oldest first (the checkers' queue)."""
    return (
        approval_requests()
        .filter(status=ApprovalRequest.Status.PENDING, expires_at__gt=now or timezone.now())
        .order_by("created_at", "id")
    )


def approvals_awaiting_count() -> int:
    return approvals_awaiting().count()


def approval_requests_about(obj: models.Model) -> QuerySet[ApprovalRequest]:
    """The requests about one object (an account, a brand), newest first."""
    return approval_requests().filter(
        target_type=ContentType.objects.get_for_model(obj, for_concrete_model=True),
        target_id=obj.pk,
    )
