"""The FilterSet of maker-checker requests, shared by the API and the staff UI."""

import django_filters

from approvals import registry
from approvals.models import ApprovalRequest
from core.filters import IdFilter


def _kind_choices() -> list[tuple[str, str]]:
    return [(kind.name, kind.label) for kind in registry.kinds()]


class ApprovalRequestFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ApprovalRequest.Status.choices)
    kind = django_filters.ChoiceFilter(choices=_kind_choices)
    target_type = django_filters.CharFilter(
        field_name="target_type__model", label="What the request is about: account, brand"
    )
    target = IdFilter(field_name="target_id", label="The id of the object it is about")
    maker = django_filters.CharFilter(field_name="maker_ref", label="user:<id> or partner:<id>")

    class Meta:
        model = ApprovalRequest
        fields = ["status", "kind", "target_type", "target", "maker"]
