"""Tariff versions of a service's plan: flat, per unit or tiered, effective from a day,
never overlapping (an exclusion constraint, reported as ``TariffOverlap``). A new
version ends the open-ended one before it, so a price change is one call; prices
cannot reach days of a closed period.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class TariffDraft:
    """A new tariff version checked without the database (``tariff_check``): the unsaved
    version and its tiers, for ``tariffs_create_bulk``."""

    tariff: Tariff
    tiers: tuple[TierSpec, ...]


def _tariff_parsed(
    *,
    service: Service,
    kind: str,
    valid_from: date,
    valid_to: date | None,
    price: Any,
    tiers: Iterable[dict[str, Any]] | None,
    minimum_charge: Any,
    plan: str,
    currency: str | None,
) -> TariffDraft:
    """The arguments of ``tariff_create`` read and checked, in its order, as an unsaved
    version (not yet ``full_clean``-ed)."""
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
    tariff = Tariff(
        service=service,
        plan=plan,
        kind=kind,
        price=price_value,
        minimum_charge=minimum,
        currency=currency or settings.BILLING_DEFAULT_CURRENCY,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    return TariffDraft(tariff, tuple(tier_specs))


def _save_tiers(drafts: Iterable[TariffDraft]) -> None:
    """The tiers of saved versions, in one multi-row insert."""
    TariffTier.objects.bulk_create(
        [
            TariffTier(
                tariff=draft.tariff,
                position=position,
                from_quantity=Decimal(0) if position == 1 else draft.tiers[position - 2].up_to,
                up_to=spec.up_to,
                price=spec.price,
            )
            for draft in drafts
            for position, spec in enumerate(draft.tiers, start=1)
        ]
    )


def _save_versions(tariffs: list[Tariff]) -> None:
    try:
        with transaction.atomic():
            if len(tariffs) == 1:
                tariffs[0].save()
            else:
                Tariff.objects.bulk_create(tariffs, batch_size=5000)
    except IntegrityError as exc:
        if "no_overlapping_versions" in str(exc):
            raise TariffOverlap(field="valid_from") from None
        raise


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
    draft = _tariff_parsed(
        service=service_obj, kind=kind, valid_from=valid_from, valid_to=valid_to, price=price,
        tiers=tiers, minimum_charge=minimum_charge, plan=plan, currency=currency,
    )  # fmt: skip
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
        _full_clean_except(draft.tariff, exclude=["service"])
        _save_versions([draft.tariff])
        _save_tiers([draft])
    return draft.tariff


def tariff_check(
    *,
    service: Service,
    kind: str,
    valid_from: date,
    valid_to: date | None = None,
    price: Any = None,
    tiers: Iterable[dict[str, Any]] | None = None,
    minimum_charge: Any = None,
    plan: str = "standard",
    currency: str | None = None,
) -> TariffDraft:
    """What ``tariff_create`` checks of one version without the database (kind, days,
    prices, tiers, fields); the closed periods, the version it ends and the overlaps are
    ``tariffs_create_bulk``'s, for a whole batch."""
    draft = _tariff_parsed(
        service=service, kind=kind, valid_from=valid_from, valid_to=valid_to, price=price,
        tiers=tiers, minimum_charge=minimum_charge, plan=plan, currency=currency,
    )  # fmt: skip
    _full_clean_except(draft.tariff, exclude=["service"])
    return draft


@transaction.atomic
def tariffs_create_bulk(*, drafts: Sequence[TariffDraft]) -> list[Tariff]:
    """Many ``tariff_create`` calls in one, in the given order, for drafts ``tariff_check``
    returned: the closed periods checked once (from the earliest first day), the open
    versions of the drafts' plans locked in one query, each draft ending the open version
    ``tariff_create`` would end (the earliest stored one, else one made earlier in the
    call, starting before it), the ended stored versions updated in one statement, the
    versions and their tiers inserted in one each. Any refusal refuses all."""
    if not drafts:
        return []
    check_days_open(min(draft.tariff.valid_from for draft in drafts))
    plans = {(draft.tariff.service_id, draft.tariff.plan) for draft in drafts}
    open_versions: dict[tuple[int, str], list[Tariff]] = {}
    stored = (
        Tariff.objects.select_for_update(of=("self",))
        .filter(
            service_id__in={service for service, _plan in plans},
            plan__in={plan for _service, plan in plans},
            valid_to__isnull=True,
        )
        .order_by("pk")
    )
    for version in stored:
        open_versions.setdefault((version.service_id, version.plan), []).append(version)
    ended: dict[int, Tariff] = {}
    tariffs = []
    for draft in drafts:
        tariff = draft.tariff
        versions = open_versions.setdefault((tariff.service_id, tariff.plan), [])
        previous = next(
            (v for v in versions if v.valid_to is None and v.valid_from < tariff.valid_from),
            None,
        )
        if previous is not None:
            previous.valid_to = tariff.valid_from - timedelta(days=1)
            if previous.pk is not None:
                ended[previous.pk] = previous
        if tariff.valid_to is None:
            versions.append(tariff)
        tariffs.append(tariff)
    if ended:
        Tariff.objects.bulk_update(list(ended.values()), ["valid_to"])
    _save_versions(tariffs)
    _save_tiers(drafts)
    return tariffs
