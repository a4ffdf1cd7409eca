"""FilterSets of payment intake, shared by the API and the staff UI."""

import django_filters

from payments.models import (
    PaymentAgent,
    PaymentIntent,
    Registry,
    RegistryFormat,
    Settlement,
    SuspenseItem,
)


class PaymentAgentFilterSet(django_filters.FilterSet):
    code = django_filters.CharFilter()
    # Not ``format``: DRF reads ``?format=`` as the response format.
    registry_format = django_filters.ChoiceFilter(
        field_name="format", choices=RegistryFormat.choices, label="The registry format"
    )
    active = django_filters.BooleanFilter()

    class Meta:
        model = PaymentAgent
        fields = ["code", "registry_format", "active"]


class RegistryFilterSet(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__code", label="Agent code")
    status = django_filters.ChoiceFilter(choices=Registry.Status.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Registry
        fields = ["agent", "status", "created_after", "created_before"]


class SuspenseItemFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SuspenseItem.Status.choices)
    reason = django_filters.ChoiceFilter(choices=SuspenseItem.Reason.choices)
    registry = django_filters.NumberFilter(field_name="registry_id")
    account_number = django_filters.CharFilter()
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = SuspenseItem
        fields = ["status", "reason", "registry", "account_number"]


class PaymentIntentFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=PaymentIntent.Status.choices)
    account = django_filters.NumberFilter(field_name="account_id")

    class Meta:
        model = PaymentIntent
        fields = ["status", "account"]


class SettlementFilterSet(django_filters.FilterSet):
    period = django_filters.CharFilter(label="YYYY-MM")
    status = django_filters.ChoiceFilter(choices=Settlement.Status.choices)
    brand = django_filters.NumberFilter(field_name="brand_id")

    class Meta:
        model = Settlement
        fields = ["period", "status", "brand"]
