"""clients_create_bulk / accounts_create_bulk: the single services' rules, many rows at once."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from accounts import services
from accounts.exceptions import InvalidAccountStructure
from accounts.models import Account, Client
from brands import services as brand_services
from brands.models import Brand
from core.errors import ValidationFailed
from core.validators import account_number_is_valid, inn_complete
from tests.factories import AccountFactory, BrandFactory, ClientFactory

pytestmark = pytest.mark.django_db


def _person(n: int, **fields) -> dict:
    return {"kind": "individual", "name": f"Person {n}", "tax_id": inn_complete(f"77{n:08d}"),
            **fields}  # fmt: skip


def test_clients_create_bulk_creates_valid_clients():
    made = services.clients_create_bulk(clients=[_person(n) for n in range(1, 4)])
    assert [c.pk is not None for c in made] == [True, True, True]
    assert Client.objects.count() == 3


def test_clients_create_bulk_refuses_all_on_a_bad_inn():
    bad = _person(9, tax_id="770000000000")
    with pytest.raises(ValidationError) as refused:
        services.clients_create_bulk(clients=[_person(1), bad])
    assert "tax_id" in str(refused.value)
    assert not Client.objects.exists()


def test_accounts_create_bulk_numbers_brands_and_subaccounts():
    brand = BrandFactory()
    payer_client, employee = ClientFactory(), ClientFactory()
    (payer,) = services.accounts_create_bulk(
        accounts=[{"client": payer_client, "brands": [brand], "credit_limit": Decimal("500")}]
    )
    (sub,) = services.accounts_create_bulk(
        accounts=[
            {"client": employee, "brands": [brand], "parent": payer,
             "write_off_limit_day": Decimal("1000")}
        ]
    )  # fmt: skip
    assert account_number_is_valid(payer.number) and account_number_is_valid(sub.number)
    assert Account.objects.get(pk=sub.pk).parent_id == payer.pk
    assert list(Account.objects.get(pk=payer.pk).brands.all()) == [brand]


def test_accounts_create_bulk_refuses_credit_on_a_subaccount_and_a_closed_parent():
    payer = AccountFactory()
    before = Account.objects.count()
    with pytest.raises(InvalidAccountStructure):
        services.accounts_create_bulk(
            accounts=[{"client": ClientFactory(), "parent": payer, "credit_limit": Decimal("1")}]
        )
    services.account_close(account=payer)
    with pytest.raises(InvalidAccountStructure):
        services.accounts_create_bulk(accounts=[{"client": ClientFactory(), "parent": payer}])
    assert Account.objects.count() == before


def test_brand_create_validates_like_the_model():
    fields = {"code": "water", "name": "Water", "legal_name": "AO Water",
              "tax_id": inn_complete("770412345"), "invoice_prefix": "WTR",
              "default_vat_rate": "20.00"}  # fmt: skip
    brand = brand_services.brand_create(**fields)
    assert brand.pk and brand.default_vat_rate == Decimal("20.00")
    with pytest.raises(ValidationFailed):
        brand_services.brand_create(**{**fields, "code": "other", "tax_id": "7704123450"})
    assert Brand.objects.count() == 1


def test_checked_items_are_taken_once_and_refused_when_changed_after_the_check():
    """What client_check / account_check return, the bulk services take without checking
    again; changed after the check, it is refused (it would skip the checks)."""
    brand = BrandFactory()
    client = services.client_check(**_person(1))
    changed = services.client_check(**_person(2))
    changed.tax_id = "770000000000"
    with pytest.raises(TypeError):
        services.clients_create_bulk(clients=[client, changed])
    [made] = services.clients_create_bulk(clients=[client])
    account = services.account_check(client=made, brands=[brand], credit_limit=Decimal("5.00"))
    moved = services.account_check(client=made)
    moved.credit_limit = Decimal("-1.00")
    with pytest.raises(TypeError):
        services.accounts_create_bulk(accounts=[account, moved])
    [opened] = services.accounts_create_bulk(accounts=[account])
    assert account_number_is_valid(opened.number) and list(opened.brands.all()) == [brand]
    assert Account.objects.get(pk=opened.pk).credit_limit == Decimal("5.00")
