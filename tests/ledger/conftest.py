from decimal import Decimal

import pytest

from ledger.services import payment_post
from tests.factories import AccountFactory, BrandFactory, ServiceFactory


@pytest.fixture
def brand(db):
    return BrandFactory()


@pytest.fixture
def service(brand):
    return ServiceFactory(brand=brand)


@pytest.fixture
def account(brand):
    return AccountFactory(brands=[brand])


@pytest.fixture
def fund():
    """Put money on an account through the ledger (a bank payment)."""

    def _fund(account, amount="100.00"):
        return payment_post(account=account, amount=Decimal(amount), channel="bank")

    return _fund
