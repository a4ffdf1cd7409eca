"""The report endpoints against a ledger whose figures are worked out by hand.

The ledger (RUB, the operator's time zone, Europe/Moscow):

    x (brand A)  10 Feb payment 100 | 20 Feb accrual 30 (A, svc) | 5 Mar debit 20 (A, svc)
                 2 Apr payment 5
    y (brand A)  15 Mar payment 50 | 31 Mar 23:30 accrual 80 (A)
    z (brand A)   1 Jan accrual 40 (A) | 1 Feb accrual 40 (A) | 15 Feb payment 30
    w (brand B)  10 Mar payment 7

Committed for real (``transaction=True``): the projector reads what is committed.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from access.services import api_key_create, partner_get_or_create
from ledger.services import accrual_post, debit_post, payment_post
from reports.projections import projections_update
from tests.api.conftest import api_client
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

MSK = ZoneInfo("Europe/Moscow")
D = Decimal


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=MSK)


@pytest.fixture
def book():
    a, b = BrandFactory(code="BRA"), BrandFactory(code="BRB")
    svc = ServiceFactory(brand=a, code="water")
    x, y, z = (AccountFactory(brands=[a]) for _ in range(3))
    w = AccountFactory(brands=[b])
    postings = [
        (at(1, 1), lambda: accrual_post(account=z, amount="40.00", brand=a)),
        (at(2, 1), lambda: accrual_post(account=z, amount="40.00", brand=a)),
        (at(2, 10), lambda: payment_post(account=x, amount="100.00", channel="bank")),
        (at(2, 15), lambda: payment_post(account=z, amount="30.00", channel="bank")),
        (at(2, 20), lambda: accrual_post(account=x, amount="30.00", brand=a, service=svc)),
        (at(3, 5), lambda: debit_post(account=x, amount="20.00", brand=a, service=svc)),
        (at(3, 10), lambda: payment_post(account=w, amount="7.00", channel="card")),
        (at(3, 15), lambda: payment_post(account=y, amount="50.00", channel="bank")),
        (at(3, 31, 23, 30), lambda: accrual_post(account=y, amount="80.00", brand=a)),
        (at(4, 2), lambda: payment_post(account=x, amount="5.00", channel="bank")),
    ]
    for moment, post in postings:
        with mock.patch("ledger.services.timezone.now", return_value=moment):
            post()
    projections_update()
    return {"a": a, "b": b, "svc": svc, "x": x, "y": y, "z": z, "w": w}


@pytest.fixture
def staff():
    return staff_client(UserFactory(is_staff=True, is_superuser=True))


def staff_client(user):
    user.save()  # the factory sets the password without saving; sessions check its hash
    client = api_client()
    client.force_login(user)
    return client


def partner_client(brand, capabilities=None):
    partner = partner_get_or_create(name=f"partner {brand.code}", brands=[brand])
    _, raw = api_key_create(partner=partner, brands=[brand], capabilities=capabilities)
    return api_client(raw)


def test_statement_opening_movements_and_closing(book, staff):
    x = book["x"]
    r = staff.get(f"/api/v1/reports/statement/?account={x.pk}&from=2026-03-01&to=2026-03-31")
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["account"], body["number"], body["currency"]) == (x.pk, x.number, "RUB")
    assert (body["opening"], body["credit"], body["debit"], body["closing"]) == (
        "70.00",
        "0.00",
        "20.00",
        "50.00",
    )
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in body["entries"]] == [
        ("debit", "-20.00", "50.00")
    ]
    r = staff.get(f"/api/v1/reports/statement/?account={x.pk}&from=2026-02-01&to=2026-04-30")
    body = r.json()
    assert (body["opening"], body["credit"], body["debit"], body["closing"]) == (
        "0.00",
        "105.00",
        "50.00",
        "55.00",
    )
    assert len(body["entries"]) == 4


def test_statement_day_bounds_are_the_operators_days(book, staff):
    y = book["y"]
    # 31 March 23:30 Moscow is 20:30 UTC: it belongs to 31 March, not to 1 April.
    r = staff.get(f"/api/v1/reports/statement/?account={y.pk}&from=2026-04-01&to=2026-04-30")
    body = r.json()
    assert (body["opening"], body["closing"], body["entries"]) == ("-30.00", "-30.00", [])


def test_turnover_per_account_for_a_whole_month(book, staff):
    r = staff.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&group_by=account")
    assert r.status_code == 200, r.content
    rows = {row["key"]: row for row in r.json()["rows"]}
    x, y, z, w = (book[k] for k in "xyzw")
    pick = ("opening", "credit", "debit", "closing")
    assert tuple(rows[x.number][k] for k in pick) == ("70.00", "0.00", "20.00", "50.00")
    assert tuple(rows[y.number][k] for k in pick) == ("0.00", "50.00", "80.00", "-30.00")
    assert tuple(rows[z.number][k] for k in pick) == ("-50.00", "0.00", "0.00", "-50.00")
    assert tuple(rows[w.number][k] for k in pick) == ("0.00", "7.00", "0.00", "7.00")
    assert rows[x.number]["id"] == x.pk
    assert r.json()["totals"] == {
        "currency": "RUB",
        "opening": "20.00",
        "credit": "57.00",
        "debit": "100.00",
        "closing": "-23.00",
    }


def test_turnover_per_account_with_partial_months_at_both_ends(book, staff):
    r = staff.get("/api/v1/reports/turnover/?from=2026-02-15&to=2026-04-01&group_by=account")
    rows = {row["key"]: row for row in r.json()["rows"]}
    x, z = book["x"], book["z"]
    pick = ("opening", "credit", "debit", "closing")
    # x: 100 in on 10 Feb is before; 30 + 20 out inside; 5 in on 2 Apr is after.
    assert tuple(rows[x.number][k] for k in pick) == ("100.00", "0.00", "50.00", "50.00")
    # z: -80 before 15 Feb, the 30 payment on 15 Feb is inside.
    assert tuple(rows[z.number][k] for k in pick) == ("-80.00", "30.00", "0.00", "-50.00")


def test_turnover_per_brand_and_per_service(book, staff):
    r = staff.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&group_by=brand")
    rows = {row["key"]: row for row in r.json()["rows"]}
    pick = ("opening", "credit", "debit", "closing")
    # Brand A: before March -30 (x) - 80 (z); in March 20 (x) + 80 (y) out.
    assert tuple(rows["BRA"][k] for k in pick) == ("-110.00", "0.00", "100.00", "-210.00")
    # Payments carry no brand: 100 + 30 before March, 7 + 50 in March.
    assert tuple(rows["(no brand)"][k] for k in pick) == ("130.00", "57.00", "0.00", "187.00")
    r = staff.get(
        f"/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&group_by=service"
        f"&brand={book['a'].pk}"
    )
    rows = {row["key"]: row for row in r.json()["rows"]}
    assert tuple(rows["BRA/water"][k] for k in pick) == ("-30.00", "0.00", "20.00", "-50.00")
    assert tuple(rows["(no service)"][k] for k in pick) == ("-80.00", "0.00", "80.00", "-160.00")


def test_debt_aging_buckets_by_the_oldest_unpaid_charge(book, staff):
    r = staff.get("/api/v1/reports/debt-aging/?at=2026-04-10")
    assert r.status_code == 200, r.content
    rows = {row["number"]: row for row in r.json()["rows"]}
    y, z = book["y"], book["z"]
    assert set(rows) == {y.number, z.number}  # x and w are in credit
    # y owes 30 of the 80 charged on 31 March: 10 days old.
    assert (rows[y.number]["debt"], rows[y.number]["oldest_unpaid_on"]) == ("30.00", "2026-03-31")
    assert (rows[y.number]["age_days"], rows[y.number]["bucket"]) == (10, "0-30")
    # z owes 50: the 40 of 1 Feb and 10 of the 40 of 1 January (payments settle the oldest).
    assert (rows[z.number]["debt"], rows[z.number]["oldest_unpaid_on"]) == ("50.00", "2026-01-01")
    assert rows[z.number]["bucket"] == "90+"
    assert r.json()["totals"] == {
        "debt": "80.00",
        "buckets": {"0-30": "30.00", "31-60": "0.00", "61-90": "0.00", "90+": "50.00"},
    }
    r = staff.get("/api/v1/reports/debt-aging/?at=2026-03-20")
    rows = {row["number"]: row for row in r.json()["rows"]}
    assert set(rows) == {z.number}
    assert rows[z.number]["age_days"] == 78 and rows[z.number]["bucket"] == "61-90"


def test_turnover_exports_parse_back_to_the_json_rows(book, staff):
    url = "/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&group_by=account"
    rows = staff.get(url).json()["rows"]
    r = staff.get(url + "&format=csv")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/csv")
    parsed = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert parsed[0] == [
        "Id",
        "Key",
        "Currency",
        "Opening",
        "Credit (in)",
        "Debit (out)",
        "Closing",
    ]
    assert parsed[1:] == [
        [
            str(row["id"]),
            row["key"],
            row["currency"],
            row["opening"],
            row["credit"],
            row["debit"],
            row["closing"],
        ]
        for row in rows
    ]
    r = staff.get(url + "&format=xlsx")
    assert r.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(r.streaming_content)), read_only=True).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][1] == "Key"
    assert [(v[1], D(str(v[6])).quantize(D("0.01"))) for v in values[1:]] == [
        (row["key"], D(row["closing"])) for row in rows
    ]


def test_statement_exports_as_csv(book, staff):
    x = book["x"]
    r = staff.get(
        f"/api/v1/reports/statement/?account={x.pk}&from=2026-02-01&to=2026-04-30&format=csv"
    )
    parsed = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert [row[1:3] for row in parsed[1:]] == [
        ["payment", "100.00"],
        ["accrual", "-30.00"],
        ["debit", "-20.00"],
        ["payment", "5.00"],
    ]


def test_a_partner_reads_only_its_brands(book):
    api = partner_client(book["b"])
    r = api.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&group_by=account")
    assert [row["key"] for row in r.json()["rows"]] == [book["w"].number]
    r = api.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&group_by=brand")
    assert [row["key"] for row in r.json()["rows"]] == []  # its brand posted nothing itself
    r = api.get(f"/api/v1/reports/statement/?account={book['x'].pk}&from=2026-03-01&to=2026-03-31")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = api.get(f"/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&brand={book['a'].pk}")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert api.get("/api/v1/reports/debt-aging/?at=2026-04-10").json()["rows"] == []


def test_a_key_without_the_reports_capability_is_refused(book):
    api = partner_client(book["a"], capabilities=["read"])
    r = api.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31")
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")


def test_a_staff_user_without_the_permission_is_refused(book):
    client = staff_client(UserFactory(is_staff=True))
    r = client.get("/api/v1/reports/debt-aging/")
    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")


@pytest.mark.parametrize(
    "query",
    [
        "turnover/?from=2026-03-31&to=2026-03-01",
        "turnover/?from=2026-03-01&to=2026-03-31&group_by=client",
        "turnover/?from=2026-03-01",
        "turnover/?from=yesterday&to=2026-03-01",
        "turnover/?from=2026-03-01&to=2026-03-31&currency=rub",
        "statement/?account=abc&from=2026-03-01&to=2026-03-31",
        "statement/?account=1&from=2026-03-01&to=2026-03-31&format=pdfx",
        "debt-aging/?at=2026-13-01",
        "debt-aging/?at=%00",
    ],
)
def test_bad_parameters_are_400_validation_error(staff, query):
    r = staff.get(f"/api/v1/reports/{query}")
    assert (r.status_code, r.json()["code"]) == (400, "validation_error"), r.content


def test_several_currencies_need_a_choice(book, staff):
    usd = AccountFactory(brands=[book["a"]], currency="USD")
    with mock.patch("ledger.services.timezone.now", return_value=at(3, 3)):
        payment_post(account=usd, amount="9.00", channel="bank")
    projections_update()
    r = staff.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31")
    assert (r.status_code, r.json()["code"]) == (400, "validation_error")
    assert "(RUB, USD)" in r.json()["details"]["currency"][0]
    r = staff.get("/api/v1/reports/turnover/?from=2026-03-01&to=2026-03-31&currency=USD")
    assert [(row["key"], row["credit"]) for row in r.json()["rows"]] == [(usd.number, "9.00")]


def test_lag_shows_what_the_projections_do_not_hold_yet(book, staff):
    assert staff.get("/api/v1/reports/lag/").json()["pending_transactions"] == 0
    payment_post(account=book["x"], amount="1.00", channel="bank")
    body = staff.get("/api/v1/reports/lag/").json()
    assert body["built"] is True and body["pending_transactions"] == 1
    assert body["projected_entries"] == 20
