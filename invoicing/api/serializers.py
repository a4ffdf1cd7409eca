"""Serializers of the billing API. They validate shapes; the views call invoicing.services."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import IdField, StrictCharField
from core.api.parsers import is_json_float
from core.api.serializers import StrictModelSerializer
from invoicing.models import Invoice, InvoiceLine, InvoiceRun, Subscription, Tariff

QUANTITY_PATTERN = r"^\d{1,14}(?:\.\d{1,6})?$"
PERIOD_PATTERN = r"^(?:19|20|21)\d{2}-(?:0[1-9]|1[0-2])$"


def decimal_out(value: Decimal | None, min_places: int = 0) -> str | None:
    """A decimal as a string without trailing zeros beyond ``min_places``: "4.00", "1.235"."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    places = len(text.split(".")[1]) if "." in text else 0
    return f"{value:.{max(places, min_places)}f}"


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "pattern": QUANTITY_PATTERN,
        "example": "4.50",
        "description": "A decimal string with up to 6 decimal places (never a JSON number).",
    }
)
class DecimalStringField(serializers.Field):
    """A non-negative price or quantity as a decimal string, at most 6 decimal places."""

    default_error_messages = {
        "not_string": 'Use a decimal string such as "4.50", not a JSON number.',
        "invalid": "Enter a non-negative decimal with at most 6 decimal places.",
    }

    def __init__(self, *, min_places: int = 2, **kwargs: Any) -> None:
        self.min_places = min_places
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if is_json_float(data) or isinstance(data, bool):
            self.fail("not_string")
        if isinstance(data, int):
            data = str(data)
        if not isinstance(data, str) or len(data) > 30:
            self.fail("invalid")
        try:
            value = Decimal(data)
        except InvalidOperation:
            self.fail("invalid")
        # In range before quantizing: a 26-digit value would not fit the context's precision.
        if not value.is_finite() or value < 0 or value >= Decimal(10) ** 14:
            self.fail("invalid")
        if value != value.quantize(Decimal("0.000001")):
            self.fail("invalid")
        return value

    def to_representation(self, value: Any) -> str | None:
        return decimal_out(value, self.min_places)


class TierSerializer(serializers.Serializer):
    up_to = DecimalStringField(min_places=0, allow_null=True, help_text="null: open-ended.")
    price = DecimalStringField()


class TariffSerializer(StrictModelSerializer):
    service = IdField(source="service_id")
    price = DecimalStringField(required=False, allow_null=True)
    minimum_charge = DecimalStringField(required=False, allow_null=True)
    tiers = serializers.SerializerMethodField()
    plan = StrictCharField(max_length=64, required=False, default="standard")
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)

    class Meta:
        model = Tariff
        fields = [
            "id",
            "service",
            "plan",
            "kind",
            "price",
            "tiers",
            "minimum_charge",
            "currency",
            "valid_from",
            "valid_to",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    @extend_schema_field(TierSerializer(many=True))
    def get_tiers(self, tariff: Tariff) -> list[dict[str, Any]]:
        return [
            {"up_to": decimal_out(t.up_to), "price": decimal_out(t.price, 2)}
            for t in tariff.tiers.all()
        ]


class TariffCreateSerializer(TariffSerializer):
    tiers = TierSerializer(many=True, required=False)

    class Meta(TariffSerializer.Meta):
        pass


class SubscriptionSerializer(StrictModelSerializer):
    account = IdField()
    service = IdField(required=False, help_text="Defaults to the tariff's service.")
    tariff = IdField()

    class Meta:
        model = Subscription
        fields = ["id", "account", "service", "tariff", "starts_on", "ends_on", "created_at"]
        read_only_fields = ["id", "created_at"]

    def to_representation(self, instance: Subscription) -> dict[str, Any]:
        return {
            "id": instance.pk,
            "account": instance.account_id,
            "service": instance.service_id,
            "tariff": instance.tariff_id,
            "starts_on": instance.starts_on.isoformat(),
            "ends_on": instance.ends_on.isoformat() if instance.ends_on else None,
            "created_at": serializers.DateTimeField().to_representation(instance.created_at),
        }


class SubscriptionEndSerializer(serializers.Serializer):
    ends_on = serializers.DateField(help_text="Last day of the subscription (inclusive).")


@extend_schema_field({"type": "object", "additionalProperties": True})
class RecordField(serializers.Field):
    """One record, passed through as parsed: the ingest reports a bad one by its index."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class _BatchSerializer(serializers.Serializer):
    def validate_list(self, value: Any) -> list[Any]:
        if len(value) > 10_000:
            raise serializers.ValidationError("At most 10000 records per request.")
        return value


class UsageBatchSerializer(_BatchSerializer):
    records = serializers.ListField(
        child=RecordField(),
        allow_empty=True,
        help_text=(
            "Up to 10,000 records `{account, service, quantity, occurred_at, external_id}`; "
            "`quantity` is a decimal string."
        ),
    )

    def validate_records(self, value: Any) -> list[Any]:
        return self.validate_list(value)


class MeterReadingBatchSerializer(_BatchSerializer):
    readings = serializers.ListField(
        child=RecordField(),
        allow_empty=True,
        help_text=(
            "Up to 10,000 cumulative readings `{account, service, reading, taken_at, "
            "external_id, meter?}` (`meter`: the serial, when the account has several)."
        ),
    )

    def validate_readings(self, value: Any) -> list[Any]:
        return self.validate_list(value)


class RecordErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    errors = RecordErrorSerializer(many=True)


class InvoiceRunSerializer(serializers.ModelSerializer):
    period = serializers.CharField(source="period.code")

    class Meta:
        model = InvoiceRun
        fields = [
            "id",
            "period",
            "brand",
            "mode",
            "status",
            "total",
            "processed",
            "failed",
            "invoices_issued",
            "adjustments_issued",
            "created_at",
            "started_at",
            "approved_at",
            "finished_at",
        ]
        read_only_fields = fields


class InvoiceRunStartSerializer(serializers.Serializer):
    period = serializers.RegexField(PERIOD_PATTERN, help_text="YYYY-MM (1900-2199)")
    brand = IdField(required=False, allow_null=True)
    mode = serializers.ChoiceField(choices=InvoiceRun.Mode.choices, default="issue")


class InvoiceLineSerializer(serializers.ModelSerializer):
    quantity = DecimalStringField(min_places=0)
    unit_price = DecimalStringField(allow_null=True)

    class Meta:
        model = InvoiceLine
        fields = [
            "service",
            "description",
            "starts_on",
            "ends_on",
            "quantity",
            "unit_price",
            "amount",
            "vat_rate",
            "vat",
            "estimated",
        ]
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer):
    period = serializers.CharField(source="period.code")
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "account",
            "brand",
            "period",
            "kind",
            "adjusts",
            "lines",
            "currency",
            "subtotal",
            "vat",
            "total",
            "balance_brought_forward",
            "due_date",
            "issued_at",
            "status",
            "paid_amount",
        ]
        read_only_fields = fields


class RecalculateSerializer(serializers.Serializer):
    account = IdField()
    period = serializers.RegexField(PERIOD_PATTERN, help_text="YYYY-MM (1900-2199)")


class RecalculateResultSerializer(serializers.Serializer):
    adjustment = InvoiceSerializer(allow_null=True)
    adjustments = InvoiceSerializer(many=True, help_text="One per brand whose bill changed.")
