"""Reads of invoicing within a caller's scope."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.selectors import accounts_in_scope
from core.api.scope import Scope
from invoicing.models import Invoice


def invoices_in_scope(scope: Scope, qs: QuerySet[Invoice] | None = None) -> QuerySet[Invoice]:
    """A partner's brands' invoices on accounts linked to its brands; every invoice for staff."""
    qs = Invoice.objects.all() if qs is None else qs
    if scope.brand_ids is None:
        return qs
    return qs.filter(brand_id__in=scope.brand_ids, account__in=accounts_in_scope(scope))
