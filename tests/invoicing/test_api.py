"""The billing API: catalogue, tariffs, subscriptions, usage and readings, runs, invoices,
recalculation; partner scope (404 outside its brands) and the error shape."""

from decimal import Decimal

import pytest
from django.conf import settings
from django.test import override_settings

from invoicing.models import Invoice, InvoiceRun, Tariff, UsageRecord
from invoicing.services import billing_period_close, billing_period_for_day, today
from ledger.services import payment_post
from tests.api.conftest import make_side
from tests.api.helpers import error_of, post

SYNC_Q = override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True})
V1 = "/api/v1"


@pytest.fixture
def side_a(db):
    return make_side("Partner A", funds="0")


@pytest.fixture
def side_b(db):
    return make_side("Partner B", funds="0")


def tariff(api, service, **body):
    body = {
        "service": service.pk,
        "kind": "flat",
        "price": "300.00",
        "valid_from": "2026-01-01",
    } | body
    return post(api, f"{V1}/tariffs/", body)


def subscribe(api, account, tariff_id, starts_on="2026-01-01"):
    return post(
        api,
        f"{V1}/subscriptions/",
        {"account": account.pk, "tariff": tariff_id, "starts_on": starts_on},
    )


def test_api_services_create_and_update_in_own_brand_only(side_a, side_b):
    response = post(
        side_a.api,
        f"{V1}/services/",
        {
            "brand": side_a.brand.pk,
            "code": "water",
            "name": "Water",
            "unit": "m3",
            "vat_rate": "10.00",
        },
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert (created["code"], created["vat_rate"], created["brand"]) == (
        "water",
        "10.00",
        side_a.brand.pk,
    )
    response = side_a.api.patch(
        f"{V1}/services/{created['id']}/", {"name": "Cold water"}, format="json"
    )
    assert (response.status_code, response.json()["name"]) == (200, "Cold water")
    foreign = post(
        side_a.api, f"{V1}/services/", {"brand": side_b.brand.pk, "code": "x", "name": "X"}
    )
    assert error_of(foreign) == (404, "not_found")
    assert side_b.api.get(f"{V1}/services/{created['id']}/").status_code == 404
    listed = side_a.api.get(f"{V1}/services/?brand={side_a.brand.pk}").json()["results"]
    assert {s["code"] for s in listed} == {side_a.service.code, "water"}
    bad = post(
        side_a.api,
        f"{V1}/services/",
        {"brand": side_a.brand.pk, "code": "y", "name": "Y", "vat_rate": 20},
    )
    assert error_of(bad) == (400, "validation_error")


def test_api_service_vat_rate_cannot_change_on_billed_days(side_a):
    """VAT is part of every billed line: a new rate is refused while today's period is
    closed (brands announce the change, invoicing refuses it); other fields still change."""
    url = f"{V1}/services/{side_a.service.pk}/"
    rate = f"{side_a.service.vat_rate:.2f}"
    billing_period_close(period=billing_period_for_day(today()))
    refused = side_a.api.patch(url, {"vat_rate": "10.00"}, format="json")
    assert error_of(refused) == (409, "period_closed")
    side_a.service.refresh_from_db()
    assert f"{side_a.service.vat_rate:.2f}" == rate
    same = side_a.api.patch(url, {"vat_rate": rate, "name": "Renamed"}, format="json")
    assert (same.status_code, same.json()["name"], same.json()["vat_rate"]) == (
        200,
        "Renamed",
        rate,
    )


def test_api_tariffs_tiered_and_validation(side_a, side_b):
    response = tariff(
        side_a.api,
        side_a.service,
        kind="tiered",
        price=None,
        tiers=[{"up_to": "100", "price": "4"}, {"up_to": None, "price": "5.5"}],
        minimum_charge="50.00",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["tiers"] == [{"up_to": "100", "price": "4.00"}, {"up_to": None, "price": "5.50"}]
    assert (body["kind"], body["minimum_charge"], body["valid_to"]) == ("tiered", "50.00", None)
    listed = side_a.api.get(f"{V1}/tariffs/?service={side_a.service.pk}").json()["results"]
    assert [t["id"] for t in listed] == [body["id"]]
    assert side_b.api.get(f"{V1}/tariffs/{body['id']}/").status_code == 404
    assert error_of(tariff(side_b.api, side_a.service)) == (404, "not_found")
    not_ascending = tariff(
        side_a.api,
        side_a.service,
        kind="tiered",
        price=None,
        tiers=[
            {"up_to": "100", "price": "4"},
            {"up_to": "50", "price": "5"},
            {"up_to": None, "price": "6"},
        ],
        valid_from="2026-02-01",
    )
    assert error_of(not_ascending) == (400, "validation_error")
    as_float = tariff(side_a.api, side_a.service, price=300.5, valid_from="2026-03-01")
    assert error_of(as_float) == (400, "validation_error")
    assert Tariff.objects.count() == 1


def test_api_subscriptions_scope_and_overlap(side_a, side_b):
    tariff_id = tariff(side_a.api, side_a.service).json()["id"]
    response = subscribe(side_a.api, side_a.account, tariff_id)
    assert response.status_code == 201, response.json()
    assert response.json()["service"] == side_a.service.pk
    assert error_of(subscribe(side_a.api, side_b.account, tariff_id)) == (404, "not_found")
    assert error_of(subscribe(side_b.api, side_b.account, tariff_id)) == (404, "not_found")
    assert error_of(subscribe(side_a.api, side_a.account, tariff_id, "2026-03-01")) == (
        400,
        "validation_error",
    )
    ended = side_a.api.patch(
        f"{V1}/subscriptions/{response.json()['id']}/", {"ends_on": "2026-06-30"}, format="json"
    )
    assert (ended.status_code, ended.json()["ends_on"]) == (200, "2026-06-30")
    listed = side_a.api.get(f"{V1}/subscriptions/?account={side_a.account.pk}").json()
    assert [s["id"] for s in listed["results"]] == [response.json()["id"]]
    assert (
        side_b.api.get(f"{V1}/subscriptions/?account={side_a.account.pk}").json()["results"] == []
    )


def usage(account, service, ext, quantity="1.5", at="2026-01-10T10:00:00+03:00"):
    return {
        "account": account.pk,
        "service": service.pk,
        "quantity": quantity,
        "occurred_at": at,
        "external_id": ext,
    }


def test_api_usage_partial_acceptance(side_a, side_b):
    records = [
        usage(side_a.account, side_a.service, "u1"),
        usage(side_a.account, side_a.service, "u2", quantity="-3"),
        usage(side_b.account, side_a.service, "u3"),  # another partner's account
        usage(side_a.account, side_a.service, "u4", quantity=2.5),  # a JSON number
        usage(side_a.account, side_a.service, "u1"),  # duplicate
    ]
    response = post(side_a.api, f"{V1}/usage/", {"records": records})
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "accepted": 1,
        "duplicates": 1,
        "errors": [
            {"index": 1, "code": "negative_quantity", "message": "quantity cannot be negative."},
            {"index": 2, "code": "unknown_account", "message": "No such account."},
            {
                "index": 3,
                "code": "invalid_quantity",
                "message": "quantity must be a decimal string with at most 6 decimal places.",
            },
        ],
    }
    assert UsageRecord.objects.get().source == f"partner:{side_a.partner.pk}"
    too_many = post(side_a.api, f"{V1}/usage/", {"records": [{}] * 10_001})
    assert error_of(too_many) == (400, "validation_error")
    assert error_of(post(side_a.api, f"{V1}/usage/", {"records": "x"})) == (400, "validation_error")
    assert UsageRecord.objects.count() == 1


def test_api_meter_readings(side_a):
    def reading(value, day, ext):
        return {
            "account": side_a.account.pk,
            "service": side_a.service.pk,
            "reading": value,
            "taken_at": f"2026-01-{day:02d}T12:00:00+03:00",
            "external_id": ext,
        }

    response = post(
        side_a.api,
        f"{V1}/meter-readings/",
        {"readings": [reading("100", 1, "r1"), reading("150", 31, "r2"), reading("90", 20, "r3")]},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(2, "reading_backwards")]


@pytest.fixture
def billed_side(side_a, django_capture_on_commit_callbacks):
    """Partner A with a flat tariff of 300.00 on its account, January billed through the API."""
    tariff_id = tariff(side_a.api, side_a.service).json()["id"]
    assert subscribe(side_a.api, side_a.account, tariff_id).status_code == 201
    with SYNC_Q, django_capture_on_commit_callbacks(execute=True):
        response = post(side_a.api, f"{V1}/invoice-runs/", {"period": "2026-01"})
    assert response.status_code == 202, response.json()
    side_a.run_id = response.json()["id"]
    return side_a


def test_api_invoice_run_and_invoices(billed_side, side_b):
    side = billed_side
    run = side.api.get(f"{V1}/invoice-runs/{side.run_id}/").json()
    assert (run["status"], run["total"], run["processed"], run["failed"]) == ("completed", 1, 1, 0)
    assert run["started_at"] and run["finished_at"]
    assert side_b.api.get(f"{V1}/invoice-runs/{side.run_id}/").status_code == 404
    listed = side.api.get(f"{V1}/invoices/?account={side.account.pk}&period=2026-01").json()
    [invoice] = listed["results"]
    assert (invoice["total"], invoice["status"], invoice["kind"], invoice["adjusts"]) == (
        "300.00",
        "issued",
        "invoice",
        None,
    )
    assert invoice["number"].startswith(side.brand.invoice_prefix + "-")
    [line] = invoice["lines"]
    assert (line["service"], line["quantity"], line["unit_price"], line["amount"], line["vat"]) == (
        side.service.pk,
        "1",
        "300.00",
        "300.00",
        "50.00",
    )
    assert side_b.api.get(f"{V1}/invoices/{invoice['id']}/").status_code == 404
    payment_post(account=side.account, amount="120.00", channel="bank")
    paid = side.api.get(f"{V1}/invoices/{invoice['id']}/").json()
    assert (paid["paid_amount"], paid["status"]) == ("120.00", "partly_paid")


def test_api_invoice_run_draft_then_approve(side_a, django_capture_on_commit_callbacks):
    tariff_id = tariff(side_a.api, side_a.service).json()["id"]
    subscribe(side_a.api, side_a.account, tariff_id)
    with SYNC_Q, django_capture_on_commit_callbacks(execute=True):
        run = post(side_a.api, f"{V1}/invoice-runs/", {"period": "2026-01", "mode": "draft"}).json()
    assert side_a.api.get(f"{V1}/invoice-runs/{run['id']}/").json()["status"] == "draft_ready"
    assert Invoice.objects.get().status == "draft"
    with SYNC_Q, django_capture_on_commit_callbacks(execute=True):
        approved = post(side_a.api, f"{V1}/invoice-runs/{run['id']}/approve/")
    assert approved.status_code == 202
    assert side_a.api.get(f"{V1}/invoice-runs/{run['id']}/").json()["status"] == "completed"
    assert Invoice.objects.get().status == "issued"
    again = post(side_a.api, f"{V1}/invoice-runs/{run['id']}/approve/")
    assert error_of(again) == (409, "run_not_draft_ready")


def test_api_invoice_run_refuses_other_brands(side_a, side_b):
    response = post(
        side_a.api, f"{V1}/invoice-runs/", {"period": "2026-01", "brand": side_b.brand.pk}
    )
    assert error_of(response) == (404, "not_found")
    assert error_of(post(side_a.api, f"{V1}/invoice-runs/", {"period": "2026-13"})) == (
        400,
        "validation_error",
    )
    assert not InvoiceRun.objects.exists()


def test_api_recalculate(billed_side, side_b):
    side = billed_side
    nothing = post(
        side.api, f"{V1}/invoices/recalculate/", {"account": side.account.pk, "period": "2026-01"}
    )
    assert nothing.status_code == 200
    assert nothing.json() == {"adjustment": None, "adjustments": []}
    unbilled = post(
        side.api, f"{V1}/invoices/recalculate/", {"account": side.account.pk, "period": "2026-02"}
    )
    assert error_of(unbilled) == (409, "period_not_billed")
    other = post(
        side_b.api, f"{V1}/invoices/recalculate/", {"account": side.account.pk, "period": "2026-01"}
    )
    assert error_of(other) == (404, "not_found")


def test_api_recalculate_returns_the_adjustment(side_a, django_capture_on_commit_callbacks):
    unit_tariff = tariff(side_a.api, side_a.service, kind="per_unit", price="2.00").json()["id"]
    subscribe(side_a.api, side_a.account, unit_tariff)
    post(
        side_a.api, f"{V1}/usage/", {"records": [usage(side_a.account, side_a.service, "a", "10")]}
    )
    with SYNC_Q, django_capture_on_commit_callbacks(execute=True):
        post(side_a.api, f"{V1}/invoice-runs/", {"period": "2026-01"})
    original = Invoice.objects.get()
    assert original.total == Decimal("20.00")
    post(side_a.api, f"{V1}/usage/", {"records": [usage(side_a.account, side_a.service, "b", "5")]})
    response = post(
        side_a.api,
        f"{V1}/invoices/recalculate/",
        {"account": side_a.account.pk, "period": "2026-01"},
    )
    assert response.status_code == 200
    adjustment = response.json()["adjustment"]
    assert (
        adjustment["kind"],
        adjustment["adjusts"],
        adjustment["total"],
        adjustment["period"],
    ) == (
        "adjustment",
        original.pk,
        "10.00",
        "2026-01",
    )
    assert adjustment["lines"][0]["quantity"] == "5"
