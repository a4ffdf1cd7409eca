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
