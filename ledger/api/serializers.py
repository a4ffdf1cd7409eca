"""Serializers of the money endpoints. Input serializers validate; views call ledger.services."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Account
from core.api.fields import (
    IdField,
    MetadataField,
    MoneyField,
    StrictCharField,
    moment_repr,
    money_repr,
    text_field,
)
from core.api.serializers import SharedFieldsSerializer
from ledger.models import Entry, Hold, Transaction

# --------------------------------------------------------------------------- output


class TransactionEntrySerializer(serializers.ModelSerializer):
    account = serializers.IntegerField(
        source="account_id",
        allow_null=True,
        help_text="The balance-bearing account (the payer); null on a transfer's side outside "
        "your scope.",
    )

    class Meta:
        model = Entry
        fields = ["id", "account", "subaccount", "amount", "balance_after"]
        read_only_fields = fields


class TransactionSerializer(serializers.ModelSerializer):
    reversed_by = serializers.SerializerMethodField()
    entries = TransactionEntrySerializer(many=True, read_only=True)

    class Meta:
        model = Transaction
        fields = [
            "id",
            "kind",
            "amount",
            "currency",
            "account",
            "counter_account",
            "brand",
            "service",
            "channel",
            "subject_type",
            "subject_id",
            "external_id",
            "metadata",
            "memo",
            "hold",
            "created_at",
            "reversal_of",
            "reversed_by",
            "entries",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_reversed_by(self, txn: Transaction) -> int | None:
        return getattr(txn, "reversed_by_id", None)

    def to_representation(self, txn: Transaction) -> dict[str, Any]:
        """The same dict DRF's field machinery builds, written out by hand.

        Building a ModelSerializer's fields costs more than everything else in a
        money POST; the declared fields above still describe the schema, and
        tests compare this with ``ModelSerializer.to_representation``.
        """
        return {
            "id": txn.pk,
            "kind": txn.kind,
            "amount": money_repr(txn.amount),
            "currency": txn.currency,
            "account": txn.account_id,
            "counter_account": txn.counter_account_id,
            "brand": txn.brand_id,
            "service": txn.service_id,
            "channel": txn.channel,
            "subject_type": txn.subject_type,
            "subject_id": txn.subject_id,
            "external_id": txn.external_id,
            "metadata": txn.metadata,
            "memo": txn.memo,
            "hold": txn.hold_id,
            "created_at": moment_repr(txn.created_at),
            "reversal_of": txn.reversal_of_id,
            "reversed_by": getattr(txn, "reversed_by_id", None),
            "entries": [
                {
                    "id": entry.pk,
                    "account": entry.account_id,
                    "subaccount": entry.subaccount_id,
                    "amount": money_repr(entry.amount),
                    "balance_after": None
                    if entry.balance_after is None
                    else money_repr(entry.balance_after),
                }
                for entry in txn.entries.all()
            ],
        }


def redact_transfer_sides(data: dict[str, Any], hidden: frozenset[int] | None) -> dict[str, Any]:
    """A transfer as seen from one side: the entries of the ``hidden`` accounts (named by
    ``subaccount`` or ``account``) show no payer and no ``balance_after``."""
    if not hidden:
        return data
    entries = [
        {**entry, "account": None, "balance_after": None}
        if (entry["subaccount"] or entry["account"]) in hidden
        else entry
        for entry in data["entries"]
    ]
    return {**data, "entries": entries}


class HoldSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = Hold
        fields = [
            "id",
            "account",
            "amount",
            "captured_amount",
            "currency",
            "status",
            "brand",
            "service",
            "subject_type",
            "subject_id",
            "metadata",
            "memo",
            "expires_at",
            "created_at",
            "closed_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=Hold.Status.choices))
    def get_status(self, hold: Hold) -> str:
        """An active hold past its expiry is reported as expired (released by the next sweep)."""
        if hold.status == Hold.Status.ACTIVE and hold.expires_at <= timezone.now():
            return Hold.Status.EXPIRED
        return hold.status


# --------------------------------------------------------------------------- input


class PaymentCreateSerializer(SharedFieldsSerializer):
    account = IdField()
    amount = MoneyField()
    channel = serializers.ChoiceField(choices=Account.Channel.choices)
    external_id = text_field(100, help_text="The payer's or agent's own payment id.")
    memo = text_field(500)


class ChargeCreateSerializer(SharedFieldsSerializer):
    account = IdField()
    amount = MoneyField()
    brand = IdField(help_text="The brand that earns the revenue (one of the caller's).")
    service = IdField(required=False, allow_null=True)
    subject_type = text_field(50, help_text='What was bought, e.g. "order".')
    subject_id = text_field(100, help_text='Its id in your system, e.g. "81723".')
    metadata = MetadataField(required=False, default=dict)
    memo = text_field(500)


class TransferCreateSerializer(SharedFieldsSerializer):
    from_account = IdField()
    to_account = IdField()
    amount = MoneyField()
    memo = text_field(500)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["from_account"] == attrs["to_account"]:
            raise serializers.ValidationError({"to_account": ["Choose a different account."]})
        return attrs


class RefundCreateSerializer(SharedFieldsSerializer):
    account = IdField()
    amount = MoneyField()
    channel = serializers.ChoiceField(choices=Account.Channel.choices)
    memo = text_field(500)


class HoldCreateSerializer(ChargeCreateSerializer):
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Default: the operator's hold lifetime."
    )

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("A hold must expire in the future.")
        return value


class HoldCaptureSerializer(SharedFieldsSerializer):
    amount = MoneyField(required=False, help_text="Capture part of the hold; default: all.")


class ReverseSerializer(SharedFieldsSerializer):
    reason = StrictCharField(max_length=500)


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
