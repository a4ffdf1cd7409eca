"""Meter readings: consumption, rollover, replacement, estimates and their correction."""

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, connection, transaction

from invoicing import services
from invoicing.meters import consumption_by_month, reading_step
from invoicing.models import Invoice, Meter, MeterReading
from tests.factories import ServiceFactory

MSK = ZoneInfo("Europe/Moscow")
PRICE = Decimal("4.50")
Q6 = Decimal("0.000001")


def cents(value):
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def jan_line(account):
    [line] = services.invoice_preview(account=account, period="2026-01")
    return line


def test_reading_step_rollover_and_backwards():
    assert reading_step(Decimal("100"), Decimal("150"), None) == Decimal("50")
    assert reading_step(Decimal("9950"), Decimal("30"), 4) == Decimal("80")
    assert reading_step(Decimal("150"), Decimal("100"), None) is None
    # Wrapping round would be more than half a turn: a reading going backwards, not a rollover.
    assert reading_step(Decimal("150"), Decimal("100"), 4) is None


def test_consumption_by_month_gap_is_spread_by_days():
    anchors = {date(2025, 12, 1): Decimal("0"), date(2026, 3, 1): Decimal("900")}
    parts = [consumption_by_month(anchors, date(2026, m, 1)) for m in (1, 2, 3)]
    total_days = 31 + 28 + 31
    assert [p.quantity for p in parts] == [
        (Decimal(900) * 31 / total_days).quantize(Q6, ROUND_HALF_UP),
        (Decimal(900) * 59 / total_days).quantize(Q6, ROUND_HALF_UP)
        - (Decimal(900) * 31 / total_days).quantize(Q6, ROUND_HALF_UP),
        Decimal(900) - (Decimal(900) * 59 / total_days).quantize(Q6, ROUND_HALF_UP),
    ]
    assert sum(p.quantity for p in parts) == Decimal("900")
    assert not any(p.estimated for p in parts)


def test_consumption_from_the_difference_of_readings(account, service, subscribe, readings):
    subscribe(account, service, "per_unit", price=PRICE)
    readings(
        account, service, ("1000", "2025-12-31"), ("1100", "2026-01-15"), ("1250", "2026-01-31")
    )
    line = jan_line(account)
    assert (line.quantity, line.estimated) == (Decimal("250"), False)
    assert line.amount == cents(250 * PRICE)


def test_consumption_across_a_rollover(account, service, subscribe, readings):
    subscribe(account, service, "per_unit", price=PRICE)
    services.meter_install(
        account=account,
        service=service,
        installed_at=datetime(2025, 12, 1, tzinfo=MSK),
        initial_reading="9900",
        digits=4,
    )
    readings(account, service, ("9950", "2025-12-31"), ("30", "2026-01-31"))
    assert jan_line(account).quantity == Decimal("80")


def test_consumption_across_a_meter_replacement(account, service, subscribe, readings):
    subscribe(account, service, "per_unit", price=PRICE)
    readings(account, service, ("500", "2025-12-31"))
    old = MeterReading.objects.get().meter
    new = services.meter_replace(
        meter=old,
        replaced_at=datetime(2026, 1, 15, 9, 0, tzinfo=MSK),
        final_reading="560",
        new_initial_reading="0",
        new_serial="NEW-1",
    )
    readings(account, service, ("40", "2026-01-31"))
    old.refresh_from_db()
    assert old.removed_at is not None
    assert MeterReading.objects.filter(meter=new).count() == 2
    # 60 on the old meter up to its final reading, 40 on the new one from its initial reading.
    assert jan_line(account).quantity == Decimal("100")


def test_missing_reading_is_estimated_then_corrected_by_recalculation(
    account, service, subscribe, readings, bill
):
    subscribe(account, service, "per_unit", price=PRICE)
    readings(
        account,
        service,
        ("1000", "2025-10-31"),
        ("1100", "2025-11-30"),
        ("1250", "2025-12-31"),
    )
    bill("2026-01")
    invoice = Invoice.objects.get(period__code="2026-01")
    [line] = invoice.lines.all()
    # No January reading: the average of November (100) and December (150).
    assert (line.quantity, line.estimated) == (Decimal("125"), True)
    assert invoice.total == cents(125 * PRICE)
    # The January reading arrives late: January consumed 150, not 125.
    readings(account, service, ("1400", "2026-01-31"))
    [adjustment] = services.invoice_recalculate(account=account, period="2026-01")
    assert adjustment.adjusts_id == invoice.pk
    assert adjustment.kind == Invoice.Kind.ADJUSTMENT
    assert adjustment.total == cents(150 * PRICE) - cents(125 * PRICE)
    [adj_line] = adjustment.lines.all()
    assert (adj_line.quantity, adj_line.estimated) == (Decimal("25"), False)
    assert services.invoice_recalculate(account=account, period="2026-01") == []


def test_estimate_replaced_by_spread_when_a_later_reading_arrives(
    account, service, subscribe, readings, bill
):
    subscribe(account, service, "per_unit", price=PRICE)
    readings(account, service, ("1000", "2025-11-30"), ("1100", "2025-12-31"))
    bill("2026-01")
    assert Invoice.objects.get().total == cents(100 * PRICE)  # estimated from December
    # February's reading covers January and February: 590 spread 31:28 by days.
    readings(account, service, ("1690", "2026-02-28"))
    febrary_run = bill("2026-02")
    assert febrary_run.adjustments_issued == 1
    january_share = (Decimal(590) * 31 / 59).quantize(Q6, ROUND_HALF_UP)
    adjustment = Invoice.objects.get(kind="adjustment")
    assert adjustment.adjusts.period.code == "2026-01"
    assert adjustment.total == cents(january_share * PRICE) - cents(100 * PRICE)
    february = Invoice.objects.get(period__code="2026-02", kind="invoice")
    assert february.total == cents((Decimal(590) - january_share) * PRICE)


@pytest.mark.parametrize("wrong", ["account", "service", "meter"])
def test_a_reading_names_its_meters_account_and_service(
    account, make_account, service, readings, wrong, db
):
    """One foreign key covers a reading's meter, account and service: a reading naming
    another account or service than its meter's, or no meter at all, is refused at
    commit (here at once, by SET CONSTRAINTS), and nothing is stored."""
    readings(account, service, ("100", "2026-01-10"))
    meter = Meter.objects.get(account=account, service=service)
    other_account = make_account()
    other_service = ServiceFactory(brand=service.brand)
    values = {
        "meter_id": meter.pk,
        "account_id": account.pk,
        "service_id": service.pk,
        "reading": Decimal("120"),
        "taken_at": datetime(2026, 1, 20, 12, tzinfo=MSK),
        "external_id": "wrong-1",
    }
    values.update(
        {
            "account": {"account_id": other_account.pk},
            "service": {"service_id": other_service.pk},
            "meter": {"meter_id": meter.pk + 10**9},
        }[wrong]
    )
    with (
        pytest.raises(IntegrityError, match="invoicing_meterreading_meter_series_fk"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        MeterReading.objects.create(**values)
    assert not MeterReading.objects.filter(external_id="wrong-1").exists()
    # The same reading naming its meter's own account and service is stored.
    MeterReading.objects.create(
        **{**values, "meter_id": meter.pk, "account_id": account.pk, "service_id": service.pk}
    )
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert MeterReading.objects.filter(external_id="wrong-1").count() == 1
