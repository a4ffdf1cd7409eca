"""Scope isolation: partner A cannot read, list, post to or detect partner B's objects."""

import pytest

from ledger.models import Hold, Transaction
from ledger.services import debit_post, hold_create
from tests.api.helpers import error_of, post


@pytest.fixture
def b_objects(side_b):
    txn = debit_post(account=side_b.account, amount="5.00", brand=side_b.brand)
    hold = hold_create(account=side_b.account, amount="5.00", brand=side_b.brand)
    return {
        "client": side_b.account.client_id,
        "account": side_b.account.pk,
        "transaction": txn.pk,
        "hold": hold.pk,
        "brand": side_b.brand.pk,
        "service": side_b.service.pk,
    }


def test_partner_cannot_read_anothers_objects(side_a, b_objects):
    paths = [
        f"/api/v1/clients/{b_objects['client']}/",
        f"/api/v1/accounts/{b_objects['account']}/",
        f"/api/v1/accounts/{b_objects['account']}/balance/",
        f"/api/v1/accounts/{b_objects['account']}/entries/",
        f"/api/v1/transactions/{b_objects['transaction']}/",
        f"/api/v1/holds/{b_objects['hold']}/",
        f"/api/v1/brands/{b_objects['brand']}/",
        f"/api/v1/services/{b_objects['service']}/",
    ]
    missing = side_a.api.get("/api/v1/accounts/999999999/").json()
    for path in paths:
        response = side_a.api.get(path)
        # Exactly what a non-existent id answers: existence is not revealed.
        assert response.status_code == 404, path
        assert response.json() == missing, path


def test_partner_lists_never_include_anothers_objects(side_a, side_b, b_objects):
    lists = {
        "/api/v1/clients/": "client",
        "/api/v1/accounts/": "account",
        "/api/v1/transactions/": "transaction",
        "/api/v1/holds/": "hold",
        "/api/v1/brands/": "brand",
        "/api/v1/services/": "service",
    }
    for path, kind in lists.items():
        ids = {row["id"] for row in side_a.api.get(path, {"page_size": 500}).json()["results"]}
        assert b_objects[kind] not in ids, path
        # Filtering by B's ids gives an empty list, not an error that tells.
    for query in (
        f"/api/v1/transactions/?account={b_objects['account']}",
        f"/api/v1/accounts/?client={b_objects['client']}",
        f"/api/v1/holds/?account={b_objects['account']}",
        f"/api/v1/services/?brand={b_objects['brand']}",
        f"/api/v1/accounts/?brand={b_objects['brand']}",
    ):
        response = side_a.api.get(query)
        assert response.status_code == 200 and response.json()["results"] == [], query


def test_partner_cannot_post_to_anothers_accounts(side_a, side_b, b_objects):
    before = (Transaction.objects.count(), Hold.objects.count())
    b_account, a_account = b_objects["account"], side_a.account.pk
    attempts = [
        ("/api/v1/payments/", {"account": b_account, "amount": "1.00", "channel": "bank"}),
        ("/api/v1/debits/", {"account": b_account, "amount": "1.00", "brand": side_a.brand.pk}),
        ("/api/v1/accruals/", {"account": b_account, "amount": "1.00", "brand": side_a.brand.pk}),
        # Its own account, but on behalf of a brand that is not its own.
        ("/api/v1/debits/", {"account": a_account, "amount": "1.00", "brand": b_objects["brand"]}),
        ("/api/v1/holds/", {"account": b_account, "amount": "1.00", "brand": side_a.brand.pk}),
        ("/api/v1/refunds/", {"account": b_account, "amount": "1.00", "channel": "bank"}),
        (
            "/api/v1/transfers/",
            {"from_account": a_account, "to_account": b_account, "amount": "1.00"},
        ),
        (
            "/api/v1/transfers/",
            {"from_account": b_account, "to_account": a_account, "amount": "1.00"},
        ),
        (f"/api/v1/transactions/{b_objects['transaction']}/reverse/", {"reason": "mine now"}),
        (f"/api/v1/holds/{b_objects['hold']}/capture/", {}),
        (f"/api/v1/holds/{b_objects['hold']}/void/", {}),
        (f"/api/v1/accounts/{b_account}/block/", {"reason": "x"}),
        (f"/api/v1/accounts/{b_account}/unblock/", {}),
        ("/api/v1/accounts/", {"client": b_objects["client"]}),
        ("/api/v1/accounts/", {"client": side_a.account.client_id, "parent": b_account}),
    ]
    for path, body in attempts:
        response = post(side_a.api, path, body)
        assert error_of(response) == (404, "not_found"), (path, body, response.json())
    patch = side_a.api.patch(f"/api/v1/accounts/{b_account}/", {"name": "x"}, format="json")
    assert patch.status_code == 404
    patch = side_a.api.patch(
        f"/api/v1/clients/{b_objects['client']}/", {"name": "x"}, format="json"
    )
    assert patch.status_code == 404
    assert (Transaction.objects.count(), Hold.objects.count()) == before
    side_b.account.refresh_from_db()
    assert side_b.account.status == "open"


def test_staff_sees_every_brand(staff_api, side_a, b_objects):
    assert staff_api.get(f"/api/v1/accounts/{b_objects['account']}/").status_code == 200
    ids = {row["id"] for row in staff_api.get("/api/v1/accounts/").json()["results"]}
    assert {side_a.account.pk, b_objects["account"]} <= ids


def test_key_scoped_to_one_of_two_partner_brands(db):
    from access.services import api_key_create, partner_get_or_create
    from tests.api.conftest import api_client
    from tests.factories import AccountFactory, BrandFactory

    food, power = BrandFactory(), BrandFactory()
    partner = partner_get_or_create(name="Both", brands=[food, power])
    _, raw = api_key_create(partner=partner, brands=[food])
    food_account, power_account = AccountFactory(brands=[food]), AccountFactory(brands=[power])
    api = api_client(raw)
    ids = {row["id"] for row in api.get("/api/v1/accounts/").json()["results"]}
    assert food_account.pk in ids and power_account.pk not in ids
