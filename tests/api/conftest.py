"""Fixtures for the REST API tests: two partners on two brands, each with an API key."""

from dataclasses import dataclass
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from access.models import Partner
from access.services import api_key_create, partner_get_or_create
from ledger.services import payment_post
from tests.api.helpers import ledger_state
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory


@dataclass
class PartnerSide:
    """One partner as a test sees it: its brand, service, key, API client and a funded account."""

    partner: Partner
    brand: object
    service: object
    raw_key: str
    api: APIClient
    account: object


def api_client(raw_key: str | None = None) -> APIClient:
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


def make_side(name: str, funds: str = "1000.00") -> PartnerSide:
    brand = BrandFactory()
    service = ServiceFactory(brand=brand)
    partner = partner_get_or_create(name=name, brands=[brand])
    _, raw_key = api_key_create(partner=partner, brands=[brand])
    account = AccountFactory(brands=[brand])
    if Decimal(funds):
        payment_post(account=account, amount=funds, channel="bank")
    return PartnerSide(partner, brand, service, raw_key, api_client(raw_key), account)


@pytest.fixture
def side_a(db):
    return make_side("Partner A")


@pytest.fixture
def side_b(db):
    return make_side("Partner B")


@pytest.fixture
def staff_api(db):
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()  # the factory sets the password without saving; sessions check its hash
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def unchanged():
    """``with unchanged(): ...`` asserts that the block moved nothing at all."""

    class _Unchanged:
        def __enter__(self):
            self.before = ledger_state()

        def __exit__(self, *exc):
            if exc[0] is None:
                assert ledger_state() == self.before

    return _Unchanged
