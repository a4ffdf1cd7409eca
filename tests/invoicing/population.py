"""A small billing population built through the services, and its expected bill computed
independently (Decimal arithmetic from the tariffs, not from the rating SQL)."""

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from invoicing import services
from invoicing.ingest import usage_ingest_records
from tests.factories import AccountFactory, BrandFactory, ServiceFactory

CENT = Decimal("0.01")
FLAT_PRICE = Decimal("300.00")
UNIT_PRICE = Decimal("2.35")
TIERS = [("100", "4.00"), ("300", "5.00"), (None, "7.00")]
EXTRA_FLAT = Decimal("99.90")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def tiered_lines(quantity: Decimal) -> list[Decimal]:
    amounts, lower = [], Decimal(0)
    for up_to, price in TIERS:
        upper = quantity if up_to is None else min(quantity, Decimal(up_to))
        if upper > lower:
            amounts.append(cents((upper - lower) * Decimal(price)))
        if up_to is None or quantity <= Decimal(up_to):
            break
        lower = Decimal(up_to)
    return amounts


@dataclass
class Population:
    brand: object
    other_brand: object
    accounts: list = field(default_factory=list)
    expected: dict = field(default_factory=dict)  # (account_id, brand_id) -> total

    @property
    def expected_total(self) -> Decimal:
        return sum(self.expected.values(), Decimal(0))


def build_population(size: int, *, period: str = "2026-01", seed: int = 7) -> Population:
    """``size`` accounts with a flat fee, per-unit and tiered usage on one brand; every
    fifth account also takes a flat service of a second brand (two invoices)."""
    year, month = map(int, period.split("-"))
    brand = BrandFactory()
    other = BrandFactory()
    flat = ServiceFactory(brand=brand, name="Line rental")
    unit = ServiceFactory(brand=brand, name="Calls", unit="min")
    tiered = ServiceFactory(brand=brand, name="Water", unit="m3", vat_rate=Decimal("10.00"))
    extra = ServiceFactory(brand=other, name="Insurance")
    start = date(year, month, 1)
    flat_tariff = services.tariff_create(
        service=flat, kind="flat", price=FLAT_PRICE, valid_from=start
    )
    unit_tariff = services.tariff_create(
        service=unit, kind="per_unit", price=UNIT_PRICE, valid_from=start
    )
    tiered_tariff = services.tariff_create(
        service=tiered,
        kind="tiered",
        tiers=[{"up_to": up_to, "price": price} for up_to, price in TIERS],
        valid_from=start,
    )
    extra_tariff = services.tariff_create(
        service=extra, kind="flat", price=EXTRA_FLAT, valid_from=start
    )
    population = Population(brand=brand, other_brand=other)
    records = []
    for index in range(size):
        both = index % 5 == 0
        account = AccountFactory(brands=[brand, other] if both else [brand])
        population.accounts.append(account)
        for tariff in (flat_tariff, unit_tariff, tiered_tariff):
            services.subscription_create(account=account, tariff=tariff, starts_on=start)
        calls = Decimal(seed * index % 97) + Decimal("0.5")
        water = Decimal((seed * index * 13) % 420)
        for service, quantity in ((unit, calls), (tiered, water)):
            records.append(
                {
                    "account": account.pk,
                    "service": service.pk,
                    "quantity": str(quantity),
                    "occurred_at": f"{period}-{1 + index % 28:02d}T10:00:00+03:00",
                    "external_id": f"{service.pk}-{account.pk}",
                }
            )
        population.expected[(account.pk, brand.pk)] = (
            FLAT_PRICE + cents(calls * UNIT_PRICE) + sum(tiered_lines(water), Decimal(0))
        )
        if both:
            services.subscription_create(account=account, tariff=extra_tariff, starts_on=start)
            population.expected[(account.pk, other.pk)] = EXTRA_FLAT
    result = usage_ingest_records(records=records, max_records=None)
    assert result.errors == [] and result.accepted == len(records)
    return population
