"""Installing and replacing meters. An installed meter's initial reading is its baseline
(it consumes nothing); a replacement closes the old meter's series with a final
reading and starts the new one, so the period's consumption is old plus new. The
consumption arithmetic itself (rollover, estimates, spreading) is ``invoicing.meters``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Account
from brands.models import Service
from invoicing.exceptions import InvoicingValidationError, ReadingBackwards
from invoicing.meters import reading_step
from invoicing.models import Meter, MeterReading
from invoicing.services.inputs import ZERO, _pk, parse_decimal


@transaction.atomic
def meter_install(
    *,
    account: Account | int,
    service: Service | int,
    installed_at: datetime,
    initial_reading: Any = "0",
    serial: str = "",
    digits: int | None = None,
) -> Meter:
    """Install a meter; its initial reading is the baseline (it consumes nothing)."""
    reading = parse_decimal(initial_reading, field_name="initial_reading")
    meter = Meter(
        account_id=_pk(account),
        service_id=_pk(service),
        serial=serial,
        digits=digits,
        installed_at=installed_at,
    )
    try:
        with transaction.atomic():
            meter.save()
    except IntegrityError:
        raise InvoicingValidationError(
            "The account already has an active meter for this service.", field="service"
        ) from None
    MeterReading.objects.create(
        meter=meter,
        account_id=meter.account_id,
        service_id=meter.service_id,
        reading=reading,
        taken_at=installed_at,
        consumption=ZERO,
        external_id=f"meter:{meter.pk}:installed",
        source="meter_install",
    )
    return meter


@transaction.atomic
def meter_replace(
    *,
    meter: Meter | int,
    replaced_at: datetime,
    final_reading: Any,
    new_initial_reading: Any = "0",
    new_serial: str = "",
    new_digits: int | None = None,
) -> Meter:
    """Replace a meter: the old one's final reading closes its series, the new one starts at
    its initial reading. Consumption of the period is then old (up to the final reading)
    plus new (from the initial reading). Locks the old meter."""
    old = Meter.objects.select_for_update().get(pk=_pk(meter))
    if old.removed_at is not None:
        raise InvoicingValidationError("The meter was already removed.", field="meter")
    final = parse_decimal(final_reading, field_name="final_reading")
    if MeterReading.objects.filter(meter=old, taken_at__gt=replaced_at).exists():
        raise InvoicingValidationError(
            "The meter has readings after the replacement time.", field="replaced_at"
        )
    last = MeterReading.objects.filter(meter=old).order_by("-taken_at", "-id").first()
    step = ZERO
    if last is not None:
        found = reading_step(last.reading, final, old.digits)
        if found is None:
            raise ReadingBackwards(
                f"The final reading {final} is below the last reading {last.reading}.",
                field="final_reading",
            )
        step = found
    MeterReading.objects.create(
        meter=old,
        account_id=old.account_id,
        service_id=old.service_id,
        reading=final,
        taken_at=replaced_at,
        consumption=step,
        external_id=f"meter:{old.pk}:removed",
        source="meter_replace",
    )
    old.removed_at = replaced_at
    old.save(update_fields=["removed_at"])
    return meter_install(
        account=old.account_id,
        service=old.service_id,
        installed_at=replaced_at,
        initial_reading=new_initial_reading,
        serial=new_serial,
        digits=new_digits,
    )
