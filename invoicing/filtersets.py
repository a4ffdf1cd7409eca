"""FilterSets of invoicing, shared by the API, the staff UI and reports."""

import django_filters

from invoicing.models import Invoice, InvoiceRun, Subscription, Tariff

ID = {"min_value": 1, "max_value": 2**63 - 1}


class TariffFilterSet(django_filters.FilterSet):
    service = django_filters.NumberFilter(field_name="service_id", **ID)
    plan = django_filters.CharFilter()
    kind = django_filters.ChoiceFilter(choices=Tariff.Kind.choices)
    valid_on = django_filters.DateFilter(method="filter_valid_on", label="In force on this day")

    class Meta:
        model = Tariff
        fields = ["service", "plan", "kind"]

    def filter_valid_on(self, queryset, name, value):
        return queryset.filter(valid_from__lte=value).exclude(valid_to__lt=value)


class SubscriptionFilterSet(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id", **ID)
    service = django_filters.NumberFilter(field_name="service_id", **ID)
    tariff = django_filters.NumberFilter(field_name="tariff_id", **ID)

    class Meta:
        model = Subscription
        fields = ["account", "service", "tariff"]


class InvoiceRunFilterSet(django_filters.FilterSet):
    period = django_filters.CharFilter(field_name="period__code")
    brand = django_filters.NumberFilter(field_name="brand_id", **ID)
    status = django_filters.ChoiceFilter(choices=InvoiceRun.Status.choices)

    class Meta:
        model = InvoiceRun
        fields = ["period", "brand", "status"]


class InvoiceFilterSet(django_filters.FilterSet):
    account = django_filters.NumberFilter(field_name="account_id", **ID)
    brand = django_filters.NumberFilter(field_name="brand_id", **ID)
    period = django_filters.CharFilter(field_name="period__code", label="YYYY-MM")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    number = django_filters.CharFilter()
    adjusts = django_filters.NumberFilter(field_name="adjusts_id", **ID)

    class Meta:
        model = Invoice
        fields = ["account", "brand", "period", "status", "kind", "number", "adjusts"]
