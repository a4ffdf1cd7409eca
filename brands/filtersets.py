"""FilterSets for brands and services, shared by the API, the staff UI and reports."""

import django_filters

from brands.models import Brand, Service


class BrandFilterSet(django_filters.FilterSet):
    code = django_filters.CharFilter()

    class Meta:
        model = Brand
        fields = ["code"]


class ServiceFilterSet(django_filters.FilterSet):
    brand = django_filters.NumberFilter(field_name="brand_id", min_value=1, max_value=2**63 - 1)
    code = django_filters.CharFilter()

    class Meta:
        model = Service
        fields = ["brand", "code"]
