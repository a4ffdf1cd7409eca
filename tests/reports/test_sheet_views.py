"""The staff UI's spreadsheets over the Django test client: upload -> preview (a dry run:
counts and row errors, nothing written) -> confirm (all rows or none); forbidden roles get
403 and nothing is written; the admin's import with its confirm step; filtered exports."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl import load_workbook

from accounts.models import Client
from brands.models import Service
from invoicing import services as invoicing
from invoicing.ingest import meter_readings_ingest_records
from invoicing.models import MeterReading, Tariff
from ledger import services as ledger
from tests.factories import AccountFactory, BrandFactory, ClientFactory, ServiceFactory
from tests.ui_fixtures import signed_in, staff_user

pytestmark = pytest.mark.django_db
MSK = ZoneInfo("Europe/Moscow")
READINGS_HEADER = "account,brand,service,reading,taken_at,external_id\n"


@pytest.fixture
def metered(ui_roles):
    brand = BrandFactory(code="PWR")
    service = ServiceFactory(brand=brand, code="kwh")
    account = AccountFactory(brands=[brand])
    invoicing.meter_install(
        account=account,
        service=service,
        installed_at=datetime(2026, 1, 1, tzinfo=MSK),
        initial_reading="100",
    )
    return account


def upload(name: str, text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def readings_file(account, *lines: tuple[str, str, str]) -> SimpleUploadedFile:
    body = "".join(
        f"{account.number},PWR,kwh,{value},{moment},{external_id}\n"
        for value, moment, external_id in lines
    )
    return upload("readings.csv", READINGS_HEADER + body)


URL = reverse("reports:sheet_import", args=["meter-readings"])


def test_accountant_checks_a_file_sees_the_preview_then_imports_it(as_role, metered):
    client = as_role("accountant")
    assert client.get(URL).status_code == 200
    good = readings_file(
        metered,
        ("150", "2026-01-15T12:00:00+03:00", "r-1"),
        ("175", "2026-01-20T12:00:00+03:00", "r-2"),
    )
    preview = client.post(URL, {"step": "preview", "file": good})
    page = preview.content.decode()
    assert preview.status_code == 200
    assert 'id="sheet-preview"' in page and 'id="sheet-confirm"' in page
    assert "2 rows: 2 new" in page
    assert MeterReading.objects.exclude(source="meter_install").count() == 0  # not yet
    token = preview.context["token"]
    done = client.post(URL, {"step": "confirm", "token": token}, follow=True)
    assert "Imported 2 rows" in done.content.decode()
    stored = MeterReading.objects.filter(external_id__in=["r-1", "r-2"]).order_by("taken_at")
    assert [r.consumption for r in stored] == [Decimal(50), Decimal(25)]
    again = client.post(URL, {"step": "confirm", "token": token}, follow=True)
    assert "no longer waiting" in again.content.decode()  # the token is used once
    assert MeterReading.objects.filter(external_id__in=["r-1", "r-2"]).count() == 2


def test_a_file_with_bad_rows_is_previewed_with_row_numbers_and_cannot_be_imported(
    as_role, metered
):
    client = as_role("accountant")
    bad = readings_file(
        metered,
        ("150", "2026-01-15T12:00:00+03:00", "r-1"),
        ("abc", "2026-01-16T12:00:00+03:00", "r-2"),
        ("160", "2026-01-17T12:00:00+03:00", "r-1"),
    )
    preview = client.post(URL, {"step": "preview", "file": bad})
    page = preview.content.decode()
    assert 'id="sheet-errors"' in page and 'id="sheet-confirm"' not in page
    assert [(e["row"], e["code"]) for e in preview.context["errors"]] == [
        (3, "invalid_reading"),
        (4, "duplicate_in_file"),
    ]
    assert 'data-row="3"' in page and 'data-row="4"' in page
    assert "2 rows refused" in page
    forged = client.post(URL, {"step": "confirm", "token": "0" * 32}, follow=True)
    assert "no longer waiting" in forged.content.decode()
    assert not MeterReading.objects.filter(external_id__in=["r-1", "r-2"]).exists()


def test_a_row_refused_at_confirm_time_writes_nothing(as_role, metered):
    """The data moved between the check and the import: the import is refused whole."""
    client = as_role("accountant")
    good = readings_file(
        metered,
        ("150", "2026-01-15T12:00:00+03:00", "r-1"),
        ("175", "2026-01-20T12:00:00+03:00", "r-2"),
    )
    token = client.post(URL, {"step": "preview", "file": good}).context["token"]
    late = meter_readings_ingest_records(
        records=[
            {"account": metered.pk, "service": Service.objects.get(code="kwh").pk,
             "reading": "300", "taken_at": "2026-01-18T12:00:00+03:00", "external_id": "late"}
        ]
    )  # fmt: skip
    assert late.accepted == 1  # a later reading below r-2's: r-2 would now go backwards
    done = client.post(URL, {"step": "confirm", "token": token})
    page = done.content.decode()
    assert done.status_code == 200 and 'id="sheet-errors"' in page
    assert "Nothing has been written" in page
    assert not MeterReading.objects.filter(external_id__in=["r-1", "r-2"]).exists()


@pytest.mark.parametrize(
    ("role", "kind"),
    [("operator", "meter-readings"), ("accountant", "clients"), ("accountant", "tariffs")],
)
def test_a_role_without_the_permissions_gets_403_and_nothing_is_written(
    as_role, metered, role, kind
):
    client = as_role(role)
    url = reverse("reports:sheet_import", args=[kind])
    files = {
        "meter-readings": readings_file(metered, ("150", "2026-01-15T12:00:00+03:00", "r-1")),
        "clients": upload("c.csv", "kind,name,external_ref\nindividual,Forbidden,fb-1\n"),
        "tariffs": upload(
            "t.csv", "brand,service,kind,price,valid_from\nPWR,kwh,per_unit,1.00,2026-01-01\n"
        ),
    }
    before = (MeterReading.objects.count(), Client.objects.count(), Tariff.objects.count())
    assert client.get(url).status_code == 403
    assert client.post(url, {"step": "preview", "file": files[kind]}).status_code == 403
    assert client.post(url, {"step": "confirm", "token": "x"}).status_code == 403
    assert (MeterReading.objects.count(), Client.objects.count(), Tariff.objects.count()) == before


def test_a_user_granted_the_client_permissions_imports_clients(ui_roles):
    user = staff_user("accountant", "clerk")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="accounts", codename__in=["add_client", "change_client"]
        )
    )
    client = signed_in(user)
    url = reverse("reports:sheet_import", args=["clients"])
    file = upload("c.csv", "kind,name,external_ref\nindividual,Anna Ivanova,an-1\n")
    token = client.post(url, {"step": "preview", "file": file}).context["token"]
    assert not Client.objects.filter(external_ref="an-1").exists()
    client.post(url, {"step": "confirm", "token": token})
    assert Client.objects.get(external_ref="an-1").name == "Anna Ivanova"


@pytest.mark.parametrize("kind", ["clients", "accounts", "services", "tariffs", "subscriptions"])
def test_the_administrator_role_may_import_master_data(as_role, metered, kind):
    client = as_role("administrator")
    url = reverse("reports:sheet_import", args=[kind])
    assert client.get(url).status_code == 200
    page = client.get(reverse("reports:sheets")).content.decode()
    assert f'href="{url}"' in page


def test_sheets_page_lists_what_the_role_may_do(as_role, metered):
    page = as_role("accountant").get(reverse("reports:sheets")).content.decode()
    assert f'href="{reverse("reports:sheet_import", args=["meter-readings"])}"' in page
    assert f'href="{reverse("reports:sheet_import", args=["clients"])}"' not in page
    assert reverse("reports:sheet_export", args=["tariffs"]) in page  # view_tariff


def test_a_kind_export_streams_every_record_in_the_import_columns(as_role, metered):
    response = as_role("accountant").get(
        reverse("reports:sheet_export", args=["meter-readings"]), {"format": "xlsx"}
    )
    assert response.streaming
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    header, *rows = list(book.active.iter_rows(values_only=True))
    assert header[:7] == ("id", "account", "brand", "service", "meter", "reading", "taken_at")
    assert [row[1] for row in rows] == [metered.number]
    forbidden = as_role("operator").get(reverse("reports:sheet_export", args=["tariffs"]))
    assert forbidden.status_code == 403  # the operator may not see tariffs


def test_clients_list_export_applies_the_filters_and_is_streamed(as_role, db):
    ClientFactory(name="Alpha", external_ref="a")
    ClientFactory(name="Beta", external_ref="b", kind="legal_entity", tax_id="7707083893")
    response = as_role("operator").get(
        reverse("backoffice:clients"), {"kind": "legal_entity", "export": "csv"}
    )
    assert response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["name"], r["tax_id"], r["external_ref"]) for r in rows] == [
        ("Beta", "7707083893", "b")
    ]


def test_account_history_export_applies_the_date_filter(as_role, ui_account):
    ledger.payment_post(account=ui_account, amount=Decimal("25.00"), channel="bank")
    url = reverse("backoffice:account", args=[ui_account.pk])
    page = as_role("operator").get(url).content.decode()
    assert 'data-export="csv"' in page
    response = as_role("operator").get(url, {"export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(Decimal(r["amount"]) for r in rows) == [Decimal("25.00"), Decimal("1000.00")]
    empty = as_role("operator").get(url, {"export": "csv", "date_to": "2000-01-01"})
    assert b"".join(empty.streaming_content).decode().strip().count("\n") == 0  # header only


def test_admin_tariff_import_has_a_dry_run_then_the_confirm_step(admin_client, db):
    from tests.test_admin import _csv_format_index

    ServiceFactory(brand=BrandFactory(code="ADM"), code="kwh")
    content = (
        "brand,service,plan,kind,price,valid_from\nADM,kwh,standard,per_unit,4.50,2026-01-01\n"
    )
    fmt = _csv_format_index(type(django_admin.site._registry[Tariff]), Tariff)
    preview = admin_client.post(
        reverse("admin:invoicing_tariff_import"),
        {"import_file": upload("t.csv", content), "format": fmt, "resource": "0"},
    )
    assert preview.status_code == 200
    assert not preview.context["result"].has_validation_errors()
    assert not Tariff.objects.filter(service__code="kwh", service__brand__code="ADM").exists()
    done = admin_client.post(
        reverse("admin:invoicing_tariff_process_import"), preview.context["confirm_form"].initial
    )
    assert done.status_code == 302
    assert Tariff.objects.get(service__brand__code="ADM").price == Decimal("4.50")


def test_admin_service_import_refuses_an_unknown_brand_and_writes_nothing(admin_client, db):
    from tests.test_admin import _csv_format_index

    content = "brand,code,name,vat_rate\nNOPE,gas,Gas,20\n"
    fmt = _csv_format_index(type(django_admin.site._registry[Service]), Service)
    preview = admin_client.post(
        reverse("admin:brands_service_import"),
        {"import_file": upload("s.csv", content), "format": fmt, "resource": "0"},
    )
    result = preview.context["result"]
    assert result.has_validation_errors()
    assert [row.number for row in result.invalid_rows] == [1]
    assert not Service.objects.filter(code="gas").exists()


def test_admin_import_is_offered_only_to_users_with_the_permissions(ui_users):
    accountant = signed_in(ui_users["accountant"])
    assert accountant.get(reverse("admin:invoicing_tariff_import")).status_code == 403
