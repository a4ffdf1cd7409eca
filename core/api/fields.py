"""Serializer fields with the API's strict rules for money, ids and metadata."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.parsers import is_json_float
from core.text import printable, text_problem

MAX_AMOUNT = Decimal("9999999999999999.99")  # NUMERIC(18,2)
MAX_ID = 2**63 - 1
# Greater than zero, at most 16 integer digits and 2 decimals, no sign, no exponent.
POSITIVE_PATTERN = r"^(?:[1-9]\d{0,15}(?:\.\d{1,2})?|0?\.(?:0[1-9]|[1-9]\d?))$"
ZERO_OK_PATTERN = r"^(?:0|[1-9]\d{0,15})(?:\.\d{1,2})?$"


def amount_schema(pattern: str = POSITIVE_PATTERN, **extra: Any) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "decimal",
        "pattern": pattern,
        "example": "1250.00",
        "description": 'A decimal string such as "1250.00" (never a JSON number).',
        **extra,
    }


@extend_schema_field(amount_schema())
class MoneyField(serializers.Field):
    """A positive amount given as a decimal string: ``"1250.00"``.

    JSON numbers (floats especially) are refused, as are zero, negative,
    non-finite amounts and more than two decimals. The currency's own minor
    unit (0 for JPY) is checked by the view, which knows the account.
    """

    default_error_messages = {
        "not_string": 'Amounts are decimal strings such as "1250.00", not JSON numbers.',
        "invalid": 'Enter a decimal amount with at most two decimal places, e.g. "1250.00".',
        "not_positive": "The amount must be greater than zero.",
        "too_large": "The amount is too large.",
    }

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any) -> None:
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if is_json_float(data) or not isinstance(data, str):
            self.fail("not_string")
        pattern = ZERO_OK_PATTERN if self.allow_zero else POSITIVE_PATTERN
        if re.match(pattern, data):
            return Decimal(data).quantize(Decimal("0.01"))
        try:
            value = Decimal(data.strip()) if len(data) <= 40 else None
        except InvalidOperation:
            value = None
        if value is not None and value.is_finite():
            if value < 0 or (value == 0 and not self.allow_zero):
                self.fail("not_positive")
            if value > MAX_AMOUNT:
                self.fail("too_large")
        self.fail("invalid")

    def to_representation(self, value: Any) -> str:
        return f"{Decimal(value):.2f}" if value is not None else None


@extend_schema_field(amount_schema(ZERO_OK_PATTERN))
class NonNegativeMoneyField(MoneyField):
    """A money setting where zero means none (a credit limit)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_zero=True, **kwargs)


@extend_schema_field(amount_schema(nullable=True))
class LimitField(MoneyField):
    """A limit: a positive decimal string, or null for no limit."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


class IdField(serializers.IntegerField):
    """An integer id (JSON number or digit string) in the range of a BIGINT."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """Text that must be a JSON string (DRF would turn a number into text).

    Like every DRF ``CharField`` it refuses NUL characters and unpaired
    surrogates (codes ``null_characters_not_allowed``,
    ``surrogate_characters_not_allowed``) and values over ``max_length``.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField, StrictCharField):
    pass


METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 10


def _where(path: tuple[Any, ...]) -> str:
    return "".join(
        f"[{step}]" if isinstance(step, int) else f".{printable(str(step))}" for step in path
    ).removeprefix(".")


def _clean_json(value: Any, path: tuple[Any, ...] = ()) -> Any:
    """A copy of parsed JSON fit for JSONB: text PostgreSQL can store (no NUL character in
    a key or a value), finite numbers, bounded depth. Errors name where, never echo the value."""
    if len(path) > METADATA_MAX_DEPTH:
        raise serializers.ValidationError(f"Metadata nests at most {METADATA_MAX_DEPTH} levels.")
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise serializers.ValidationError(f"{_where(path)}: {problem[1]}", code=problem[0])
        return value
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            problem = text_problem(key)
            if problem is not None:
                where = _where(path) or "a key"
                raise serializers.ValidationError(f"{where}: keys: {problem[1]}", code=problem[0])
            cleaned[key] = _clean_json(item, (*path, key))
        return cleaned
    if isinstance(value, list):
        return [_clean_json(item, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, Decimal):
        number = float(value)
        if not math.isfinite(number):
            raise serializers.ValidationError(f"{_where(path)}: Metadata numbers must be finite.")
        return number
    return value


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "example": {"order": "81"},
        "description": "A JSON object of at most 16 KB (UTF-8), nested at most 10 levels; "
        "no NUL characters in its keys or strings.",
    }
)
class MetadataField(serializers.JSONField):
    """Free-form JSON object (at most 16 KB as UTF-8 JSON), stored with the transaction."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError("Metadata is a JSON object.")
        value = super().to_internal_value(_clean_json(data))
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > METADATA_MAX_BYTES:
            raise serializers.ValidationError(
                f"Metadata is limited to 16 KB of JSON ({size} bytes given).", code="max_length"
            )
        return value


def text_field(max_length: int, **kwargs: Any) -> serializers.CharField:
    kwargs.setdefault("required", False)
    kwargs.setdefault("allow_blank", True)
    kwargs.setdefault("default", "")
    return StrictCharField(max_length=max_length, **kwargs)


_CENT = Decimal("0.01")


def money_repr(value: Decimal) -> str:
    """As DRF renders a DecimalField(decimal_places=2) with COERCE_DECIMAL_TO_STRING."""
    return f"{value.quantize(_CENT):f}"


def moment_repr(value: datetime) -> str:
    """As DRF renders a DateTimeField in ISO 8601: in the current time zone, UTC as 'Z'."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
