"""Amounts, business dates and request hashing: the ledger's pure input helpers.

Nothing here touches the database. ``money()`` is the one parser of amounts
(decimal strings or ``Decimal``, never floats; no more decimals than the
currency has); ``business_date()`` is the operator's calendar date that
write-off limits per day and month are counted in; ``request_hash()`` is what
an idempotency key remembers of a request.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from decimal import InvalidOperation as DecimalInvalidOperation
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from ledger.exceptions import InvalidAmount

ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("9999999999999999.99")  # NUMERIC(18,2)
# Minor units per currency where they differ from two.
CURRENCY_DECIMALS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3}


def money(amount: Any, currency: str | None = None) -> Decimal:
    """A positive amount with no more decimals than the currency allows, or ``InvalidAmount``.

    Floats are refused outright: money never passes through binary floating point.
    """
    if isinstance(amount, float | bool):
        raise InvalidAmount("Amounts are decimal strings, never floats.", amount=repr(amount))
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except (DecimalInvalidOperation, ValueError, TypeError):
        raise InvalidAmount(amount=str(amount)) from None
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise InvalidAmount(amount=str(amount))
    # Amounts are stored as NUMERIC(18,2): a third decimal is refused, never rounded away.
    places = min(CURRENCY_DECIMALS.get(currency or "", 2), 2)
    quantum = Decimal(1).scaleb(-places)
    if value != value.quantize(quantum):
        raise InvalidAmount(
            f"At most {places} decimal places are allowed.", amount=str(amount), places=places
        )
    return value.quantize(Decimal("0.01"))


def signed_money(amount: Any) -> tuple[Decimal, int]:
    """A signed amount (an adjustment's) as its magnitude (``money()``) and its sign (+1 / -1)."""
    try:
        signed = Decimal(str(amount)) if not isinstance(amount, float | bool) else amount
    except DecimalInvalidOperation:
        raise InvalidAmount(amount=str(amount)) from None
    if isinstance(signed, Decimal) and signed.is_finite() and signed < 0:
        return money(-signed), -1
    return money(amount), 1


def pk_of(obj: Any) -> int | None:
    """The primary key of a model instance, or the int given in its place."""
    if obj is None:
        return None
    return obj if isinstance(obj, int) else obj.pk


def request_hash(request: dict[str, Any]) -> str:
    """The SHA-256 of a request's canonical JSON: what an idempotency key is compared on."""
    canonical = json.dumps(request, sort_keys=True, cls=DjangoJSONEncoder, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def business_date(moment: datetime) -> date:
    """The operator's calendar date of a moment (limits per day and month are counted in it)."""
    return timezone.localtime(moment).date()
