"""Input serializers whose fields are built once per class (core.api.serializers)."""

import threading
from decimal import Decimal

from rest_framework import serializers

from core.api.fields import IdField, MetadataField, MoneyField, text_field
from core.api.serializers import SharedFieldsSerializer
from ledger.api.serializers import ChargeCreateSerializer, HoldCreateSerializer


class _Plain(serializers.Serializer):
    account = IdField()
    amount = MoneyField()
    service = IdField(required=False, allow_null=True)
    memo = text_field(20)
    metadata = MetadataField(required=False, default=dict)

    def validate_memo(self, value):
        if value == "no":
            raise serializers.ValidationError("Not this memo.")
        return value


class _Shared(SharedFieldsSerializer, _Plain):
    pass


BODIES = [
    {"account": 1, "amount": "10.00"},
    {"account": 1, "amount": "10.00", "memo": "hello", "metadata": {"a": [1, 2]}},
    {"account": "1", "amount": 10.5, "memo": 5},
    {"account": 0, "amount": "-1", "service": None, "memo": "x" * 21},
    {"amount": "1.001", "metadata": []},
    {"account": 2**70, "amount": "1e3", "memo": "no"},
    {"account": 3, "amount": "0.01", "memo": "a\x00b"},
    {},
]


def _outcome(serializer_class, body):
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return True, dict(serializer.validated_data)
    return False, serializer.errors


def test_same_results_and_errors_as_a_plain_serializer():
    for body in BODIES:
        assert _outcome(_Shared, body) == _outcome(_Plain, body), body
    assert _outcome(_Shared, BODIES[1])[1]["amount"] == Decimal("10.00")


def test_fields_are_built_once_per_class_and_defaults_are_fresh():
    first, second = _Shared(data=BODIES[0]), _Shared(data=BODIES[0])
    assert first.fields is second.fields
    assert first.is_valid() and second.is_valid()
    first.validated_data["metadata"]["x"] = 1
    assert second.validated_data["metadata"] == {}
    # A subclass has its own fields (HoldCreateSerializer adds expires_at).
    assert ChargeCreateSerializer().fields is not HoldCreateSerializer().fields
    assert "expires_at" in HoldCreateSerializer().fields
    assert "expires_at" not in ChargeCreateSerializer().fields


def test_partial_context_or_instance_get_fields_of_their_own():
    shared = _Shared(data={}).fields
    partial = _Shared(data={}, partial=True)
    assert partial.fields is not shared
    assert partial.is_valid(), partial.errors  # nothing required when partial
    assert _Shared(data={}, context={"request": None}).fields is not shared
    assert _Shared(instance={"account": 1}).fields is not shared
    assert not _Shared(data={}).is_valid()


def test_threads_validating_at_once_do_not_mix_their_data():
    failures = []

    def work(n):
        for i in range(200):
            amount = f"{n}.{i % 100:02d}"
            serializer = _Shared(data={"account": n, "amount": amount, "memo": str(i)})
            valid = serializer.is_valid()
            data = serializer.validated_data if valid else {}
            if not valid or (data["account"], data["amount"]) != (n, Decimal(amount)):
                failures.append((n, i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
