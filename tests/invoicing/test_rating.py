"""Rating: each tariff kind, proration, tier boundaries, rounding per line, VAT."""

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest

from invoicing import services
from invoicing.ingest import usage_ingest_records
from tests.invoicing.reads import rows_read

CENT = Decimal("0.01")
JAN_DAYS = 31


def cents(value) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def vat_of(amount: Decimal, rate: Decimal) -> Decimal:
    return cents(amount * rate / (100 + rate))


def use(account, service, *quantities_and_days):
    """Record usage: ``use(acc, svc, ("10.5", 3), ("2", 20))`` = 10.5 on Jan 3, 2 on Jan 20."""
    records = [
        {
            "account": account.pk,
            "service": service.pk,
            "quantity": quantity,
            "occurred_at": f"2026-01-{day:02d}T12:00:00+03:00",
            "external_id": f"u-{account.pk}-{service.pk}-{index}",
        }
        for index, (quantity, day) in enumerate(quantities_and_days)
    ]
    result = usage_ingest_records(records=records)
    assert result.errors == [] and result.accepted == len(records)


def preview(account):
    return services.invoice_preview(account=account, period="2026-01")


def test_rating_flat_fee_full_period(account, service, subscribe):
    subscribe(account, service, "flat", price="300.00")
    [line] = preview(account)
    assert line.amount == Decimal("300.00")
    assert line.quantity == Decimal("1.000000")
    assert line.unit_price == Decimal("300.00")
    assert line.vat == vat_of(Decimal("300.00"), Decimal("20"))


def test_rating_flat_fee_prorated_by_days_covered(account, service, subscribe):
    subscribe(account, service, "flat", price="300.00", starts_on=date(2026, 1, 17))
    [line] = preview(account)
    assert (line.starts_on, line.ends_on) == (date(2026, 1, 17), date(2026, 1, 31))
    assert line.amount == cents(Decimal("300.00") * 15 / JAN_DAYS)
    assert line.quantity == (Decimal(15) / JAN_DAYS).quantize(Decimal("0.000001"))


def test_rating_per_unit_sums_usage_of_the_period_only(account, service, subscribe):
    subscribe(account, service, "per_unit", price="5.123456")
    use(account, service, ("10.5", 3), ("2.25", 31))
    # Outside January (Moscow time): 31 Dec 23:59 and 1 Feb 00:00 local are not January.
    usage_ingest_records(
        records=[
            {
                "account": account.pk,
                "service": service.pk,
                "quantity": "1000",
                "occurred_at": moment,
                "external_id": f"edge-{index}",
            }
            for index, moment in enumerate(["2025-12-31T23:59:59+03:00", "2026-01-31T21:00:00Z"])
        ]
    )
    [line] = preview(account)
    quantity = Decimal("12.75")
    assert line.quantity == quantity
    assert line.amount == cents(quantity * Decimal("5.123456"))
    assert line.vat == vat_of(line.amount, Decimal("20"))


def test_rating_per_unit_without_usage_bills_nothing(account, service, subscribe):
    subscribe(account, service, "per_unit", price="5")
    assert preview(account) == []


TIERS = [
    {"up_to": "100", "price": "4.00"},
    {"up_to": "300", "price": "5.00"},
    {"up_to": None, "price": "7.00"},
]


def test_rating_tiered_each_band_at_its_own_price(account, service, subscribe):
    subscribe(account, service, "tiered", tiers=TIERS)
    use(account, service, ("350", 5))
    lines = preview(account)
    assert [(line.quantity, line.unit_price) for line in lines] == [
        (Decimal("100"), Decimal("4.00")),
        (Decimal("200"), Decimal("5.00")),
        (Decimal("50"), Decimal("7.00")),
    ]
    assert sum(line.amount for line in lines) == 100 * 4 + 200 * 5 + 50 * 7


