"""The ad-hoc builder: whitelisted definitions compiled to SQL, saved and shared.

Ledger: x pays 100 (bank) and is charged 30 (brand ADA, water) and 20 (ADA, no service);
y (a legal entity) pays 50 (card) and is charged 12.50 (ADB).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission

from ledger.models import Entry, Transaction
from ledger.services import accrual_post, payment_post
from tests.factories import (
    AccountFactory,
    BrandFactory,
    LegalEntityFactory,
    ServiceFactory,
    UserFactory,
)
from tests.reports.test_api import partner_client, staff_client

ADHOC = "/api/v1/reports/adhoc/"


@pytest.fixture
def ledger(db):
    a, b = BrandFactory(code="ADA"), BrandFactory(code="ADB")
    water = ServiceFactory(brand=a, code="water")
    x = AccountFactory(brands=[a])
    y = AccountFactory(brands=[b], client=LegalEntityFactory())
    payment_post(account=x, amount="100.00", channel="bank")
    accrual_post(account=x, amount="30.00", brand=a, service=water)
    accrual_post(account=x, amount="20.00", brand=a)
    payment_post(account=y, amount="50.00", channel="card")
    accrual_post(account=y, amount="12.50", brand=b)
    return {"a": a, "b": b, "x": x, "y": y}


@pytest.fixture
def staff(db):
    return staff_client(UserFactory(is_staff=True, is_superuser=True))


def test_group_client_entries_by_brand_and_kind(ledger, staff):
    definition = {
        "dataset": "entries",
        "dimensions": ["brand", "kind"],
        "measures": [{"agg": "sum", "field": "amount"}, {"agg": "count"}],
        "filters": [{"field": "account_kind", "op": "eq", "value": "client"}],
    }
    r = staff.post(ADHOC, definition, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    rows = [(row["brand"], row["kind"], row["sum_amount"], row["count"]) for row in body["rows"]]
    assert rows == [
        ("ADA", "accrual", "-50.00", 2),
        ("ADB", "accrual", "-12.50", 1),
        (None, "payment", "150.00", 2),
    ]
    assert body["totals"] == {"sum_amount": "87.50", "count": 5}
    assert body["chart"]["labels"] == ["ADA", "ADB", "None"]
    assert [c["key"] for c in body["columns"]] == ["brand", "kind", "sum_amount", "count"]


def test_measures_by_client_kind_with_filters_and_order(ledger, staff):
    definition = {
        "dataset": "transactions",
        "dimensions": ["client_kind"],
        "measures": [{"agg": "avg", "field": "amount"}, {"agg": "max", "field": "amount"}],
        "filters": [
            {"field": "kind", "op": "in", "value": ["payment", "accrual"]},
            {"field": "amount", "op": "gte", "value": "12.50"},
        ],
        "order_by": ["-max_amount"],
    }
    rows = staff.post(ADHOC, definition, format="json").json()["rows"]
    assert [(r["client_kind"], Decimal(r["avg_amount"]), r["max_amount"]) for r in rows] == [
        ("individual", Decimal("50"), "100.00"),
        ("legal_entity", Decimal("31.25"), "50.00"),
    ]


def test_dimensions_alone_list_rows_and_export_streams_them(ledger, staff):
    definition = {"dataset": "invoices", "dimensions": ["brand"]}
    assert staff.post(ADHOC, definition, format="json").json()["rows"] == []
    definition = {
        "dataset": "entries",
        "dimensions": ["entry", "account", "kind"],
        "filters": [{"field": "account_kind", "op": "eq", "value": "client"}],
    }
    r = staff.post(ADHOC + "?format=csv", definition, format="json")
    assert r.status_code == 200
    parsed = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert parsed[0] == ["Entry", "Account", "Operation"]
    expected = Entry.objects.filter(balance_after__isnull=False).order_by("id")
    assert parsed[1:] == [[str(e.pk), e.account.number, e.transaction.kind] for e in expected]


INJECTIONS = [
    ({"dataset": "ledger_entry; DROP TABLE ledger_entry", "dimensions": ["kind"]}, "dataset"),
    ({"dataset": "entries", "dimensions": ["kind; DROP TABLE ledger_entry --"]}, "dimensions"),
    ({"dataset": "entries", "dimensions": ["e.amount"]}, "dimensions"),
    (
        {"dataset": "entries", "measures": [{"agg": "sum", "field": "amount) FROM x --"}]},
        "measures",
    ),
    ({"dataset": "entries", "measures": [{"agg": "sum(1); --", "field": "amount"}]}, "measures"),
    (
        {"dataset": "entries", "dimensions": ["kind"],
         "filters": [{"field": "kind", "op": "= 'x' OR 1=1 --", "value": "a"}]},
        "filters",
    ),
    (
        {"dataset": "entries", "dimensions": ["kind"],
         "filters": [{"field": "1=1) OR (1", "op": "eq", "value": "a"}]},
        "filters",
    ),
    ({"dataset": "entries", "dimensions": ["kind"], "order_by": ["1; DROP TABLE x"]}, "order_by"),
    ({"dataset": "entries", "dimensions": ["kind"], "limit": "1; DROP TABLE x"}, "limit"),
    ({"dataset": "entries", "dimensions": ["kind"], "sql": "SELECT 1"}, "definition"),
    ({"dataset": "accounts", "measures": [{"agg": "sum", "field": "password"}]}, "measures"),
    (
        {"dataset": "entries", "dimensions": ["day"],
         "filters": [{"field": "day", "op": "gte", "value": "2026-01-01'; --"}]},
        "filters",
    ),
    ({"dataset": "entries"}, "dimensions"),
    (["dataset", "entries"], "definition"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "part"), INJECTIONS)
def test_anything_outside_the_whitelist_is_400_naming_the_part(ledger, staff, definition, part):
    before = (Entry.objects.count(), Transaction.objects.count())
    r = staff.post(ADHOC, definition, format="json")
    assert (r.status_code, r.json()["code"]) == (400, "validation_error"), r.content
    assert part in r.json()["details"]
    assert (Entry.objects.count(), Transaction.objects.count()) == before


def test_a_hostile_text_value_is_only_a_value(ledger, staff):
    definition = {
        "dataset": "entries",
        "measures": [{"agg": "count"}],
        "filters": [{"field": "kind", "op": "eq", "value": "x' OR '1'='1"}],
    }
    r = staff.post(ADHOC, definition, format="json")
    assert r.json()["rows"] == [{"count": 0}]
    assert Entry.objects.count() == 10


def test_the_builder_is_for_staff_sessions_only(ledger):
    api = partner_client(ledger["a"])
    r = api.post(ADHOC, {"dataset": "entries", "dimensions": ["kind"]}, format="json")
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    assert api.get(ADHOC + "datasets/").status_code == 403


def test_datasets_list_the_whitelist(staff):
    body = staff.get(ADHOC + "datasets/").json()
    assert set(body) == {"entries", "transactions", "invoices", "accounts"}
    assert {"brand", "service", "kind", "channel", "day", "month", "client_kind"} <= set(
        body["entries"]["dimensions"]
    )
    assert body["entries"]["aggregates"] == ["sum", "avg", "min", "max", "count"]


def test_save_share_run_and_export_a_definition(ledger):
    owner = UserFactory(is_staff=True, is_superuser=True)
    reader = UserFactory(is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_reports"))
    team = Group.objects.create(name="accountants")
    colleague = UserFactory(is_staff=True)
    colleague.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_reports", "change_savedreport"])
    )
    colleague.groups.add(team)
    stranger = UserFactory(is_staff=True)
    stranger.user_permissions.add(Permission.objects.get(codename="view_reports"))
    definition = {
        "dataset": "entries",
        "dimensions": ["kind"],
        "measures": [{"agg": "sum", "field": "credit"}],
        "filters": [{"field": "account_kind", "op": "eq", "value": "client"}],
    }
    api = staff_client(owner)
    r = api.post(
        "/api/v1/reports/saved/",
        {"name": "Credits by kind", "definition": definition,
         "shared_with_users": [reader.pk], "shared_with_groups": [team.pk]},
        format="json",
    )  # fmt: skip
    assert r.status_code == 201, r.content
    saved = r.json()["id"]
    for user in (reader, colleague):
        client = staff_client(user)
        assert [s["id"] for s in client.get("/api/v1/reports/saved/").json()["results"]] == [saved]
        rows = client.get(f"/api/v1/reports/saved/{saved}/run/").json()["rows"]
        assert {r["kind"]: r["sum_credit"] for r in rows} == {
            "accrual": "0.00",
            "payment": "150.00",
        }
    outsider = staff_client(stranger)
    assert outsider.get("/api/v1/reports/saved/").json()["results"] == []
    assert outsider.get(f"/api/v1/reports/saved/{saved}/run/").status_code == 404
    # Only the owner changes it, even for a colleague holding the change permission.
    r = staff_client(colleague).patch(
        f"/api/v1/reports/saved/{saved}/", {"name": "Mine now"}, format="json"
    )
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    r = api.patch(
        f"/api/v1/reports/saved/{saved}/",
        {"definition": {**definition, "dimensions": ["kind; DROP TABLE x"]}},
        format="json",
    )
    assert (r.status_code, r.json()["code"]) == (400, "validation_error")
    r = api.get(f"/api/v1/reports/saved/{saved}/definition/")
    assert json.loads(r.content) == {"name": "Credits by kind", **definition}
    assert api.delete(f"/api/v1/reports/saved/{saved}/").status_code == 204
    assert api.get(f"/api/v1/reports/saved/{saved}/").status_code == 404
