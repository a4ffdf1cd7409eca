"""Fixtures for invoicing: a brand with services, accounts linked to it, a tariff maker."""

from datetime import date
from decimal import Decimal

import pytest

from invoicing import services
from ledger.services import payment_post
from tests.factories import AccountFactory, BrandFactory, ServiceFactory


@pytest.fixture
def brand(db):
    return BrandFactory(invoice_prefix="FD")


@pytest.fixture
def service(brand):
    return ServiceFactory(brand=brand, vat_rate=Decimal("20.00"), name="Power", unit="kWh")


@pytest.fixture
def account(brand):
    return AccountFactory(brands=[brand])


@pytest.fixture
def make_account(brand):
    def _make(**fields):
        fields.setdefault("brands", [brand])
        return AccountFactory(**fields)

    return _make


@pytest.fixture
def make_service(brand):
    def _make(**fields):
        fields.setdefault("brand", brand)
        fields.setdefault("vat_rate", Decimal("20.00"))
        return ServiceFactory(**fields)

    return _make


@pytest.fixture
def subscribe():
    """``subscribe(account, service, kind, price=..., tiers=..., starts_on=...)``: a tariff
    version from 2026-01-01 and a subscription to it."""

    def _subscribe(
        account,
        service,
        kind="per_unit",
        *,
        price=None,
        tiers=None,
        minimum_charge=None,
        valid_from=date(2026, 1, 1),
        starts_on=date(2026, 1, 1),
        ends_on=None,
        plan="standard",
    ):
        tariff = services.tariff_create(
            service=service,
            kind=kind,
            price=price,
            tiers=tiers,
            minimum_charge=minimum_charge,
            valid_from=valid_from,
            plan=plan,
        )
        return services.subscription_create(
            account=account, tariff=tariff, starts_on=starts_on, ends_on=ends_on
        )

    return _subscribe


@pytest.fixture
def pay():
    def _pay(account, amount):
        return payment_post(account=account, amount=Decimal(amount), channel="bank")

    return _pay


@pytest.fixture
def bill():
    """Run a period's invoice run to the end in this process (plan + every chunk),
    calling the services the q2 tasks call."""

    def _bill(period="2026-01", **kwargs):
        run = services.invoice_run_start(period=period, **kwargs)
        services.invoice_run_plan(run_id=run.pk)
        for chunk in run.chunks.filter(status="pending").order_by("index"):
            services.invoice_run_chunk_process(chunk_id=chunk.pk)
        run.refresh_from_db()
        return run

    return _bill


@pytest.fixture
def readings():
    """``readings(account, service, ("1000", "2025-10-31"), ...)``: ingest cumulative readings
    taken at noon (Moscow) on those days; asserts they were all accepted."""
    from invoicing.ingest import meter_readings_ingest_records

    counter = iter(range(10**6))

    def _readings(account, service, *values_and_days):
        records = [
            {
                "account": account.pk,
                "service": service.pk,
                "reading": value,
                "taken_at": f"{day}T12:00:00+03:00",
                "external_id": f"rd-{account.pk}-{next(counter)}",
            }
            for value, day in values_and_days
        ]
        result = meter_readings_ingest_records(records=records)
        assert result.errors == [] and result.accepted == len(records), result.errors
        return result

    return _readings
