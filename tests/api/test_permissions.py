"""Who may call what: key capabilities and staff permissions, for every served endpoint.

The endpoints come from the OpenAPI schema (``tests.api.endpoints``), so a new
endpoint is covered here as soon as it is served: it must declare what it
needs, a view-only staff user and a key without that capability are refused
with ``403 permission_denied`` and nothing moves, and exactly the declared
permission or capability is enough to get past the check. A staff-only action
(approving a maker-checker request) is refused to every key.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from access.models import ApiKey
from access.services import api_key_authenticate, api_key_create
from core.api.permissions import STAFF_ONLY, ActionPermission
from core.api.principal import ALL_CAPABILITIES, CAPABILITIES
from ledger.models import Transaction
from tests.api.conftest import api_client
from tests.api.endpoints import ENDPOINTS, READS, WRITES, Endpoint
from tests.api.helpers import error_of, post
from tests.factories import AccountFactory, BrandFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
KEYED = [e for e in ENDPOINTS if e.capability != STAFF_ONLY]
STAFF_ONLY_ENDPOINTS = [e for e in ENDPOINTS if e.capability == STAFF_ONLY]


@pytest.fixture
def world(side_a):
    """Objects of partner A for the ids in the paths, and a second account to transfer to."""
    debit = post(
        side_a.api,
        "/api/v1/debits/",
        {"account": side_a.account.pk, "amount": "10.00", "brand": side_a.brand.pk},
    ).json()
    hold = post(
        side_a.api,
        "/api/v1/holds/",
        {"account": side_a.account.pk, "amount": "5.00", "brand": side_a.brand.pk},
    ).json()
    return {
        "accounts": side_a.account.pk,
        "clients": side_a.account.client_id,
        "transactions": debit["id"],
        "holds": hold["id"],
        "brands": side_a.brand.pk,
        "services": side_a.service.pk,
        "other_account": AccountFactory(brands=[side_a.brand]).pk,
    }


def body_for(endpoint: Endpoint, world: dict) -> dict:
    """A request that would succeed if allowed (so a refusal is what keeps it from moving)."""
    account, brand = world["accounts"], world["brands"]
    charge = {"account": account, "amount": "1.00", "brand": brand}
    bodies = {
        "POST /api/v1/payments/": {"account": account, "amount": "1.00", "channel": "bank"},
        "POST /api/v1/refunds/": {"account": account, "amount": "1.00", "channel": "bank"},
        "POST /api/v1/debits/": charge,
        "POST /api/v1/accruals/": charge,
        "POST /api/v1/holds/": charge,
        "POST /api/v1/transfers/": {
            "from_account": account,
            "to_account": world["other_account"],
            "amount": "1.00",
        },
        "POST /api/v1/transactions/{id}/reverse/": {"reason": "test"},
        "POST /api/v1/accounts/{id}/block/": {"reason": "test"},
        "PATCH /api/v1/accounts/{id}/": {"credit_limit": "100000.00"},
        "POST /api/v1/accounts/": {"client": world["clients"]},
        "PATCH /api/v1/clients/{id}/": {"name": "Renamed"},
        "POST /api/v1/clients/": {"kind": "individual", "name": "New client"},
        "POST /api/v1/services/": {"brand": brand, "code": "new", "name": "New"},
        "PATCH /api/v1/services/{id}/": {"name": "Renamed"},
        "POST /api/v1/reports/adhoc/": {"dataset": "entries", "measures": [{"agg": "count"}]},
    }
    return bodies.get(str(endpoint), {})


def query_for(endpoint: Endpoint, world: dict) -> str:
    """Query parameters a read needs to succeed (reports name an account or a period)."""
    period = "from=2026-01-01&to=2026-01-31"
    queries = {
        "GET /api/v1/reports/statement/": f"?account={world['accounts']}&{period}",
        "GET /api/v1/reports/turnover/": f"?{period}",
        "GET /api/v1/reports/statement/pdf/": f"?account={world['accounts']}&{period}",
        "GET /api/v1/reports/revenue/": f"?{period}",
        "GET /api/v1/reports/payments/": f"?{period}",
        "GET /api/v1/reports/invoice-runs/": f"?{period}",
        "GET /api/v1/reports/settlements/": f"?{period}",
    }
    return queries.get(str(endpoint), "")


def call(api: APIClient, endpoint: Endpoint, world: dict):
    url = endpoint.url(world)
    if endpoint.method != "GET":
        return getattr(api, endpoint.method.lower())(url, body_for(endpoint, world), format="json")
    return api.get(url + query_for(endpoint, world))


def staff_client(*permissions: str) -> APIClient:
    user = UserFactory(is_staff=True)
    user.save()
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(db) -> APIClient:
    """A staff user who may view everything and change nothing."""
    user = UserFactory(is_staff=True)
    user.save()
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client = APIClient()
    client.force_login(user)
    return client


def key_client(side, capabilities) -> APIClient:
    _, raw = api_key_create(partner=side.partner, brands=[side.brand], capabilities=capabilities)
    return api_client(raw)


# --------------------------------------------------------------------------- the map


def test_every_served_endpoint_declares_a_capability_and_a_permission(db):
    undeclared = [str(e) for e in ENDPOINTS if e.capability is None]
    assert undeclared == []
    assert {e.capability for e in KEYED} == set(CAPABILITIES)
    assert STAFF_ONLY not in CAPABILITIES
    # Reads need ``read``; reports (reads too) need their own ``reports``.
    assert {e.capability for e in READS if e.resource != "reports"} == {"read"}
    # ... and the ad-hoc builder is for staff sessions only.
    assert {e.capability for e in READS if e.resource == "reports"} == {"reports", STAFF_ONLY}
    assert "read" not in {e.capability for e in WRITES}
    for endpoint in ENDPOINTS:
        app_label, _, codename = endpoint.permission.partition(".")
        assert Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).exists(), endpoint


ROW = re.compile(r"^\| `(GET|POST|PATCH|PUT|DELETE) (/\S*)` \| `(\w+)` \| `([\w.]+)` \|$")


def test_docs_list_what_every_endpoint_needs(db):
    text = (ROOT / "docs" / "api.md").read_text()
    documented = {
        (method, f"/api/v1{path}", capability, permission)
        for method, path, capability, permission in (
            m.groups() for m in map(ROW.match, text.splitlines()) if m
        )
    }
    served = {(e.method, e.path, e.capability, e.permission) for e in ENDPOINTS}
    assert served - documented == set(), "served but not in the docs/api.md table"
    assert documented - served == set(), "in the docs/api.md table but not so in the code"


def test_an_action_a_view_does_not_map_is_refused():
    class Request:
        method = "POST"
        auth = None
        user = UserFactory.build(is_staff=True, is_superuser=True)

    class View:
        http_method_names = ["post"]
        action_map = {"post": "create"}
        action = "create"
        required = {"list": ("read", "ledger.view_transaction")}

    permission = ActionPermission()
    assert permission.has_permission(Request(), View()) is False
    assert "create" in permission.message


# --------------------------------------------------------------------------- staff


@pytest.mark.parametrize("endpoint", WRITES, ids=str)
def test_view_only_staff_is_refused_every_write(viewer, world, unchanged, endpoint):
    with unchanged():
        response = call(viewer, endpoint, world)
        assert error_of(response) == (403, "permission_denied"), response.json()


@pytest.mark.parametrize("endpoint", READS, ids=str)
def test_view_only_staff_reads(viewer, world, endpoint):
    response = call(viewer, endpoint, world)
    expected = 404 if "{id}" in endpoint.path and endpoint.resource not in world else 200
    assert response.status_code == expected, response.content[:300]


@pytest.mark.parametrize("endpoint", WRITES, ids=str)
def test_staff_with_exactly_the_endpoints_permission_gets_past_the_check(world, endpoint):
    response = call(staff_client(endpoint.permission), endpoint, world)
    assert response.status_code != 403, response.json()


def test_staff_with_only_the_payment_permission_posts_payments_and_nothing_else(
    side_a, world, unchanged
):
    clerk = staff_client("ledger.post_payment")
    response = post(
        clerk,
        "/api/v1/payments/",
        {"account": side_a.account.pk, "amount": "25.00", "channel": "cash"},
    )
    assert response.status_code == 201, response.json()
    assert Transaction.objects.get(pk=response.json()["id"]).caller.startswith("user:")
    with unchanged():
        refund = post(
            clerk,
            "/api/v1/refunds/",
            {"account": side_a.account.pk, "amount": "1.00", "channel": "cash"},
        )
        assert error_of(refund) == (403, "permission_denied")
        assert error_of(clerk.get("/api/v1/transactions/")) == (403, "permission_denied")
        limit = clerk.patch(
            f"/api/v1/accounts/{side_a.account.pk}/", {"credit_limit": "100000"}, format="json"
        )
        assert error_of(limit) == (403, "permission_denied")


def test_staff_with_the_change_permission_also_reads_as_in_the_admin(side_a):
    editor = staff_client("accounts.change_account")
    assert editor.get(f"/api/v1/accounts/{side_a.account.pk}/").status_code == 200


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("endpoint", KEYED, ids=str)
def test_a_key_without_the_endpoints_capability_is_refused(side_a, world, unchanged, endpoint):
    lacking = key_client(side_a, ALL_CAPABILITIES - {endpoint.capability})
    with unchanged():
        response = call(lacking, endpoint, world)
        assert error_of(response) == (403, "permission_denied"), response.json()
        assert endpoint.capability in response.json()["message"]
    only = key_client(side_a, {endpoint.capability})
    assert call(only, endpoint, world).status_code != 403


@pytest.mark.parametrize("endpoint", STAFF_ONLY_ENDPOINTS, ids=str)
def test_no_key_calls_a_staff_only_endpoint(side_a, world, unchanged, endpoint):
    every = key_client(side_a, ALL_CAPABILITIES)
    with unchanged():
        response = call(every, endpoint, world)
        assert error_of(response) == (403, "permission_denied"), response.json()
        assert "staff" in response.json()["message"]


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_each_capability_alone_opens_only_its_own_endpoints(side_a, world, capability):
    only = key_client(side_a, {capability})
    for endpoint in ENDPOINTS:
        if endpoint.capability != capability:
            response = call(only, endpoint, world)
            assert error_of(response) == (403, "permission_denied"), endpoint


def test_create_api_key_can_narrows_the_key(db, capsys):
    BrandFactory(code="FOOD")
    call_command("create_api_key", "--partner", "Courier", "--brands", "FOOD")
    full = api_key_authenticate(capsys.readouterr().out.strip().splitlines()[-1])
    assert full.capabilities == ALL_CAPABILITIES
    call_command(
        "create_api_key", "--partner", "Courier", "--brands", "FOOD", "--can", "payments,debits"
    )
    lines = capsys.readouterr().out.strip().splitlines()
    narrow = api_key_authenticate(lines[-1])
    assert narrow.capabilities == {"payments", "debits"}
    assert "payments, debits" in lines[0]
    api = api_client(lines[-1])
    assert error_of(api.get("/api/v1/accounts/")) == (403, "permission_denied")
    with pytest.raises(CommandError, match="refund"):
        call_command(
            "create_api_key", "--partner", "Courier", "--brands", "FOOD", "--can", "refund"
        )
    assert ApiKey.objects.count() == 2


def test_capabilities_edited_in_the_admin_apply_at_once(client, side_a):
    admin = UserFactory(is_staff=True, is_superuser=True)
    admin.save()
    client.force_login(admin)
    assert side_a.api.get("/api/v1/accounts/").status_code == 200
    key = ApiKey.objects.get(partner=side_a.partner)
    page = client.get(f"/admin/access/apikey/{key.pk}/change/").content.decode()
    assert 'value="refunds"' in page
    response = client.post(
        f"/admin/access/apikey/{key.pk}/change/", {"name": "narrowed", "capabilities": ["payments"]}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.capabilities == ["payments"]
    assert error_of(side_a.api.get("/api/v1/accounts/")) == (403, "permission_denied")


def test_a_method_an_endpoint_does_not_serve_is_still_405(side_a):
    url = f"/api/v1/accounts/{side_a.account.pk}/"
    assert side_a.api.put(url, {}, format="json").status_code == 405
    assert side_a.api.delete(url).status_code == 405
    assert side_a.api.get("/api/v1/usage/").status_code == 405
