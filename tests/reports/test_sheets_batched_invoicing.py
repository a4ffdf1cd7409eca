"""The batched import path for services, tariffs, subscriptions and meter readings
(``core.sheets.import_rows`` with the resources' ``batch_size``): a good file writes what
the per-row path (``batch_size=0``) writes, a file with bad rows in later batches is
refused with the same row numbers, columns and codes and nothing written, the queries
grow with the batches, not the rows, and the admin's import goes the same way."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin as django_admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.services import accounts_create_bulk
from brands.models import Service
from invoicing import services as invoicing
from invoicing.ingest import meter_readings_ingest_records
from invoicing.models import Meter, MeterReading, Subscription, Tariff
from tests.factories import AccountFactory, BrandFactory, LegalEntityFactory, ServiceFactory
from tests.reports.test_sheets_batched import errors, run

pytestmark = pytest.mark.django_db
MSK = ZoneInfo("Europe/Moscow")

SERVICES = "brand,code,name,unit,vat_rate,is_active"
TARIFFS = "brand,service,plan,kind,price,tiers,minimum_charge,valid_from,valid_to"
SUBSCRIPTIONS = "account,brand,service,plan,starts_on,ends_on"
READINGS = "account,brand,service,reading,taken_at,external_id,meter,source"


@pytest.fixture
def catalogue(db):
    """A brand with two services, a stored open tariff version, a company with accounts
    linked to the brand, one of them with a meter."""
    brand = BrandFactory(code="PWR")
    kwh = ServiceFactory(brand=brand, code="kwh", name="Power", unit="kWh")
    gas = ServiceFactory(brand=brand, code="gas", name="Gas", unit="m3")
    stored = invoicing.tariff_create(
        service=kwh, kind="per_unit", price="4.50", valid_from=date(2026, 1, 1)
    )
    invoicing.tariff_create(service=gas, kind="flat", price="100.00", valid_from=date(2026, 1, 1))
    company = LegalEntityFactory(tax_id="7707083893", external_ref="acme")
    accounts = [AccountFactory(client=company, brands=[brand]) for _ in range(4)]
    invoicing.meter_install(
        account=accounts[0],
        service=kwh,
        installed_at=datetime(2026, 1, 1, tzinfo=MSK),
        initial_reading="100",
        serial="M-1",
    )
    return {"brand": brand, "kwh": kwh, "gas": gas, "stored": stored, "company": company,
            "accounts": accounts}  # fmt: skip


def state() -> dict[str, list[tuple]]:
    """Everything these imports write, without ids and timestamps, in a stable order."""
    return {
        "services": sorted(
            Service.objects.values_list("brand__code", "code", "name", "unit", "vat_rate",
                                        "is_active")
        ),
        "tariffs": sorted(
            (t.service.code, t.plan, t.kind, t.price, t.minimum_charge, t.currency,
             t.valid_from, t.valid_to,
             [(x.position, x.from_quantity, x.up_to, x.price)
              for x in t.tiers.order_by("position")])
            for t in Tariff.objects.select_related("service")
        ),
        "subscriptions": sorted(
            Subscription.objects.values_list("account__number", "service__code", "tariff__plan",
                                             "tariff__valid_from", "starts_on", "ends_on")
        ),
        "meters": sorted(
            Meter.objects.values_list("account__number", "service__code", "serial",
                                      "installed_at", "removed_at")
        ),
        "readings": sorted(
            MeterReading.objects.values_list("account__number", "service__code", "meter__serial",
                                             "reading", "taken_at", "consumption", "external_id",
                                             "source")
        ),
    }  # fmt: skip


def written(kind: str, header: str, lines: list[str], batch_size: int | None):
    """Import for good, read the state, roll it back."""
    with pytest.raises(RuntimeError), transaction.atomic():
        outcome = run(kind, header, lines, batch_size)
        assert outcome.ok and outcome.written, outcome.errors
        after = state()
        raise RuntimeError  # roll back
    return outcome.new, after


def same_as_per_row(kind: str, header: str, lines: list[str], batch_size: int = 4):
    before = state()
    batched = written(kind, header, lines, batch_size)
    assert state() == before  # rolled back
    per_row = written(kind, header, lines, 0)
    assert batched == per_row
    assert batched[0] == len(lines)
    return batched[1]


def refused_alike(kind: str, header: str, lines: list[str], model, batch_size: int = 4):
    """The batched path refuses what the per-row path refuses, and writes nothing."""
    before = model.objects.count()
    outcome = run(kind, header, lines, batch_size)
    assert not outcome.written and outcome.created == 0
    assert model.objects.count() == before
    assert errors(outcome) == errors(run(kind, header, lines, 0))
    assert errors(run(kind, header, lines, batch_size, dry_run=True)) == errors(outcome)
    return [(row, column, code) for row, column, code, _ in errors(outcome)]


def readings(account: str, count: int, start: int = 0, prefix: str = "r") -> list[str]:
    first = datetime(2026, 1, 2, tzinfo=MSK)
    return [
        f"{account},PWR,kwh,{100 + 3 * n},{(first + timedelta(hours=n)).isoformat()},{prefix}-{n},,"
        for n in range(start, start + count)
    ]


# --------------------------------------------------------------------------- services


def test_good_services_are_written_as_the_per_row_path_writes_them(catalogue):
    lines = [f"PWR,s{n},Service {n},m3,{'' if n % 3 else '10'},{n % 2}" for n in range(9)]
    after = same_as_per_row("services", SERVICES, lines)
    assert ("PWR", "s1", "Service 1", "m3", Decimal("20.00"), True) in after["services"]
    assert ("PWR", "s0", "Service 0", "m3", Decimal("10.00"), False) in after["services"]


def test_bad_services_in_a_later_batch_are_refused_with_their_row_numbers(catalogue):
    lines = [f"PWR,s{n},Service {n},m3,20,1" for n in range(12)]
    lines[5] = "NOPE,water,Water,m3,20,1"  # line 7
    lines[8] = "PWR,heat,Heat,Gcal,twenty,1"  # line 10
    lines[9] = "PWR,kwh,Power twice,kWh,20,1"  # line 11: the catalogue has kwh
    lines[10] = "PWR,bad code!,Bad,pcs,20,1"  # line 12
    assert refused_alike("services", SERVICES, lines, Service) == [
        (7, "brand", "not_found"),
        (10, "vat_rate", "validation_error"),
        (11, "", "validation_error"),
        (12, "", "validation_error"),
    ]


# --------------------------------------------------------------------------- tariffs


def test_good_tariffs_are_written_as_the_per_row_path_writes_them(catalogue):
    lines = [
        "PWR,kwh,standard,per_unit,5.00,,,2026-07-01,",  # ends the stored version
        "PWR,kwh,night,per_unit,1.00,,0.50,2026-01-01,",
        "PWR,kwh,night,per_unit,1.10,,,2026-03-01,",  # ends the line above (same batch)
        "PWR,kwh,night,per_unit,1.20,,,2026-05-01,",  # ends it again (the next batch)
        "PWR,kwh,home,tiered,,100:3.00;500:4.00;:5.00,,2026-01-01,2026-12-31",
        "PWR,gas,standard,flat,120.00,,,2026-04-01,",  # ends the stored gas version
        "PWR,gas,promo,flat,0.00,,,2026-02-01,2026-02-28",
        "PWR,gas,promo,flat,10.00,,,2026-03-01,",
        "PWR,kwh,standard,per_unit,5.50,,,2026-10-01,",
    ]
    after = same_as_per_row("tariffs", TARIFFS, lines, batch_size=3)
    plans = {(t[0], t[1], t[6]): t[7] for t in after["tariffs"]}
    assert plans[("kwh", "standard", date(2026, 1, 1))] == date(2026, 6, 30)
    assert plans[("kwh", "standard", date(2026, 7, 1))] == date(2026, 9, 30)
    assert plans[("kwh", "night", date(2026, 1, 1))] == date(2026, 2, 28)
    assert plans[("kwh", "night", date(2026, 3, 1))] == date(2026, 4, 30)
    assert plans[("gas", "standard", date(2026, 1, 1))] == date(2026, 3, 31)
    tiered = next(t for t in after["tariffs"] if t[1] == "home")
    assert [tier[2] for tier in tiered[8]] == [Decimal(100), Decimal(500), None]


def test_bad_tariffs_in_a_later_batch_are_refused_with_their_row_numbers(catalogue):
    lines = [f"PWR,gas,p{n},per_unit,1.{n}0,,,2026-01-01," for n in range(10)]
    lines[4] = "PWR,nope,standard,per_unit,1.00,,,2026-01-01,"  # line 6
    lines[6] = "PWR,gas,p6,per_unit,1.2.3,,,2026-01-01,"  # line 8
    lines[7] = "PWR,gas,p5,per_unit,2.00,,,2025-12-01,"  # line 9: overlaps line 7 (open)
    lines.append("PWR,kwh,standard,per_unit,4.00,,,2025-06-01,2026-06-30")  # line 12
    lines.append("PWR,gas,tiers,tiered,,100:1.00;50:2.00,,2026-01-01,")  # line 13
    assert refused_alike("tariffs", TARIFFS, lines, Tariff) == [
        (6, "service", "not_found"),
        (8, "price", "validation_error"),
        (9, "valid_from", "tariff_overlap"),
        (12, "valid_from", "tariff_overlap"),
        (13, "tiers", "validation_error"),
    ]


# --------------------------------------------------------------------------- subscriptions


def test_good_subscriptions_are_written_as_the_per_row_path_writes_them(catalogue):
    invoicing.tariff_create(
        service=catalogue["kwh"], kind="per_unit", price="5.00", valid_from=date(2026, 6, 1)
    )
    numbers = [a.number for a in catalogue["accounts"]]
    lines = [
        f"{numbers[0]},PWR,kwh,standard,2026-02-01,2026-05-31",  # the January version
        f"{numbers[0]},PWR,kwh,standard,2026-06-01,",  # the June version
        f"{numbers[1]},PWR,kwh,standard,2025-01-01,2025-12-31",  # before both: the first
        f"{numbers[1]},PWR,gas,,2026-01-01,",  # no plan: standard
        f"{numbers[2]},PWR,gas,standard,2026-03-01,2026-03-31",
        f"{numbers[3]},PWR,kwh,standard,2026-01-01,",
        f"{numbers[2]},PWR,kwh,standard,2026-07-15,",
    ]
    after = same_as_per_row("subscriptions", SUBSCRIPTIONS, lines, batch_size=3)
    assert (numbers[0], "kwh", "standard", date(2026, 1, 1), date(2026, 2, 1),
            date(2026, 5, 31)) in after["subscriptions"]  # fmt: skip
    assert (numbers[0], "kwh", "standard", date(2026, 6, 1), date(2026, 6, 1),
            None) in after["subscriptions"]  # fmt: skip
    assert (numbers[1], "kwh", "standard", date(2026, 1, 1), date(2025, 1, 1),
            date(2025, 12, 31)) in after["subscriptions"]  # fmt: skip


def test_bad_subscriptions_in_a_later_batch_are_refused_with_their_row_numbers(catalogue):
    numbers = [a.number for a in catalogue["accounts"]]
    usd = AccountFactory(client=catalogue["company"], brands=[catalogue["brand"]], currency="USD")
    lines = [f"{numbers[n % 4]},PWR,kwh,standard,2026-0{1 + n // 4}-01,2026-0{1 + n // 4}-20"
             for n in range(12)]  # fmt: skip
    lines[5] = "0000000000,PWR,kwh,standard,2026-02-01,"  # line 7
    lines[6] = f"{numbers[2]},PWR,kwh,gold,2026-02-01,"  # line 8
    lines[8] = f"{usd.number},PWR,kwh,standard,2026-03-01,"  # line 10
    lines[9] = f"{numbers[0]},PWR,kwh,standard,2026-02-10,2026-02-25"  # line 11: overlaps 6
    lines[11] = f"{numbers[2]},PWR,kwh,standard,2026-03-05,"  # line 13: overlaps line 12
    assert refused_alike("subscriptions", SUBSCRIPTIONS, lines, Subscription) == [
        (7, "account", "not_found"),
        (8, "plan", "not_found"),
        (10, "", "currency_mismatch"),
        (11, "starts_on", "subscription_overlap"),
        (13, "starts_on", "subscription_overlap"),
    ]


# --------------------------------------------------------------------------- meter readings


def test_good_meter_readings_are_written_as_the_ingest_writes_them(catalogue):
    """The meter of the first account, readings out of time order; the second account
    has no meter yet (the ingest installs one at its first reading)."""
    first, second = (a.number for a in catalogue["accounts"][:2])
    lines = readings(first, 6) + readings(second, 5, prefix="s")
    lines[2], lines[4] = lines[4], lines[2]  # later before earlier
    lines.append(f"{first},PWR,kwh,200,2026-02-01T10:00:00+03:00,x-1,M-1,field team")
    after = same_as_per_row("meter-readings", READINGS, lines, batch_size=4)
    assert len(after["readings"]) == len(lines) + 1  # and the meter's initial reading
    assert [m[:3] for m in after["meters"]] == [(first, "kwh", "M-1"), (second, "kwh", "")]
    ours = sorted(r for r in after["readings"] if r[0] == first)
    # the initial reading, then r-0 at the same value, r-1 3 above
    assert [r[5] for r in ours][:3] == [Decimal(0), Decimal(0), Decimal(3)]
    assert ours[-1][5] == Decimal(85) and ours[-1][7] == "field team"
    assert {r[7] for r in ours[1:-1]} == {"spreadsheet"}  # after the initial reading


def test_bad_meter_readings_in_a_later_batch_are_refused_with_their_row_numbers(catalogue):
    first = catalogue["accounts"][0].number
    meter_readings_ingest_records(
        records=[{"account": catalogue["accounts"][0].pk, "service": catalogue["kwh"].pk,
                  "reading": "100", "taken_at": "2026-01-01T18:00:00+03:00",
                  "external_id": "stored-1"}],
        source="api",
    )  # fmt: skip
    lines = readings(first, 12)
    lines[5] = "0000000000,PWR,kwh,160,2026-01-16T12:00:00+03:00,b-1,,"  # line 7
    lines[7] = f"{first},PWR,kwh,12.3.4,2026-01-17T12:00:00+03:00,b-2,,"  # line 9
    lines[8] = f"{first},PWR,kwh,90,2026-01-02T10:00:00+03:00,b-3,,"  # line 10: backwards
    lines[10] = f"{first},PWR,kwh,170,2026-01-02T11:00:00+03:00,stored-1,,"  # line 12
    lines.append(f"{first},PWR,kwh,170,2099-01-02T11:00:00+03:00,b-4,,")  # line 14
    assert refused_alike("meter-readings", READINGS, lines, MeterReading) == [
        (7, "account", "not_found"),
        (9, "reading", "invalid_reading"),
        (10, "reading", "reading_backwards"),
        (12, "external_id", "duplicate"),
        (14, "taken_at", "future_timestamp"),
    ]


# --------------------------------------------------------------------------- queries


@pytest.fixture
def many_accounts(catalogue):
    """3,000 accounts linked to the brand (opened in bulk)."""
    return accounts_create_bulk(
        accounts=[
            {"client": catalogue["company"], "brands": [catalogue["brand"]], "name": f"A{n}"}
            for n in range(3000)
        ]
    )


ROWS = 3000
# Per batch of 1,000 rows: the look-ups (one per referenced model), the savepoint, the
# bulk statements; well below one query per row.
MAX_QUERIES = 120


def test_3000_services_take_a_few_queries_per_batch(catalogue, django_assert_max_num_queries):
    lines = [f"PWR,s{n},Service {n},m3,20,1" for n in range(ROWS)]
    with django_assert_max_num_queries(MAX_QUERIES):
        outcome = run("services", SERVICES, lines, batch_size=None)
    assert outcome.written and outcome.new == ROWS, outcome.errors[:3]
    assert Service.objects.filter(code__startswith="s").count() == ROWS


def test_3000_tariffs_take_a_few_queries_per_batch(catalogue, django_assert_max_num_queries):
    lines = [
        f"PWR,{'kwh' if n % 2 else 'gas'},plan{n // 2},tiered,,10:1.00;:2.00,,2026-02-01,"
        if n % 3 == 0
        else f"PWR,{'kwh' if n % 2 else 'gas'},plan{n // 2},per_unit,1.{n % 100:02d},,,2026-02-01,"
        for n in range(ROWS)
    ]
    lines[-1] = "PWR,kwh,standard,per_unit,5.00,,,2026-07-01,"  # ends the stored version
    with django_assert_max_num_queries(MAX_QUERIES):
        outcome = run("tariffs", TARIFFS, lines, batch_size=None)
    assert outcome.written and outcome.new == ROWS, outcome.errors[:3]
    catalogue["stored"].refresh_from_db()
    assert catalogue["stored"].valid_to == date(2026, 6, 30)


def test_3000_subscriptions_take_a_few_queries_per_batch(
    catalogue, many_accounts, django_assert_max_num_queries
):
    lines = [f"{a.number},PWR,kwh,standard,2026-02-01," for a in many_accounts]
    with django_assert_max_num_queries(MAX_QUERIES):
        outcome = run("subscriptions", SUBSCRIPTIONS, lines, batch_size=None)
    assert outcome.written and outcome.new == ROWS, outcome.errors[:3]
    assert Subscription.objects.filter(starts_on=date(2026, 2, 1)).count() == ROWS


def test_3000_meter_readings_take_a_few_queries_per_batch(
    catalogue, many_accounts, django_assert_max_num_queries
):
    lines = [line for a in many_accounts[:300] for line in readings(a.number, 10, prefix=a.number)]
    with django_assert_max_num_queries(MAX_QUERIES):
        outcome = run("meter-readings", READINGS, lines, batch_size=None)
    assert outcome.written and outcome.new == ROWS, outcome.errors[:3]
    assert MeterReading.objects.filter(source="spreadsheet").count() == ROWS
    assert Meter.objects.count() == 301


def test_the_per_row_path_asks_once_or_more_per_row(catalogue):
    """The reference for the bounds above: 100 rows row by row."""
    lines = readings(catalogue["accounts"][0].number, 100)
    with CaptureQueriesContext(connection) as per_row:
        outcome = run("meter-readings", READINGS, lines, batch_size=0, dry_run=True)
    assert outcome.ok and outcome.new == 100
    assert len(per_row) >= 100 * 5


# --------------------------------------------------------------------------- the admin


def _admin_import(client, model, text: str):
    from tests.test_admin import _csv_format_index

    opts = model._meta
    fmt = _csv_format_index(type(django_admin.site._registry[model]), model)
    upload = SimpleUploadedFile("r.csv", text.encode(), content_type="text/csv")
    return client.post(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_import"),
        {"import_file": upload, "format": fmt, "resource": "0"},
    )


def test_admin_meter_readings_import_is_batched_with_a_dry_run_then_the_confirm_step(
    admin_client, catalogue
):
    first = catalogue["accounts"][0].number
    lines = readings(first, 1500)
    bad = list(lines)
    bad[3] = f"{first},PWR,kwh,oops,2026-01-02T00:00:00+03:00,bad-1,,"  # data row 4
    bad[1200] = f"{first},PWR,nope,500,2026-03-01T00:00:00+03:00,bad-2,,"  # data row 1201
    refused = _admin_import(admin_client, MeterReading, READINGS + "\n" + "\n".join(bad) + "\n")
    assert refused.status_code == 200
    result = refused.context["result"]
    assert result.has_validation_errors() and not refused.context.get("confirm_form")
    assert {row.number: sorted(row.error_dict) for row in result.invalid_rows} == {
        4: ["reading"],
        1201: ["service"],
    }
    assert b"oops" in refused.content  # the refused row is shown
    assert not MeterReading.objects.filter(external_id__startswith="r-").exists()

    with CaptureQueriesContext(connection) as dry:
        preview = _admin_import(
            admin_client, MeterReading, READINGS + "\n" + "\n".join(lines) + "\n"
        )
    result = preview.context["result"]
    assert not result.has_validation_errors() and not result.has_errors()
    assert result.totals["new"] == 1500
    assert not MeterReading.objects.filter(external_id__startswith="r-").exists()  # dry run
    assert len(dry) < 150  # two batches, not 1,500 rows
    done = admin_client.post(
        reverse("admin:invoicing_meterreading_process_import"),
        preview.context["confirm_form"].initial,
    )
    assert done.status_code == 302
    stored = MeterReading.objects.filter(external_id__startswith="r-")
    assert stored.count() == 1500
    assert stored.get(external_id="r-1").consumption == Decimal(3)


def test_a_bad_reading_sends_only_its_series_row_by_row(
    catalogue, many_accounts, django_assert_max_num_queries
):
    """A dry run of a big file with a few bad rows stays batched: the series (account and
    service) of a refused reading goes row by row, the other series of its batch are
    placed again in one call."""
    lines = [line for a in many_accounts[:300] for line in readings(a.number, 10, prefix=a.number)]
    number = many_accounts[150].number
    lines[1503] = f"{number},PWR,kwh,1.2.3,2026-01-02T03:00:00+03:00,{number}-3,,"  # line 1505
    lines[2999] = lines[2999].replace("2026-01-02", "2099-01-02")  # line 3001
    with django_assert_max_num_queries(MAX_QUERIES + 2 * 10 * 12):
        outcome = run("meter-readings", READINGS, lines, batch_size=None, dry_run=True)
    assert [(r, c, code) for r, c, code, _ in errors(outcome)] == [
        (1505, "reading", "invalid_reading"),
        (3001, "taken_at", "future_timestamp"),
    ]
    assert outcome.new == ROWS - 2 and not MeterReading.objects.filter(source="spreadsheet")
