"""FilterSets for clients and accounts, shared by the API, the staff UI and reports."""

import django_filters
from django.db.models import Q, QuerySet

from accounts.models import Account, Client
from core.filters import IdFilter


class ClientFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Client.Kind.choices)
    tax_id = django_filters.CharFilter()
    external_ref = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=Client.Status.choices)
    q = django_filters.CharFilter(method="search", label="Search by name, phone or e-mail")

    class Meta:
        model = Client
        fields = ["kind", "tax_id", "external_ref", "status"]

    def search(self, queryset: QuerySet[Client], name: str, value: str) -> QuerySet[Client]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(name__icontains=value) | Q(phone__icontains=value) | Q(email__iexact=value)
        )


class AccountFilterSet(django_filters.FilterSet):
    client = IdFilter(field_name="client_id")
    number = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=Account.Status.choices)
    parent = IdFilter(field_name="parent_id")
    currency = django_filters.CharFilter()
    brand = IdFilter(method="filter_brand", label="Brand id")
    brand_code = django_filters.CharFilter(method="filter_brand_code")

    class Meta:
        model = Account
        fields = ["client", "number", "status", "parent", "currency", "brand", "brand_code"]

    def filter_brand(self, queryset: QuerySet[Account], name: str, value: int) -> QuerySet:
        ids = Account.brands.through.objects.filter(brand_id=value).values("account_id")
        return queryset.filter(pk__in=ids)

    def filter_brand_code(self, queryset: QuerySet[Account], name: str, value: str) -> QuerySet:
        ids = Account.brands.through.objects.filter(brand__code=value).values("account_id")
        return queryset.filter(pk__in=ids)
