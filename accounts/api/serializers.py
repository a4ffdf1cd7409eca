"""Serializers of clients and accounts. They validate; the views call accounts.services."""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Account, Client
from billing_site.api.fields import (
    IdField,
    LimitField,
    NonNegativeMoneyField,
    StrictCharField,
    StrictEmailField,
    moment_repr,
    money_repr,
    text_field,
)


class ClientSerializer(serializers.ModelSerializer):
    """A client as partners see it; ``kind`` and ``name`` are required to create one."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.EmailField: StrictEmailField,
    }

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


class BalanceQuerySerializer(serializers.Serializer):
    at = serializers.DateTimeField(required=False, help_text="A past moment (ISO 8601).")


class BalanceSerializer(serializers.Serializer):
    account = serializers.IntegerField(source="account.pk")
    payer = serializers.IntegerField(source="payer.pk")
    balance = serializers.DecimalField(max_digits=18, decimal_places=2)
    held = serializers.DecimalField(max_digits=18, decimal_places=2)
    available = serializers.DecimalField(max_digits=18, decimal_places=2)
    credit_limit = serializers.DecimalField(max_digits=18, decimal_places=2)
    credit_available = serializers.DecimalField(max_digits=18, decimal_places=2)
    currency = serializers.CharField()
    as_of = serializers.DateTimeField()
    write_off_remaining = serializers.DecimalField(
        max_digits=18,
        decimal_places=2,
        allow_null=True,
        help_text="What the write-off limits of the account and its payers still allow now.",
    )

    def to_representation(self, view: Any) -> dict[str, Any]:
        """DRF's output for these fields, written out (read on every balance request)."""
        remaining = view.write_off_remaining
        return {
            "account": view.account.pk,
            "payer": view.payer.pk,
            "balance": money_repr(view.balance),
            "held": money_repr(view.held),
            "available": money_repr(view.available),
            "credit_limit": money_repr(view.credit_limit),
            "credit_available": money_repr(view.credit_available),
            "currency": view.currency,
            "as_of": moment_repr(view.as_of),
            "write_off_remaining": None if remaining is None else money_repr(remaining),
        }


class EntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    transaction = serializers.IntegerField(source="transaction_id")
    kind = serializers.CharField(source="transaction.kind")
    amount = serializers.DecimalField(max_digits=18, decimal_places=2)
    balance_after = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    created_at = serializers.DateTimeField()
    memo = serializers.CharField(source="transaction.memo")


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
