"""Query parameters of the report endpoints and the JSON shapes they answer."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from rest_framework import serializers

from reports.exports import FORMATS
from reports.standard.aging import BUCKETS
from reports.standard.turnover import GROUPS


class _Query(serializers.Serializer):
    """Report parameters; ``format`` picks JSON (default), CSV or XLSX."""

    def get_fields(self):
        fields = self.query_fields()
        fields["format"] = serializers.ChoiceField(
            choices=["json", *FORMATS], required=False, default="json"
        )
        return fields

    def query_fields(self) -> dict:
        return {}


class _Period(_Query):
    def validate(self, attrs):
        if attrs["to"] < attrs["from"]:
            raise serializers.ValidationError({"to": ["The period ends before it starts."]})
        return attrs


class StatementQuery(_Period):
    def query_fields(self) -> dict:
        return {
            "account": serializers.IntegerField(min_value=1, max_value=2**63 - 1),
            "from": serializers.DateField(),
            "to": serializers.DateField(),
        }


class TurnoverQuery(_Period):
    def query_fields(self) -> dict:
        return {
            "from": serializers.DateField(),
            "to": serializers.DateField(),
            "group_by": serializers.ChoiceField(choices=GROUPS, required=False, default="account"),
            "brand": serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False),
            "currency": serializers.RegexField(r"^[A-Z]{3}$", required=False),
        }


class DebtAgingQuery(_Query):
    def query_fields(self) -> dict:
        return {
            "at": serializers.DateField(required=False, default=timezone.localdate),
            "currency": serializers.RegexField(r"^[A-Z]{3}$", required=False),
        }


MONEY = {"max_digits": 18, "decimal_places": 2}
CENT = Decimal("0.01")


class StatementEntrySerializer(serializers.Serializer):
    created_at = serializers.DateTimeField()
    kind = serializers.CharField()
    amount = serializers.DecimalField(**MONEY)
    balance_after = serializers.DecimalField(**MONEY, allow_null=True)
    memo = serializers.CharField()

    def to_representation(self, instance):
        # A month of a busy account is thousands of rows: rendered here as DRF's fields do
        # (ISO 8601 in the current time zone, "Z" for UTC; amounts with two decimals, as
        # strings), without its per-field dispatch, which cost ~60 us a row: the time
        # zone is looked up once per response, not once per value.
        tz = self._zone()
        created = instance["created_at"].astimezone(tz).isoformat()
        if created.endswith("+00:00"):
            created = created[:-6] + "Z"
        balance = instance["balance_after"]
        return {
            "created_at": created,
            "kind": instance["kind"],
            "amount": money(instance["amount"]),
            "balance_after": None if balance is None else money(balance),
            "memo": instance["memo"],
        }

    def _zone(self):
        zone = getattr(self, "_current_zone", None)
        if zone is None:
            zone = self._current_zone = timezone.get_current_timezone()
        return zone


def money(value: Decimal) -> str:
    """An amount as the API writes it (DRF's ``DecimalField(18, 2)``): "-1250.50"."""
    return f"{value.quantize(CENT):f}"


class StatementSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    number = serializers.CharField()
    currency = serializers.CharField()
    opening = serializers.DecimalField(**MONEY)
    credit = serializers.DecimalField(**MONEY)
    debit = serializers.DecimalField(**MONEY)
    closing = serializers.DecimalField(**MONEY)
    entries = StatementEntrySerializer(many=True)


class TurnoverRowSerializer(serializers.Serializer):
    id = serializers.IntegerField(
        allow_null=True, help_text="The account, brand or service id (null: none)."
    )
    key = serializers.CharField(help_text="Account number, brand code or brand/service code.")
    currency = serializers.CharField()
    opening = serializers.DecimalField(**MONEY)
    credit = serializers.DecimalField(**MONEY)
    debit = serializers.DecimalField(**MONEY)
    closing = serializers.DecimalField(**MONEY)


class TurnoverTotalsSerializer(serializers.Serializer):
    currency = serializers.CharField(allow_null=True)
    opening = serializers.DecimalField(**MONEY)
    credit = serializers.DecimalField(**MONEY)
    debit = serializers.DecimalField(**MONEY)
    closing = serializers.DecimalField(**MONEY)


class TurnoverSerializer(serializers.Serializer):
    rows = TurnoverRowSerializer(many=True)
    totals = TurnoverTotalsSerializer()


class DebtAgingRowSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    number = serializers.CharField(help_text="The account number.")
    currency = serializers.CharField()
    debt = serializers.DecimalField(**MONEY)
    bucket = serializers.ChoiceField(choices=BUCKETS)
    oldest_unpaid_on = serializers.DateField(allow_null=True)
    age_days = serializers.IntegerField()


class DebtAgingSerializer(serializers.Serializer):
    at = serializers.DateField()
    rows = DebtAgingRowSerializer(many=True)
    totals = serializers.DictField()


class ProjectionLagSerializer(serializers.Serializer):
    built = serializers.BooleanField()
    pending_transactions = serializers.IntegerField()
    oldest_pending_at = serializers.DateTimeField(allow_null=True)
    lag_seconds = serializers.FloatField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    last_projected_at = serializers.DateTimeField(allow_null=True)
    projected_entries = serializers.IntegerField()


class PeriodQuery(_Period):
    def query_fields(self) -> dict:
        return {"from": serializers.DateField(), "to": serializers.DateField()}


class RevenueQuery(PeriodQuery):
    def query_fields(self) -> dict:
        return {
            **super().query_fields(),
            "brand": serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False),
        }


class SettlementsQuery(PeriodQuery):
    def query_fields(self) -> dict:
        return {
            **super().query_fields(),
            "commission": serializers.DecimalField(
                max_digits=5,
                decimal_places=2,
                min_value=0,
                max_value=100,
                required=False,
                help_text="The operator's commission, percent of what was collected.",
            ),
        }


class TableReportSerializer(serializers.Serializer):
    """A report as a table: its columns, rows (values as JSON: amounts are strings),
    totals and a chart series."""

    title = serializers.CharField()
    columns = serializers.ListField(child=serializers.DictField())
    rows = serializers.ListField(child=serializers.DictField())
    totals = serializers.DictField()
    chart = serializers.DictField(allow_null=True)