@pytest.mark.parametrize(
    ("quantity", "bands"),
    [
        ("100", [("100", "4.00")]),
        ("100.000001", [("100", "4.00"), ("0.000001", "5.00")]),
        ("300", [("100", "4.00"), ("200", "5.00")]),
        ("300.5", [("100", "4.00"), ("200", "5.00"), ("0.5", "7.00")]),
    ],
)
def test_rating_tier_boundaries(account, service, subscribe, quantity, bands):
    subscribe(account, service, "tiered", tiers=TIERS)
    use(account, service, (quantity, 5))
    lines = preview(account)
    assert [(line.quantity, line.unit_price) for line in lines] == [
        (Decimal(q), Decimal(p)) for q, p in bands
    ]
    assert [line.amount for line in lines] == [cents(Decimal(q) * Decimal(p)) for q, p in bands]


def test_rating_minimum_charge_tops_up_the_segment(account, service, subscribe):
    subscribe(account, service, "per_unit", price="1.00", minimum_charge="50.00")
    use(account, service, ("10", 4))
    lines = preview(account)
    assert [(line.kind, line.amount) for line in lines] == [
        ("charge", Decimal("10.00")),
        ("minimum", Decimal("40.00")),
    ]


def test_rating_minimum_charge_not_applied_above_it(account, service, subscribe):
    subscribe(account, service, "per_unit", price="1.00", minimum_charge="50.00")
    use(account, service, ("60", 4))
    assert [line.amount for line in preview(account)] == [Decimal("60.00")]


def test_rating_minimum_charge_prorated_for_partial_subscription(account, service, subscribe):
    subscribe(
        account, service, "per_unit", price="1", minimum_charge="62", starts_on=date(2026, 1, 21)
    )
    [line] = preview(account)
    assert line.kind == "minimum"
    assert line.amount == cents(Decimal(62) * 11 / JAN_DAYS)


def test_rating_prorates_flat_fee_across_mid_period_tariff_change(account, service, subscribe):
    subscribe(account, service, "flat", price="310.00")
    services.tariff_create(
        service=service, kind="flat", price="620.00", valid_from=date(2026, 1, 16)
    )
    lines = preview(account)
    assert [(line.starts_on, line.ends_on) for line in lines] == [
        (date(2026, 1, 1), date(2026, 1, 15)),
        (date(2026, 1, 16), date(2026, 1, 31)),
    ]
    assert [line.amount for line in lines] == [
        cents(Decimal(310) * 15 / JAN_DAYS),
        cents(Decimal(620) * 16 / JAN_DAYS),
    ]


def test_rating_per_unit_usage_priced_by_the_version_in_force(account, service, subscribe):
    subscribe(account, service, "per_unit", price="2.00")
    services.tariff_create(
        service=service, kind="per_unit", price="3.00", valid_from=date(2026, 1, 16)
    )
    use(account, service, ("10", 10), ("10", 20), ("1", 16))
    lines = preview(account)
    assert [(line.quantity, line.unit_price, line.amount) for line in lines] == [
        (Decimal("10"), Decimal("2.00"), Decimal("20.00")),
        (Decimal("11"), Decimal("3.00"), Decimal("33.00")),
    ]


def test_rating_tier_bands_prorated_across_tariff_change(account, service, subscribe):
    # 31 days: 10 under the old bands, 21 under the new ones; the bands shrink by days.
    subscribe(
        account,
        service,
        "tiered",
        tiers=[{"up_to": "31", "price": "1"}, {"up_to": None, "price": "2"}],
    )
    services.tariff_create(
        service=service,
        kind="tiered",
        tiers=[{"up_to": "31", "price": "10"}, {"up_to": None, "price": "20"}],
        valid_from=date(2026, 1, 11),
    )
    use(account, service, ("20", 5), ("30", 25))
    lines = preview(account)
    # old: 20 units, band 1 is 31 x 10/31 = 10 units; new: 30 units, band 1 is 21 units.
    assert [(line.quantity, line.unit_price) for line in lines] == [
        (Decimal("10"), Decimal("1")),
        (Decimal("10"), Decimal("2")),
        (Decimal("21"), Decimal("10")),
        (Decimal("9"), Decimal("20")),
    ]


