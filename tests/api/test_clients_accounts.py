"""Reference data, clients and accounts through the HTTP layer."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Client
from core.validators import inn_complete
from tests.api.helpers import error_of, post
from tests.factories import AccountFactory, ServiceFactory


def test_brands_list_only_the_partners_own(side_a, side_b):
    results = side_a.api.get("/api/v1/brands/").json()["results"]
    assert [b["code"] for b in results] == [side_a.brand.code]
    assert set(results[0]) == {"id", "code", "name", "legal_name", "tax_id"}
    assert side_a.api.get(f"/api/v1/brands/{side_a.brand.pk}/").status_code == 200


def test_services_filter_by_brand(side_a):
    other = ServiceFactory(brand=side_a.brand, code="zz")
    results = side_a.api.get(f"/api/v1/services/?brand={side_a.brand.pk}").json()["results"]
    assert {s["id"] for s in results} == {side_a.service.pk, other.pk}
    assert set(results[0]) == {"id", "code", "name", "brand", "unit", "vat_rate"}
    assert results[0]["vat_rate"] == "20.00"


def test_client_create_is_visible_to_the_partner_and_patchable(side_a, side_b):
    inn = inn_complete("7707083893"[:10])
    response = post(
        side_a.api,
        "/api/v1/clients/",
        {"kind": "individual", "name": "Ivan Petrov", "tax_id": inn, "phone": "+79990001122"},
    )
    assert response.status_code == 201, response.json()
    client_id = response.json()["id"]
    assert side_a.api.get(f"/api/v1/clients/{client_id}/").status_code == 200
    assert side_b.api.get(f"/api/v1/clients/{client_id}/").status_code == 404
    patched = side_a.api.patch(
        f"/api/v1/clients/{client_id}/", {"email": "ivan@example.com"}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["email"] == "ivan@example.com"
    found = side_a.api.get("/api/v1/clients/?q=petrov").json()["results"]
    assert [c["id"] for c in found] == [client_id]
    assert side_a.api.get("/api/v1/clients/?q=79990001122").json()["results"]


def test_client_with_bad_inn_is_400_and_creates_nothing(side_a):
    before = Client.objects.count()
    response = post(
        side_a.api,
        "/api/v1/clients/",
        {"kind": "individual", "name": "X", "tax_id": "123456789012"},
    )
    assert error_of(response) == (400, "validation_error")
    assert "tax_id" in response.json()["details"]
    legal = post(
        side_a.api,
        "/api/v1/clients/",
        {"kind": "legal_entity", "name": "Y", "tax_id": inn_complete("770708389"[:10] + "0")},
    )
    assert error_of(legal) == (400, "validation_error")  # 12-digit INN for an organisation
    assert Client.objects.count() == before


def test_account_create_with_limits_and_default_brands(side_a):
    client_id = post(side_a.api, "/api/v1/clients/", {"kind": "individual", "name": "Anna"}).json()[
        "id"
    ]
    response = post(
        side_a.api,
        "/api/v1/accounts/",
        {
            "client": client_id,
            "credit_limit": "500.00",
            "credit_period_days": 30,
            "write_off_limit_day": "100.00",
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["brands"] == [side_a.brand.code] and body["currency"] == "RUB"
    assert (body["credit_limit"], body["write_off_limit_day"]) == ("500.00", "100.00")
    assert body["write_off_limit_month"] is None and body["status"] == "open"
    patched = side_a.api.patch(
        f"/api/v1/accounts/{body['id']}/",
        {"write_off_limit_day": None, "write_off_limit_month": "900.00"},
        format="json",
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["write_off_limit_day"] is None
    assert patched.json()["write_off_limit_month"] == "900.00"


def test_account_create_refuses_foreign_brand_and_bad_limits(side_a, side_b):
    client = side_a.account.client
    foreign = post(
        side_a.api, "/api/v1/accounts/", {"client": client.pk, "brands": [side_b.brand.code]}
    )
    assert error_of(foreign) == (400, "validation_error")
    negative = post(side_a.api, "/api/v1/accounts/", {"client": client.pk, "credit_limit": "-1"})
    assert error_of(negative) == (400, "validation_error")
    huge = post(
        side_a.api, "/api/v1/accounts/", {"client": client.pk, "credit_period_days": 10**12}
    )
    assert error_of(huge) == (400, "validation_error")
    assert Account.objects.filter(client=client).count() == 1


def test_partner_patch_of_brands_keeps_other_brands_links(side_a, side_b):
    shared = AccountFactory(brands=[side_a.brand, side_b.brand])
    response = side_a.api.patch(
        f"/api/v1/accounts/{shared.pk}/", {"brands": [side_a.brand.code]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["brands"] == [side_a.brand.code]  # only its own are shown
    assert set(shared.brands.values_list("code", flat=True)) == {
        side_a.brand.code,
        side_b.brand.code,
    }
    emptied = side_a.api.patch(f"/api/v1/accounts/{shared.pk}/", {"brands": []}, format="json")
    assert error_of(emptied) == (400, "validation_error")


def test_sub_account_via_api_and_balance_shows_payer_funds(side_a):
    response = post(
        side_a.api,
        "/api/v1/accounts/",
        {
            "client": side_a.account.client.pk,
            "parent": side_a.account.pk,
            "write_off_limit_day": "50.00",
        },
    )
    assert response.status_code == 201, response.json()
    child = response.json()
    assert child["parent"] == side_a.account.pk
    balance = side_a.api.get(f"/api/v1/accounts/{child['id']}/balance/").json()
    assert balance["balance"] == "1000.00" and balance["available"] == "1000.00"
    assert balance["write_off_remaining"] == "50.00"
    assert balance["payer"] == side_a.account.pk
    listed = side_a.api.get(f"/api/v1/accounts/?parent={side_a.account.pk}").json()["results"]
    assert [a["id"] for a in listed] == [child["id"]]


def test_block_and_unblock(side_a):
    url = f"/api/v1/accounts/{side_a.account.pk}"
    no_reason = post(side_a.api, f"{url}/block/", {})
    assert error_of(no_reason) == (400, "validation_error")
    blocked = post(side_a.api, f"{url}/block/", {"reason": "chargeback"})
    assert blocked.status_code == 200 and blocked.json()["status"] == "blocked"
    assert error_of(post(side_a.api, f"{url}/block/", {"reason": "again"})) == (
        409,
        "invalid_status_transition",
    )
    assert side_a.api.get("/api/v1/accounts/?status=blocked").json()["results"][0]["id"] == (
        side_a.account.pk
    )
    unblocked = post(side_a.api, f"{url}/unblock/")
    assert unblocked.status_code == 200 and unblocked.json()["status"] == "open"


def test_balance_at_a_past_moment_and_entries_window(side_a):
    url = f"/api/v1/accounts/{side_a.account.pk}"
    before_debit = timezone.now()
    post(
        side_a.api,
        "/api/v1/debits/",
        {"account": side_a.account.pk, "amount": "100.00", "brand": side_a.brand.pk, "memo": "m"},
    )
    now = side_a.api.get(f"{url}/balance/").json()
    assert (now["balance"], now["currency"]) == ("900.00", "RUB")
    past = side_a.api.get(f"{url}/balance/", {"at": before_debit.isoformat()}).json()
    assert Decimal(past["balance"]) == Decimal("1000.00")
    ancient = side_a.api.get(f"{url}/balance/", {"at": "2000-01-01T00:00:00+00:00"}).json()
    assert ancient["balance"] == "0.00"
    assert error_of(side_a.api.get(f"{url}/balance/?at=yesterday")) == (400, "validation_error")
    entries = side_a.api.get(f"{url}/entries/").json()["results"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in entries] == [
        ("debit", "-100.00", "900.00"),
        ("payment", "1000.00", "1000.00"),
    ]
    assert entries[0]["memo"] == "m"
    recent = side_a.api.get(f"{url}/entries/", {"from": before_debit.isoformat()}).json()
    assert [e["kind"] for e in recent["results"]] == ["debit"]
    old = side_a.api.get(f"{url}/entries/", {"to": before_debit.isoformat()}).json()
    assert [e["kind"] for e in old["results"]] == ["payment"]
    later = (timezone.now() + timedelta(days=1)).isoformat()
    assert side_a.api.get(f"{url}/entries/", {"from": later}).json()["results"] == []
