"""Spreadsheets in and out for each kind (``reports.spreadsheets.SHEET_KINDS``): exports
parse back to the stored data (CSV and XLSX), a re-import of an export changes nothing,
and files with bad rows (unknown references, bad money, bad dates, duplicates inside
the file) are refused with their row numbers and nothing written."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook, load_workbook

from accounts.models import Account, Client
from brands.models import Service
from core.sheets import export_response
from invoicing import services as invoicing
from invoicing.models import MeterReading, Subscription, Tariff
from reports.spreadsheets import SHEET_KINDS, sheet_import
from tests.factories import (
    AccountFactory,
    BrandFactory,
    ClientFactory,
    LegalEntityFactory,
    ServiceFactory,
)

pytestmark = pytest.mark.django_db
MSK = ZoneInfo("Europe/Moscow")


@pytest.fixture
def world(db):
    brand = BrandFactory(code="PWR")
    service = ServiceFactory(brand=brand, code="kwh", name="Power", unit="kWh")
    company = LegalEntityFactory(tax_id="7707083893", external_ref="acme", name="Acme")
    person = ClientFactory(name="Ivan Petrov", external_ref="ivan")
    payer = AccountFactory(client=company, brands=[brand], credit_limit=Decimal("500.00"))
    employee = AccountFactory(client=person, brands=[brand], parent=payer)
    tariff = invoicing.tariff_create(
        service=service, kind="per_unit", price="4.50", valid_from=date(2026, 1, 1)
    )
    tiered = invoicing.tariff_create(
        service=service,
        kind="tiered",
        plan="home",
        tiers=[{"up_to": "100", "price": "3.00"}, {"up_to": None, "price": "5.00"}],
        valid_from=date(2026, 1, 1),
    )
    subscription = invoicing.subscription_create(
        account=payer, tariff=tariff, starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31)
    )
    invoicing.meter_install(
        account=payer,
        service=service,
        installed_at=datetime(2026, 1, 1, tzinfo=MSK),
        initial_reading="100",
        serial="M-1",
    )
    return {
        "brand": brand, "service": service, "company": company, "person": person,
        "payer": payer, "employee": employee, "tariff": tariff, "tiered": tiered,
        "subscription": subscription,
    }  # fmt: skip


def exported(kind: str, fmt: str) -> list[dict[str, str]]:
    """The kind's export (the staff UI's, streamed), parsed back into rows of text."""
    resource = SHEET_KINDS[kind].resource_class()
    response = export_response(
        resource=resource, queryset=resource.get_queryset().order_by("pk"), name=kind, fmt=fmt
    )
    body = b"".join(response.streaming_content)
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    sheet = load_workbook(io.BytesIO(body), read_only=True).active
    rows = sheet.iter_rows(values_only=True)
    header = list(next(rows))
    return [
        {h: "" if v is None else str(v) for h, v in zip(header, row, strict=True)} for row in rows
    ]


def as_csv(rows: list[dict[str, str]]) -> io.BytesIO:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return io.BytesIO(buffer.getvalue().encode())


def csv_file(header: str, *lines: str) -> io.BytesIO:
    return io.BytesIO((header + "\n" + "".join(line + "\n" for line in lines)).encode())


def refused(kind: str, upload: io.BytesIO, model) -> list[tuple[int, str, str]]:
    """Import for good; assert nothing was written; the (row, column, code) of the errors."""
    before = model.objects.count()
    outcome = sheet_import(kind=kind, upload=upload, filename=f"{kind}.csv", dry_run=False)
    assert not outcome.ok and not outcome.written
    assert model.objects.count() == before
    return [(e["row"], e["column"], e["code"]) for e in outcome.errors]


def money(text: str) -> Decimal | None:
    return Decimal(text) if text else None


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_clients_export_parses_back_to_the_stored_clients(world, fmt):
    rows = {int(row["id"]): row for row in exported("clients", fmt)}
    assert set(rows) == set(Client.objects.values_list("pk", flat=True))
    for client in Client.objects.all():
        row = rows[client.pk]
        assert (row["kind"], row["name"], row["tax_id"], row["phone"], row["external_ref"]) == (
            client.kind, client.name, client.tax_id, client.phone, client.external_ref,
        )  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_accounts_export_parses_back_with_limits_payers_and_brands(world, fmt):
    rows = {row["number"]: row for row in exported("accounts", fmt)}
    payer, employee = world["payer"], world["employee"]
    assert set(rows) == set(Account.objects.filter(kind="client").values_list("number", flat=True))
    assert money(rows[payer.number]["credit_limit"]) == Decimal("500.00")
    assert rows[payer.number]["client_tax_id"] == "7707083893"
    assert rows[employee.number]["parent"] == payer.number
    assert rows[employee.number]["brands"] == "PWR"
    assert rows[employee.number]["client_external_ref"] == "ivan"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_catalogue_tariffs_subscriptions_and_readings_parse_back(world, fmt):
    [service_row] = [r for r in exported("services", fmt) if r["code"] == "kwh"]
    assert (service_row["brand"], service_row["name"], service_row["unit"]) == (
        "PWR", "Power", "kWh",
    )  # fmt: skip
    assert Decimal(service_row["vat_rate"]) == world["service"].vat_rate
    tariffs = {int(r["id"]): r for r in exported("tariffs", fmt)}
    flat, tiered = tariffs[world["tariff"].pk], tariffs[world["tiered"].pk]
    assert (flat["service"], flat["kind"], Decimal(flat["price"])) == (
        "kwh", "per_unit", Decimal("4.50"),
    )  # fmt: skip
    assert flat["valid_from"].startswith("2026-01-01")
    bands = [band.split(":") for band in tiered["tiers"].split(";")]
    assert [(up_to and Decimal(up_to), Decimal(price)) for up_to, price in bands] == [
        (Decimal(100), Decimal("3.00")),
        ("", Decimal("5.00")),
    ]
    [sub] = exported("subscriptions", fmt)
    assert (sub["account"], sub["brand"], sub["service"], sub["plan"]) == (
        world["payer"].number, "PWR", "kwh", "standard",
    )  # fmt: skip
    assert sub["starts_on"].startswith("2026-01-01") and sub["ends_on"].startswith("2026-12-31")
    [reading] = exported("meter-readings", fmt)
    stored = MeterReading.objects.get()
    assert (reading["account"], reading["meter"], Decimal(reading["reading"])) == (
        world["payer"].number, "M-1", stored.reading,
    )  # fmt: skip
    assert datetime.fromisoformat(reading["taken_at"]) == stored.taken_at


@pytest.mark.parametrize("kind", sorted(SHEET_KINDS))
def test_reimporting_an_export_is_accepted_and_changes_nothing(world, kind):
    model = SHEET_KINDS[kind].resource_class._meta.model
    rows = exported(kind, "csv")
    before = sorted(model.objects.values_list("pk", flat=True))
    snapshot = [exported(k, "csv") for k in sorted(SHEET_KINDS)]
    outcome = sheet_import(kind=kind, upload=as_csv(rows), filename="x.csv", dry_run=False)
    assert outcome.ok, outcome.errors
    assert outcome.new == 0 and outcome.rows == len(rows)
    assert sorted(model.objects.values_list("pk", flat=True)) == before
    assert [exported(k, "csv") for k in sorted(SHEET_KINDS)] == snapshot


def test_an_xlsx_export_imports_back_as_new_records(world):
    """The export's columns are the import's: without ids the rows are created anew."""
    rows = exported("services", "xlsx")
    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["brand", "code", "name", "unit", "vat_rate", "is_active"])
    for row in rows:
        sheet.append([row["brand"], row["code"] + "-2", row["name"], row["unit"],
                      row["vat_rate"], row["is_active"]])  # fmt: skip
    data = io.BytesIO()
    book.save(data)
    data.seek(0)
    outcome = sheet_import(kind="services", upload=data, filename="s.xlsx", dry_run=False)
    assert outcome.ok and outcome.new == len(rows), outcome.errors
    copy = Service.objects.get(code="kwh-2")
    assert (copy.brand.code, copy.name, copy.unit, copy.vat_rate) == (
        "PWR", "Power", "kWh", world["service"].vat_rate,
    )  # fmt: skip


# --------------------------------------------------------------------------- refusals


def test_clients_with_bad_rows_are_refused_with_row_numbers(world):
    header = "kind,name,tax_id,kpp,external_ref,email"
    upload = csv_file(
        header,
        "individual,Good One,,,new-1,good@example.com",
        "individual,Bad Inn,123456789012,,new-2,",
        "martian,Bad Kind,,,new-3,",
        "individual,Again,,,new-1,",
        "individual,Bad Mail,,,new-4,not-an-email",
    )
    assert refused("clients", upload, Client) == [
        (3, "tax_id", "invalid_tax_id"),
        (4, "kind", "invalid_choice"),
        (5, "external_ref", "duplicate_in_file"),
        (6, "email", "invalid"),
    ]


def test_services_with_bad_rows_are_refused_with_row_numbers(world):
    header = "brand,code,name,unit,vat_rate"
    upload = csv_file(
        header,
        "PWR,gas,Gas,m3,20",
        "NOPE,water,Water,m3,20",
        "PWR,heat,Heat,Gcal,twenty",
        "PWR,gas,Gas again,m3,20",
        "PWR,kwh,Power twice,kWh,20",
    )
    assert refused("services", upload, Service) == [
        (3, "brand", "not_found"),
        (4, "vat_rate", "validation_error"),
        (5, "code", "duplicate_in_file"),
        (6, "", "validation_error"),  # the brand already has kwh (unique per brand)
    ]


def test_tariffs_with_bad_rows_are_refused_with_row_numbers(world):
    ServiceFactory(brand=world["brand"], code="gas")
    header = "brand,service,plan,kind,price,tiers,valid_from,valid_to"
    upload = csv_file(
        header,
        "PWR,gas,standard,per_unit,7.25,,2026-01-01,",
        "PWR,nope,standard,per_unit,1.00,,2026-01-01,",
        "PWR,gas,night,per_unit,1.2.3,,2026-01-01,",
        "PWR,gas,day,per_unit,1.00,,2026-02-30,",
        "PWR,gas,standard,per_unit,8.00,,2026-01-01,",
        "PWR,gas,tiers,tiered,,100:1.00;50:2.00,2026-01-01,",
        "PWR,kwh,standard,per_unit,4.00,,2025-06-01,2026-06-30",
    )
    assert refused("tariffs", upload, Tariff) == [
        (3, "service", "not_found"),
        (4, "price", "validation_error"),
        (5, "valid_from", "invalid"),
        (6, "valid_from", "duplicate_in_file"),
        (7, "tiers", "validation_error"),
        (8, "valid_from", "tariff_overlap"),
    ]


def test_subscriptions_with_bad_rows_are_refused_with_row_numbers(world):
    other = AccountFactory(brands=[world["brand"]])
    usd = AccountFactory(brands=[world["brand"]], currency="USD")
    header = "account,brand,service,plan,starts_on,ends_on"
    upload = csv_file(
        header,
        f"{other.number},PWR,kwh,standard,2026-02-01,",
        "0000000000,PWR,kwh,standard,2026-02-01,",
        f"{other.number},PWR,kwh,gold,2026-03-01,",
        f"{other.number},PWR,kwh,home,2026-13-01,",
        f"{other.number},PWR,kwh,home,2026-02-01,",
        f"{usd.number},PWR,kwh,standard,2026-02-01,",
        f"{world['payer'].number},PWR,kwh,home,2026-06-01,",
    )
    assert refused("subscriptions", upload, Subscription) == [
        (3, "account", "not_found"),
        (4, "plan", "not_found"),
        (5, "starts_on", "invalid"),
        (6, "starts_on", "duplicate_in_file"),
        (7, "", "currency_mismatch"),
        (8, "starts_on", "subscription_overlap"),
    ]


def test_meter_readings_with_bad_rows_are_refused_with_row_numbers(world):
    payer = world["payer"].number
    header = "account,brand,service,reading,taken_at,external_id"
    upload = csv_file(
        header,
        f"{payer},PWR,kwh,150,2026-01-15T12:00:00+03:00,r-1",
        "0000000000,PWR,kwh,160,2026-01-16T12:00:00+03:00,r-2",
        f"{payer},PWR,kwh,12.3.4,2026-01-17T12:00:00+03:00,r-3",
        f"{payer},PWR,kwh,170,2026-01-32,r-4",
        f"{payer},PWR,kwh,180,2026-01-19T12:00:00+03:00,r-1",
        f"{payer},PWR,kwh,90,2026-01-20T12:00:00+03:00,r-5",
    )
    assert refused("meter-readings", upload, MeterReading) == [
        (3, "account", "not_found"),
        (4, "reading", "invalid_reading"),
        (5, "taken_at", "invalid_timestamp"),
        (6, "external_id", "duplicate_in_file"),
        (7, "reading", "reading_backwards"),
    ]


def test_a_good_file_of_each_kind_is_written_once_confirmed(world):
    payer = world["payer"].number
    files = {
        "services": ("brand,code,name,unit,vat_rate", "PWR,gas,Gas,m3,10"),
        "tariffs": (
            "brand,service,plan,kind,price,tiers,valid_from",
            "PWR,kwh,standard,per_unit,5.00,,2026-07-01",
        ),
        "meter-readings": (
            "account,brand,service,reading,taken_at,external_id",
            f"{payer},PWR,kwh,150,2026-01-15T12:00:00+03:00,r-1",
        ),
    }
    for kind, (header, line) in files.items():
        model = SHEET_KINDS[kind].resource_class._meta.model
        before = model.objects.count()
        dry = sheet_import(kind=kind, upload=csv_file(header, line), filename="a.csv")
        assert dry.ok and dry.new == 1 and not dry.written, dry.errors
        assert model.objects.count() == before
        done = sheet_import(
            kind=kind, upload=csv_file(header, line), filename="a.csv", dry_run=False
        )
        assert done.ok and done.written, done.errors
        assert model.objects.count() == before + 1
    # the new version ended the open one the day before (tariff_create's rule)
    world["tariff"].refresh_from_db()
    assert world["tariff"].valid_to == date(2026, 6, 30)
    assert MeterReading.objects.get(external_id="r-1").consumption == Decimal(50)


def test_a_file_without_the_required_columns_is_refused_at_row_1(world):
    outcome = sheet_import(
        kind="tariffs", upload=csv_file("brand,plan", "PWR,standard"), filename="t.csv"
    )
    assert [(e["row"], e["code"]) for e in outcome.errors] == [(1, "missing_column")]


def test_row_numbers_are_lines_of_the_file_across_blank_lines_and_multiline_cells(world):
    header = "brand,code,name,unit,vat_rate"
    upload = csv_file(
        header,
        'PWR,gas,"Gas,\nline two",m3,20',
        "",
        "NOPE,water,Water,m3,20",
        "PWR,heat,Heat,Gcal",  # a short row: the missing vat_rate is empty (brand's rate)
        "PWR,gas,Gas again,m3,20",
    )
    assert refused("services", upload, Service) == [
        (5, "brand", "not_found"),
        (7, "code", "duplicate_in_file"),
    ]


def test_import_sheet_command_is_a_dry_run_unless_applied(world, tmp_path, capsys):
    import json

    from django.core.management import call_command

    path = tmp_path / "services.csv"
    path.write_text("brand,code,name,unit,vat_rate\nPWR,gas,Gas,m3,10\n")
    call_command("import_sheet", "services", str(path))
    dry = json.loads(capsys.readouterr().out)
    assert (dry["rows"], dry["new"], dry["written"]) == (1, 1, False)
    assert not Service.objects.filter(code="gas").exists()
    call_command("import_sheet", "services", str(path), "--apply")
    assert json.loads(capsys.readouterr().out)["written"] is True
    assert Service.objects.get(code="gas").vat_rate == Decimal("10.00")