def test_rating_rounds_half_up_per_line(account, service, make_service, subscribe):
    second = make_service(name="Water")
    subscribe(account, service, "per_unit", price="0.001")
    subscribe(account, second, "per_unit", price="0.001")
    use(account, service, ("5", 3))
    use(account, second, ("5", 3))
    lines = preview(account)
    # 0.005 each: half-up per line gives 0.01 twice, not round(0.010) once.
    assert [line.amount for line in lines] == [Decimal("0.01"), Decimal("0.01")]


@pytest.mark.parametrize("rate", ["20.00", "10.00", "0.00"])
def test_rating_vat_from_the_service_is_included_in_the_amount(
    account, make_service, subscribe, rate
):
    service = make_service(vat_rate=Decimal(rate))
    subscribe(account, service, "flat", price="123.45")
    [line] = preview(account)
    assert line.amount == Decimal("123.45")
    assert line.vat_rate == Decimal(rate)
    assert line.vat == vat_of(Decimal("123.45"), Decimal(rate))


def test_rating_reads_only_the_rated_accounts_usage_and_readings(
    service, make_account, make_service, subscribe, readings
):
    """A chunk's rating costs what the chunk holds, not what the tables hold: usage and
    meter readings are read by account, whatever the planner makes of the tables' sizes
    (at 1,500,000 accounts, with statistics behind the month's ingest, it hashed the chunk
    against every usage record and filtered every reading by the chunk's ids: a run
    quadratic in its size). Here the statistics are missing, nested loops are discouraged
    and the chunk is 200 accounts, of which one has usage and readings among ten others'."""
    from django.db import connection, transaction

    from invoicing.rating import rate_accounts, rated_lines

    water = make_service(name="Water", unit="m3")
    others = [make_account() for _ in range(10)]
    account = make_account()  # the last: an ordered scan from the start passes the others
    tariff = subscribe(others[0], service, "per_unit", price="1.00", plan="others").tariff
    for other in others:
        if other is not others[0]:
            services.subscription_create(account=other, tariff=tariff, starts_on=date(2026, 1, 1))
        readings(
            other,
            water,
            *[(str(n), f"2025-{1 + n // 28:02d}-{1 + n % 28:02d}") for n in range(300)],
        )
    result = usage_ingest_records(
        records=[
            {
                "account": other.pk,
                "service": service.pk,
                "quantity": "1",
                "occurred_at": f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:00:00+03:00",
                "external_id": f"other-{other.pk}-{n}",
            }
            for other in others
            for n in range(400)
        ]
    )
    assert result.accepted == 4_000, result.errors[:3]
    subscribe(account, service, "per_unit", price="2.00")
    subscribe(account, water, "per_unit", price="3.00")
    use(account, service, ("10", 3), ("5", 20))
    readings(account, water, ("100", "2025-12-31"), ("130", "2026-01-31"))
    chunk = [account.pk, *range(10**12, 10**12 + 199)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = off")
        usage_before = rows_read(cursor, "invoicing_usagerecord")
        readings_before = rows_read(cursor, "invoicing_meterreading")
        rate_accounts(chunk, services.billing_period_get("2026-01"))
        usage_read = rows_read(cursor, "invoicing_usagerecord") - usage_before
        readings_read = rows_read(cursor, "invoicing_meterreading") - readings_before
        lines = rated_lines()
        transaction.set_rollback(True)
    assert sorted((line.account_id, line.quantity, line.amount) for line in lines) == [
        (account.pk, Decimal("15"), Decimal("30.00")),
        (account.pk, Decimal("30"), Decimal("90.00")),
    ]
    # The account's own two records, of 4,002, once per segment (its two services): the
    # index is (account, time) and the service a filter.
    assert usage_read <= 2 * 2, usage_read
    assert readings_read <= 2, readings_read  # its own two readings, of 3,002
