"""The per-process cache of verified API keys follows every change of a key's scope at once.

Each test first shows the key answered from the cache (no query of the key tables), then
changes the key, its partner or their brands the way staff do (the admin's forms call the
same model methods), and shows the very next request over HTTP sees the change.
"""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from access import services
from access.services import api_key_create, api_key_update, partner_get_or_create
from tests.api.conftest import api_client
from tests.factories import AccountFactory, BrandFactory


def balance_url(account) -> str:
    return f"/api/v1/accounts/{account.pk}/balance/"


def two_brand_partner():
    first, second = BrandFactory(), BrandFactory()
    partner = partner_get_or_create(name="Two brands", brands=[first, second])
    api_key, raw_key = api_key_create(partner=partner, brands=[first, second])
    accounts = AccountFactory(brands=[first]), AccountFactory(brands=[second])
    return partner, api_key, api_client(raw_key), (first, second), accounts


def assert_cached(client, account) -> None:
    """The key is verified from the process's cache: no query touches the key tables."""
    assert client.get(balance_url(account)).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get(balance_url(account)).status_code == 200
    assert not [q for q in queries.captured_queries if "access_apikey" in q["sql"]]
    assert services._authenticated


def test_partner_losing_a_brand_loses_its_accounts_at_once(db):
    partner, _, client, (_, second), (first_account, second_account) = two_brand_partner()
    assert_cached(client, second_account)
    partner.brands.remove(second)
    assert client.get(balance_url(second_account)).status_code == 404
    assert client.get(balance_url(first_account)).status_code == 200


def test_key_losing_a_brand_loses_its_accounts_at_once(db):
    _, api_key, client, (_, second), (first_account, second_account) = two_brand_partner()
    assert_cached(client, second_account)
    api_key.brands.remove(second)
    assert client.get(balance_url(second_account)).status_code == 404
    assert client.get(balance_url(first_account)).status_code == 200


def test_partner_brands_cleared_is_401_at_once(db):
    partner, _, client, _, (first_account, _) = two_brand_partner()
    assert_cached(client, first_account)
    partner.brands.clear()
    assert client.get(balance_url(first_account)).status_code == 401


def test_deactivated_partner_is_401_at_once(db):
    partner, _, client, _, (first_account, _) = two_brand_partner()
    assert_cached(client, first_account)
    partner.is_active = False
    partner.save()
    assert client.get(balance_url(first_account)).status_code == 401


def test_deleted_key_is_401_at_once(db):
    _, api_key, client, _, (first_account, _) = two_brand_partner()
    assert_cached(client, first_account)
    api_key.delete()
    assert client.get(balance_url(first_account)).status_code == 401


def test_deleted_brand_leaves_the_scope_at_once(db):
    _, _, client, (_, second), (first_account, second_account) = two_brand_partner()
    assert_cached(client, first_account)
    second_account.brands.clear()  # a brand with accounts cannot be deleted (PROTECT)
    second_id = second.pk  # delete() sets it to None
    second.delete()
    assert client.get(balance_url(first_account)).status_code == 200
    principal = services._authenticated and next(iter(services._authenticated.values()))[1]
    assert principal and second_id not in principal.brand_ids


def test_capability_taken_away_is_403_at_once(db):
    _, api_key, client, _, (first_account, _) = two_brand_partner()
    assert_cached(client, first_account)
    api_key_update(api_key=api_key, capabilities=["debits"])
    response = client.get(balance_url(first_account))
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
