"""Writes of the service catalogue (add a service to a brand's catalogue, change one) and of
a brand's bank details.

A service is validated like a model (``full_clean``: code pattern, unique code per
brand, VAT between 0 and 100) and refused with ``validation_error``. A change of the
VAT rate is announced first with ``brands.signals.service_vat_rate_changing``, inside
the transaction: the apps that bill refuse it when it would reach billed days
(invoicing: a closed billing period), since VAT is part of every line's amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from brands.models import Brand, Service
from brands.signals import service_vat_rate_changing
from core.errors import ValidationFailed

BRAND_FIELDS = {
    "code", "name", "legal_name", "tax_id", "kpp", "ogrn", "address", "bank_name", "bank_bik",
    "bank_account", "bank_correspondent_account", "invoice_prefix", "default_vat_rate",
}  # fmt: skip
SERVICE_FIELDS = {"code", "name", "unit", "vat_rate", "is_active"}
# Printed in every invoice and its payment QR: staff change them through a maker-checker
# request (``brands.maker_checker``).
BANK_FIELDS = ("bank_name", "bank_bik", "bank_account", "bank_correspondent_account")


@transaction.atomic
def brand_create(**fields: Any) -> Brand:
    """Register one of the operator's legal entities (validated like a model: INN, KPP,
    BIK and bank account checksums, unique code); refused with ``validation_error``."""
    unknown = set(fields) - BRAND_FIELDS
    if unknown:
        raise TypeError(f"Unknown brand fields: {sorted(unknown)}")
    if "default_vat_rate" in fields:
        fields["default_vat_rate"] = _vat_rate(fields["default_vat_rate"])
    brand = Brand(**fields)
    _full_clean(brand)
    brand.save()
    return brand


@transaction.atomic
def service_create(
    *, brand: Brand | int, code: str, name: str, unit: str = "pcs", vat_rate: Any = None
) -> Service:
    """Add a service to a brand's catalogue (VAT defaults to the brand's rate)."""
    brand_obj = brand if isinstance(brand, Brand) else Brand.objects.get(pk=brand)
    rate = brand_obj.default_vat_rate if vat_rate is None else _vat_rate(vat_rate)
    service = Service(brand=brand_obj, code=code, name=name, unit=unit, vat_rate=rate)
    _full_clean(service)
    service.save()
    return service


def service_check(
    *,
    brand: Brand,
    code: str,
    name: str,
    unit: str = "pcs",
    vat_rate: Any = None,
    is_active: bool = True,
) -> Service:
    """A new service built and validated as ``service_create`` validates it, without the
    database (fields, code pattern, VAT rate; ``validation_error`` otherwise): the code's
    uniqueness within the brand is checked by ``services_create_bulk`` for a whole batch.
    Returns the unsaved service, for ``services_create_bulk``."""
    rate = brand.default_vat_rate if vat_rate is None else _vat_rate(vat_rate)
    service = Service(
        brand=brand, code=code, name=name, unit=unit, vat_rate=rate, is_active=is_active
    )
    _full_clean(service, exclude=["brand"], validate_unique=False, validate_constraints=False)
    return service


@transaction.atomic
def services_create_bulk(*, services: Sequence[Service]) -> list[Service]:
    """Add many services (each as ``service_check`` returned it) with one look-up of the
    codes their brands already have and one multi-row insert; a code taken (in the
    catalogue or twice among them) refuses the whole call with ``validation_error``."""
    wanted = [(service.brand_id, service.code) for service in services]
    taken = set(
        Service.objects.filter(
            brand_id__in={brand for brand, _code in wanted},
            code__in={code for _brand, code in wanted},
        ).values_list("brand_id", "code")
    )
    repeated = len(set(wanted)) != len(wanted)
    if repeated or taken.intersection(wanted):
        raise ValidationFailed(
            "code: This brand already has a service with this code.",
            code=["This brand already has a service with this code."],
        )
    return Service.objects.bulk_create(services, batch_size=5000)


@transaction.atomic
def service_update(*, service: Service, **fields: Any) -> Service:
    """Change a service's fields (``SERVICE_FIELDS``); a new VAT rate may be refused."""
    unknown = set(fields) - SERVICE_FIELDS
    if unknown:
        raise TypeError(f"Unknown service fields: {sorted(unknown)}")
    if "vat_rate" in fields:
        fields["vat_rate"] = _vat_rate(fields["vat_rate"])
        if fields["vat_rate"] != service.vat_rate:
            service_vat_rate_changing.send(
                sender=Service, service=service, vat_rate=fields["vat_rate"]
            )
    for name, value in fields.items():
        setattr(service, name, value)
    _full_clean(service)
    service.save(update_fields=list(fields))
    return service


def _with_bank_details(brand: Brand, fields: dict[str, Any]) -> Brand:
    unknown = set(fields) - set(BANK_FIELDS)
    if unknown:
        raise TypeError(f"Unknown bank detail fields: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(brand, name, value)
    _full_clean(brand)
    return brand


def brand_bank_details_check(*, brand: Brand, **fields: Any) -> None:
    """Refuse new bank details as ``brand_bank_details_update`` would, without saving them."""
    _with_bank_details(Brand.objects.get(pk=brand.pk), fields)


@transaction.atomic
def brand_bank_details_update(*, brand: Brand, **fields: Any) -> Brand:
    """Change a brand's bank details (``BANK_FIELDS``) under its row lock: invoices rendered
    from now on print them and carry them in the payment QR."""
    locked = Brand.objects.select_for_update().get(pk=brand.pk)
    _with_bank_details(locked, fields)
    locked.save(update_fields=list(fields))
    return locked


def _vat_rate(value: Any) -> Decimal:
    """A finite, non-negative percentage with at most 2 decimals; floats are refused."""
    if isinstance(value, float | bool) or value is None:
        raise ValidationFailed(
            "vat_rate must be a decimal string.", field="vat_rate", value=repr(value)
        )
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise ValidationFailed(
            "vat_rate is not a number.", field="vat_rate", value=str(value)
        ) from None
    if not number.is_finite() or number < 0:
        raise ValidationFailed(
            "vat_rate must be a finite, non-negative number.", field="vat_rate", value=str(value)
        )
    if number != number.quantize(Decimal("0.01")):
        raise ValidationFailed("vat_rate has more than 2 decimal places.", field="vat_rate")
    if abs(number) >= Decimal(10) ** 14:
        raise ValidationFailed("vat_rate is too large.", field="vat_rate")
    return number


def _full_clean(obj: Any, **options: Any) -> None:
    try:
        obj.full_clean(**options)
    except ValidationError as exc:
        details = {name: [str(m) for m in msgs] for name, msgs in exc.message_dict.items()}
        raise ValidationFailed(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in details.items()), **details
        ) from None
