"""Tariff versions of a service's plan: flat, per unit or tiered, effective from a day,
never overlapping (an exclusion constraint, reported as ``TariffOverlap``). A new
version ends the open-ended one before it, so a price change is one call; prices
cannot reach days of a closed period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from brands.models import Service
from invoicing.exceptions import InvoicingValidationError, TariffOverlap
from invoicing.models import Tariff, TariffTier
from invoicing.services.inputs import _full_clean_except, check_day, parse_decimal
from invoicing.services.periods import check_days_open


@dataclass(frozen=True)
class TierSpec:
    up_to: Decimal | None
    price: Decimal


def _tiers(tiers: Iterable[dict[str, Any]] | None) -> list[TierSpec]:
    specs: list[TierSpec] = []
    for index, tier in enumerate(tiers or []):
        if not isinstance(tier, dict):
            raise InvoicingValidationError("Each tier is an object.", field="tiers", index=index)
        up_to = tier.get("up_to")
        specs.append(
            TierSpec(
                None if up_to is None else parse_decimal(up_to, field_name=f"tiers[{index}].up_to"),
                parse_decimal(tier.get("price"), field_name=f"tiers[{index}].price"),
            )
        )
    if not specs:
        raise InvoicingValidationError("A tiered tariff needs tiers.", field="tiers")
    if specs[-1].up_to is not None:
        raise InvoicingValidationError("The last tier is open-ended (up_to null).", field="tiers")
    previous = Decimal(0)
    for index, spec in enumerate(specs[:-1]):
        if spec.up_to is None or spec.up_to <= previous:
            raise InvoicingValidationError(
                "Tiers ascend: each up_to is above the one before, only the last is null.",
                field="tiers",
                index=index,
            )
        previous = spec.up_to
    return specs


def tariff_create(
    *,
    service: Service | int,
    kind: str,
    valid_from: date,
    valid_to: date | None = None,
    price: Any = None,
    tiers: Iterable[dict[str, Any]] | None = None,
    minimum_charge: Any = None,
    plan: str = "standard",
    currency: str | None = None,
) -> Tariff:
    """Add a version of a tariff plan from ``valid_from``.

    An open-ended earlier version of the same plan is ended the day before, so
    a price change is one call. Refused when the new prices would reach days
    of a closed period or overlap another version.
    """
    service_obj = service if isinstance(service, Service) else Service.objects.get(pk=service)
    if kind not in Tariff.Kind.values:
        raise InvoicingValidationError(f"Unknown tariff kind {kind!r}.", field="kind")
    check_day(valid_from, "valid_from")
    check_day(valid_to, "valid_to")
    if valid_to is not None and valid_to < valid_from:
        raise InvoicingValidationError("valid_to is before valid_from.", field="valid_to")
    tier_specs: list[TierSpec] = []
    if kind == Tariff.Kind.TIERED:
        if price is not None:
            raise InvoicingValidationError("A tiered tariff has tiers, not a price.", field="price")
        tier_specs = _tiers(tiers)
        price_value = None
    else:
        if tiers:
            raise InvoicingValidationError("Only tiered tariffs have tiers.", field="tiers")
        price_value = parse_decimal(price, field_name="price")
    minimum = (
        None
        if minimum_charge is None
        else parse_decimal(minimum_charge, field_name="minimum_charge")
    )
    with transaction.atomic():
        check_days_open(valid_from)
        previous = (
            Tariff.objects.select_for_update(of=("self",))
            .filter(
                service=service_obj, plan=plan, valid_to__isnull=True, valid_from__lt=valid_from
            )
            .order_by("pk")
            .first()
        )
        if previous is not None:
            previous.valid_to = valid_from - timedelta(days=1)
            previous.save(update_fields=["valid_to"])
        tariff = Tariff(
            service=service_obj,
            plan=plan,
            kind=kind,
            price=price_value,
            minimum_charge=minimum,
            currency=currency or settings.BILLING_DEFAULT_CURRENCY,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        _full_clean_except(tariff, exclude=["service"])
        try:
            with transaction.atomic():
                tariff.save()
        except IntegrityError as exc:
            if "no_overlapping_versions" in str(exc):
                raise TariffOverlap(field="valid_from") from None
            raise
        lower = Decimal(0)
        TariffTier.objects.bulk_create(
            [
                TariffTier(
                    tariff=tariff,
                    position=position,
                    from_quantity=lower if position == 1 else tier_specs[position - 2].up_to,
                    up_to=spec.up_to,
                    price=spec.price,
                )
                for position, spec in enumerate(tier_specs, start=1)
            ]
        )
    return tariff
