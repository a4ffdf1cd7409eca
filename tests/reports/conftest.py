"""Fixtures shared by the spreadsheet import tests."""

import pytest

from tests.factories import AccountFactory, BrandFactory, LegalEntityFactory


@pytest.fixture
def world(db):
    """A brand, an organisation and its two payers (RUB linked to the brand, USD)."""
    brand = BrandFactory(code="SPA")
    company = LegalEntityFactory(tax_id="7707083893", external_ref="acme")
    payer = AccountFactory(client=company, brands=[brand])
    usd_payer = AccountFactory(client=company, currency="USD")
    return {"brand": brand, "company": company, "payer": payer, "usd_payer": usd_payer}
