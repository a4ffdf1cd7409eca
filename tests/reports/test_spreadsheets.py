"""Accounts in from spreadsheets: through accounts.services, all rows or none."""

from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import Workbook

from accounts.models import Account
from reports.spreadsheets import accounts_import

HEADER = (
    "client_tax_id,client_external_ref,currency,brands,parent,name,credit_limit,"
    "credit_period_days,credit_expires_at,write_off_limit_transaction,write_off_limit_day,"
    "write_off_limit_month\n"
)


def csv_file(*lines: str) -> io.BytesIO:
    return io.BytesIO((HEADER + "".join(line + "\n" for line in lines)).encode())


def test_accounts_with_limits_and_payers_are_imported(world):
    payer = world["payer"]
    upload = csv_file(
        "7707083893,,RUB,SPA,,Main,5000.00,30,2027-01-31,,,",
        f",acme,,SPA,{payer.number},Employee,,,,100.00,500.00,3000.00",
    )
    before = Account.objects.count()
    result = accounts_import(upload=upload, filename="accounts.csv", dry_run=False)
    assert (result.ok, result.rows, result.created) == (True, 2, 2)
    main, employee = Account.objects.order_by("-id")[:2][::-1]
    assert Account.objects.count() == before + 2
    assert (main.credit_limit, main.credit_period_days, str(main.credit_expires_at)) == (
        Decimal("5000.00"),
        30,
        "2027-01-31",
    )
    assert employee.parent_id == payer.pk and employee.currency == "RUB"
    assert (employee.write_off_limit_day, employee.write_off_limit_month) == (
        Decimal("500.00"),
        Decimal("3000.00"),
    )
    assert [b.code for b in employee.brands.all()] == ["SPA"]


def test_bad_rows_are_refused_with_their_line_and_nothing_is_written(world):
    upload = csv_file(
        "7707083893,,RUB,SPA,,Fine,,,,,,",
        "7707083893,,RUB,NOPE,,Unknown brand,,,,,,",
        "7707083893,,RUB,SPA,,Bad amount,12.345,,,,,",
        f"7707083893,,RUB,SPA,{world['usd_payer'].number},Wrong currency payer,,,,,,",
        "0000000000,,RUB,SPA,,No such client,,,,,,",
        "7707083893,,RUB,SPA,,Bad date,,,2027-02-30,,,",
    )
    before = Account.objects.count()
    result = accounts_import(upload=upload, filename="accounts.csv", dry_run=False)
    assert [(e["row"], e["column"], e["code"]) for e in result.errors] == [
        (3, "brands", "not_found"),
        (4, "credit_limit", "invalid_amount"),
        (5, "parent", "invalid_account_structure"),  # a payer in another currency
        (6, "client_tax_id", "not_found"),
        (7, "credit_expires_at", "invalid"),
    ]
    assert result.created == 0
    assert Account.objects.count() == before


def test_a_dry_run_checks_everything_and_writes_nothing(world):
    before = Account.objects.count()
    result = accounts_import(
        upload=csv_file("7707083893,,RUB,SPA,,Fine,,,,,,"), filename="a.csv", dry_run=True
    )
    assert (result.ok, result.created, result.dry_run) == (True, 1, True)
    assert Account.objects.count() == before


def test_xlsx_files_are_read_as_a_stream(world):
    book = Workbook(write_only=True)
    sheet = book.create_sheet("accounts")
    sheet.append(HEADER.strip().split(","))
    for n in range(50):
        sheet.append(["7707083893", "", "RUB", "SPA", "", f"Branch {n}", "100.00"])
    data = io.BytesIO()
    book.save(data)
    data.seek(0)
    result = accounts_import(upload=data, filename="accounts.xlsx", dry_run=False)
    assert (result.ok, result.created) == (True, 50)
    assert Account.objects.filter(name__startswith="Branch ").count() == 50
