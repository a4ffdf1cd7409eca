"""Small helpers every invoicing service shares: settings with defaults, the business
day (``today``), the ``INVOICING`` caller that postings are made as, money constants,
and the parsing and checking of inputs (``parse_decimal`` refuses floats like money,
``round_money`` rounds half-up to the currency's minor unit, ``check_day`` keeps days
within 1900..2199, model validation turned into ``InvoicingValidationError``).
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.utils import timezone

from invoicing.exceptions import InvoicingValidationError
from ledger import services as ledger

INVOICING = ledger.Caller.system("invoicing")
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
Q6 = Decimal("0.000001")


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def payment_terms_days() -> int:
    return int(_setting("INVOICING_PAYMENT_TERMS_DAYS", 10))


def today() -> date:
    return ledger.business_date(timezone.now())


def parse_decimal(
    value: Any, *, field_name: str, places: int = 6, allow_negative: bool = False
) -> Decimal:
    """A finite decimal with at most ``places`` decimals; floats are refused like money."""
    if isinstance(value, float | bool) or value is None:
        raise InvoicingValidationError(
            f"{field_name} must be a decimal string.", field=field_name, value=repr(value)
        )
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise InvoicingValidationError(
            f"{field_name} is not a number.", field=field_name, value=str(value)
        ) from None
    if not number.is_finite() or (number < 0 and not allow_negative):
        raise InvoicingValidationError(
            f"{field_name} must be a finite, non-negative number.",
            field=field_name,
            value=str(value),
        )
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise InvoicingValidationError(
            f"{field_name} has more than {places} decimal places.", field=field_name
        )
    if abs(number) >= Decimal(10) ** 14:
        raise InvoicingValidationError(f"{field_name} is too large.", field=field_name)
    return number


def round_money(value: Decimal, currency: str = "RUB") -> Decimal:
    places = ledger.CURRENCY_DECIMALS.get(currency, 2)
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)


def check_day(value: date | None, field_name: str) -> None:
    """Billing works on days from 1900 to 2199 (periods are "YYYY-MM" in that range)."""
    if value is not None and not FIRST_DAY <= value <= LAST_DAY:
        raise InvoicingValidationError(
            f"{field_name} must be between {FIRST_DAY} and {LAST_DAY}.", field=field_name
        )


def _pk(obj: Any) -> int | None:
    if obj is None:
        return None
    return obj if isinstance(obj, int) else obj.pk


def _full_clean_except(obj: Any, exclude: list[str]) -> None:
    from django.core.exceptions import ValidationError

    try:
        obj.full_clean(exclude=exclude, validate_constraints=False)
    except ValidationError as exc:
        details = {name: [str(m) for m in msgs] for name, msgs in exc.message_dict.items()}
        raise InvoicingValidationError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in details.items()), **details
        ) from None
