"""Serializers of clients and accounts. They validate; the views call accounts.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Account, Client
from core.api.fields import (
    IdField,
    LimitField,
    NonNegativeMoneyField,
    StrictCharField,
    text_field,
)
from core.api.serializers import StrictModelSerializer


class ClientSerializer(StrictModelSerializer):
    """A client as partners see it; ``kind`` and ``name`` are required to create one."""

    class Meta:
        model = Client
        fields = [
            "id",
            "kind",
            "name",
            "legal_name",
            "tax_id",
            "email",
            "phone",
            "external_ref",
            "status",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "legal_name": {"required": False},
            "tax_id": {"required": False},
            "email": {"required": False},
            "phone": {"required": False},
            "external_ref": {"required": False},
            "status": {"required": False},
        }


class AccountSerializer(serializers.ModelSerializer):
    """An account with its limits (null = no limit); ``brands`` lists brand codes."""

    brands = serializers.SerializerMethodField()
    credit_limit = NonNegativeMoneyField(read_only=True)
    write_off_limit_transaction = LimitField(read_only=True)
    write_off_limit_day = LimitField(read_only=True)
    write_off_limit_month = LimitField(read_only=True)

    class Meta:
        model = Account
        fields = [
            "id",
            "number",
            "client",
            "name",
            "currency",
            "status",
            "status_reason",
            "parent",
            "brands",
            "credit_limit",
            "credit_period_days",
            "credit_expires_at",
            "write_off_limit_transaction",
            "write_off_limit_day",
            "write_off_limit_month",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_brands(self, account: Account) -> list[str]:
        visible = self.context.get("brand_ids")
        return sorted(
            brand.code for brand in account.brands.all() if visible is None or brand.pk in visible
        )


class _LimitsMixin(serializers.Serializer):
    name = text_field(200)
    credit_limit = NonNegativeMoneyField(required=False)
    credit_period_days = serializers.IntegerField(
        min_value=0, max_value=36500, required=False, allow_null=True
    )
    credit_expires_at = serializers.DateField(required=False, allow_null=True)
    write_off_limit_transaction = LimitField(required=False)
    write_off_limit_day = LimitField(required=False)
    write_off_limit_month = LimitField(required=False)
    brands = serializers.ListField(
        child=StrictCharField(max_length=32),
        required=False,
        max_length=100,
        help_text="Brand codes the account is linked to.",
    )


class AccountCreateSerializer(_LimitsMixin):
    client = IdField()
    currency = serializers.RegexField(
        r"^[A-Z]{3}$", required=False, help_text="ISO 4217; default: the payer's or RUB."
    )
    parent = IdField(required=False, allow_null=True, help_text="Payer account id.")


class AccountUpdateSerializer(_LimitsMixin):
    name = StrictCharField(max_length=200, required=False, allow_blank=True)
    parent = IdField(required=False, allow_null=True, help_text="Payer account id, or null.")


class AccountBlockSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500)


class AccountUnblockSerializer(serializers.Serializer):
    reason = text_field(500)


def limits_of(data: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name",
        "credit_limit",
        "credit_period_days",
        "credit_expires_at",
        "write_off_limit_transaction",
        "write_off_limit_day",
        "write_off_limit_month",
    )
    return {k: data[k] for k in keys if k in data}
