"""Reads of payment intake, for the API, the admin and the staff UI.

Payment intake is the operator's back office: agents, registries and the
suspense queue are read by staff only (a partner's scope sees none of them).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Count, Min, QuerySet, Sum
from django.utils import timezone

from core.api.scope import Scope
from payments.models import PaymentAgent, Registry, SuspenseItem


def _staff(scope: Scope | None, qs: QuerySet) -> QuerySet:
    return qs.none() if scope is not None and scope.is_partner else qs


def payment_agents_in_scope(scope: Scope | None) -> QuerySet[PaymentAgent]:
    return _staff(scope, PaymentAgent.objects.all())


def registries_in_scope(scope: Scope | None) -> QuerySet[Registry]:
    return _staff(scope, Registry.objects.select_related("agent").defer("content"))


def suspense_in_scope(scope: Scope | None) -> QuerySet[SuspenseItem]:
    return _staff(scope, SuspenseItem.objects.all())


def suspense_queue_totals(scope: Scope | None = None) -> dict[str, Any]:
    """The open queue at a glance: how many, how much (per currency), the oldest, by reason."""
    open_items = suspense_in_scope(scope).filter(status=SuspenseItem.Status.OPEN)
    overall = open_items.aggregate(
        open_count=Count("id"), open_amount=Sum("amount"), oldest_received_at=Min("received_at")
    )
    overall["open_amount"] = overall["open_amount"] or Decimal("0")
    oldest = overall["oldest_received_at"]
    overall["oldest_age_days"] = (timezone.now() - oldest).days if oldest else None
    overall["by_reason"] = {
        row["reason"]: {"count": row["count"], "amount": row["amount"]}
        for row in open_items.values("reason").annotate(count=Count("id"), amount=Sum("amount"))
    }
    overall["by_currency"] = {
        row["currency"]: row["amount"]
        for row in open_items.values("currency").annotate(amount=Sum("amount"))
    }
    return overall


def payment_intents_in_scope(scope: Scope | None) -> QuerySet:
    """Staff see every intent; a partner those on accounts of its brands."""
    from accounts.selectors import accounts_in_scope
    from payments.models import PaymentIntent

    qs = PaymentIntent.objects.select_related("account").prefetch_related("refunds")
    if scope is None or not scope.is_partner:
        return qs
    return qs.filter(account__in=accounts_in_scope(scope))
