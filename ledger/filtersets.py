"""FilterSets for transactions, holds and entries, shared by the API, the staff UI and reports."""

import django_filters
from django.db.models import Q, QuerySet

from core.filters import AmountFilter, IdFilter
from ledger.models import Entry, Hold, Transaction, TransactionKind


class TransactionFilterSet(django_filters.FilterSet):
    account = IdFilter(method="filter_account", label="Account id (either side of a transfer)")
    kind = django_filters.ChoiceFilter(choices=TransactionKind.choices)
    brand = IdFilter(field_name="brand_id")
    service = IdFilter(field_name="service_id")
    subject_type = django_filters.CharFilter()
    subject_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    amount_min = AmountFilter(field_name="amount", lookup_expr="gte")
    amount_max = AmountFilter(field_name="amount", lookup_expr="lte")

    class Meta:
        model = Transaction
        fields = [
            "account",
            "kind",
            "brand",
            "service",
            "subject_type",
            "subject_id",
            "created_after",
            "created_before",
            "amount_min",
            "amount_max",
        ]

    def filter_account(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        return queryset.filter(Q(account_id=value) | Q(counter_account_id=value))


class HoldFilterSet(django_filters.FilterSet):
    account = IdFilter(field_name="account_id")
    status = django_filters.ChoiceFilter(choices=Hold.Status.choices)
    brand = IdFilter(field_name="brand_id")
    subject_type = django_filters.CharFilter()
    subject_id = django_filters.CharFilter()

    class Meta:
        model = Hold
        fields = ["account", "status", "brand", "subject_type", "subject_id"]


class EntryFilterSet(django_filters.FilterSet):
    """An account's history between two moments (``?from=&to=``, inclusive)."""

    to = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lte", label="Entries made at or before"
    )

    class Meta:
        model = Entry
        fields: list[str] = []


EntryFilterSet.base_filters["from"] = django_filters.IsoDateTimeFilter(
    field_name="created_at", lookup_expr="gte", label="Entries made at or after"
)
