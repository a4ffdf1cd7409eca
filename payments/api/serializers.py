"""Serializers of the payment-intake endpoints. Input serializers validate; views call
``payments.services``."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from core.api.fields import IdField, StrictCharField
from payments.models import PaymentAgent, Registry, RegistryFormat, SuspenseItem


class PaymentAgentSerializer(serializers.ModelSerializer):
    commission_rate = serializers.DecimalField(
        max_digits=5, decimal_places=2, help_text='Percent of each payment, e.g. "1.50".'
    )

    class Meta:
        model = PaymentAgent
        fields = ["id", "code", "name", "format", "commission_rate", "layout", "currency", "active"]
        read_only_fields = fields


class PaymentAgentCreateSerializer(serializers.Serializer):
    code = StrictCharField(max_length=20)
    name = StrictCharField(max_length=200)
    format = serializers.ChoiceField(choices=RegistryFormat.choices)
    commission_rate = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, default="0.00"
    )
    layout = IdField(required=False, allow_null=True, default=None)
    currency = serializers.RegexField(r"^[A-Z]{3}$", default="RUB")

    def to_internal_value(self, data: Any) -> Any:
        rate = data.get("commission_rate") if isinstance(data, dict) else None
        if rate is not None and not isinstance(rate, str):
            raise serializers.ValidationError(
                {"commission_rate": ['A percentage as a decimal string, e.g. "1.50".']}
            )
        return super().to_internal_value(data)


class RegistrySerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.code", help_text="The agent's code.")

    class Meta:
        model = Registry
        fields = [
            "id",
            "agent",
            "file_name",
            "status",
            "rows",
            "posted",
            "posted_amount",
            "suspense",
            "suspense_amount",
            "duplicates",
            "duplicates_amount",
            "commission",
            "control_count",
            "control_total",
            "total_amount",
            "errors",
            "created_at",
            "applied_at",
        ]
        read_only_fields = fields


class RegistryUploadSerializer(serializers.Serializer):
    agent = StrictCharField(max_length=20, help_text="The agent's code.")
    file = serializers.FileField(allow_empty_file=True)
    dry_run = serializers.BooleanField(
        default=False, help_text="true: preview only (status previewed), nothing posted."
    )


class SuspenseItemSerializer(serializers.ModelSerializer):
    age_days = serializers.SerializerMethodField()

    class Meta:
        model = SuspenseItem
        fields = [
            "id",
            "registry",
            "row",
            "account_number",
            "payer",
            "amount",
            "currency",
            "received_at",
            "age_days",
            "status",
            "reason",
            "reason_detail",
            "raw",
            "assigned_account",
            "return_reason",
            "receipt_transaction",
            "resolution_transaction",
            "resolved_at",
        ]
        read_only_fields = fields

    def get_age_days(self, obj: SuspenseItem) -> int:
        """Whole days since the money was received."""
        return (timezone.now() - obj.received_at).days


class SuspenseAssignSerializer(serializers.Serializer):
    account = IdField(help_text="The client account that receives the money.")


class SuspenseReturnSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500, help_text="Why the money goes back.")


class SuspenseTotalsSerializer(serializers.Serializer):
    open_count = serializers.IntegerField()
    open_amount = serializers.DecimalField(max_digits=18, decimal_places=2)
    oldest_received_at = serializers.DateTimeField(allow_null=True)
    oldest_age_days = serializers.IntegerField(allow_null=True)
    by_reason = serializers.DictField(help_text='{"unknown_account": {"count", "amount"}}')
    by_currency = serializers.DictField(help_text='{"RUB": "120.00"}')


def _amount(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=18, decimal_places=2, **kwargs)


class CountAmountSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    amount = _amount()


class SuspenseFiguresSerializer(CountAmountSerializer):
    open = serializers.IntegerField(help_text="Still waiting in the queue.")
    assigned = serializers.IntegerField()
    returned = serializers.IntegerField()


class FileFiguresSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="The control line's count.")
    total = _amount(help_text="The control line's total.")
    commission = _amount(help_text="The file's commission (its own, or at the agent's rate).")
    lines = serializers.IntegerField(required=False, help_text="Payment lines in the file.")
    lines_total = _amount(required=False, help_text="What the payment lines add up to.")


class RegistryReconciliationSerializer(serializers.Serializer):
    registry = serializers.IntegerField()
    agent = serializers.CharField()
    file_name = serializers.CharField()
    status = serializers.CharField()
    applied_at = serializers.DateTimeField(allow_null=True)
    file = FileFiguresSerializer()
    posted = CountAmountSerializer(help_text="Payments the ledger holds for the file's lines.")
    suspense = SuspenseFiguresSerializer()
    duplicates = CountAmountSerializer()
    commission = _amount()
    differences = serializers.ListField(
        child=serializers.DictField(),
        help_text="Each with a `code`: not_applied, control_count_mismatch, "
        "control_total_mismatch, unaccounted, duplicate_differs, ledger_amount_differs, reversed.",
    )
    balanced = serializers.BooleanField(help_text="True when there is no difference.")


class ReconciliationQuerySerializer(serializers.Serializer):
    agent = StrictCharField(max_length=20, required=False, help_text="The agent's code.")
    date = serializers.DateField(
        required=False, help_text="The business day the registries were applied (default today)."
    )


class AgentDayRegistrySerializer(serializers.Serializer):
    registry = serializers.IntegerField()
    file_name = serializers.CharField()
    balanced = serializers.BooleanField()


class AgentDayReconciliationSerializer(serializers.Serializer):
    agent = serializers.CharField()
    date = serializers.DateField()
    registries = AgentDayRegistrySerializer(many=True)
    file = FileFiguresSerializer()
    posted = CountAmountSerializer()
    suspense = CountAmountSerializer()
    duplicates = CountAmountSerializer()
    commission = _amount()
    payable_by_agent = _amount(help_text="Posted + suspense - commission: what the agent owes.")
    claimed = CountAmountSerializer(help_text="Payment ids the day's registries claimed.")
    differences = serializers.ListField(child=serializers.DictField())
    balanced = serializers.BooleanField()


class AgentDaysSerializer(serializers.Serializer):
    date = serializers.DateField()
    results = AgentDayReconciliationSerializer(many=True)
