"""Reads of brands and their service catalogue within a caller's scope."""

from __future__ import annotations

from django.db.models import QuerySet

from brands.models import Brand, Service
from core.api.scope import Scope


def brands_in_scope(scope: Scope, qs: QuerySet[Brand] | None = None) -> QuerySet[Brand]:
    qs = Brand.objects.all() if qs is None else qs
    return qs if scope.brand_ids is None else qs.filter(pk__in=scope.brand_ids)


def services_in_scope(scope: Scope, qs: QuerySet[Service] | None = None) -> QuerySet[Service]:
    qs = Service.objects.all() if qs is None else qs
    return qs if scope.brand_ids is None else qs.filter(brand_id__in=scope.brand_ids)
