"""Revenue, payments by channel and agent, invoice-run summary, settlements, statement PDF:
figures of small hand-computed ledgers, through the API and its exports."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from pypdf import PdfReader

from invoicing import services as invoicing
from ledger.services import accrual_post, debit_post, payment_post, transaction_reverse
from reports.projections import projections_update
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory
from tests.reports.test_api import staff_client


@pytest.fixture
def staff(db):
    return staff_client(UserFactory(is_staff=True, is_superuser=True))


def today_query() -> str:
    today = timezone.localdate()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


@pytest.mark.django_db(transaction=True)
def test_revenue_per_brand_and_service_nets_returns(staff):
    a, b = BrandFactory(code="RVA"), BrandFactory(code="RVB")
    water = ServiceFactory(brand=a, code="water")
    x, y = AccountFactory(brands=[a]), AccountFactory(brands=[b])
    payment_post(account=x, amount="500.00", channel="bank")  # no brand: not revenue
    accrual_post(account=x, amount="30.00", brand=a, service=water)
    mistake = debit_post(account=x, amount="20.00", brand=a, service=water)
    transaction_reverse(transaction_obj=mistake, reason="wrong order")
    accrual_post(account=x, amount="80.00", brand=a)
    accrual_post(account=y, amount="12.34", brand=b)
    projections_update()
    r = staff.get(f"/api/v1/reports/revenue/?{today_query()}")
    assert r.status_code == 200, r.content
    rows = [(row["brand"], row["service"], row["charged"], row["returned"], row["revenue"])
            for row in r.json()["rows"]]  # fmt: skip
    assert rows == [
        ("RVA", "", "80.00", "0.00", "80.00"),
        ("RVA", "water", "50.00", "20.00", "30.00"),
        ("RVB", "", "12.34", "0.00", "12.34"),
    ]
    assert r.json()["totals"] == {"revenue": {"RUB": "122.34"}}
    r = staff.get(f"/api/v1/reports/revenue/?{today_query()}&brand={b.pk}&format=csv")
    parsed = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert parsed == [
        ["Brand", "Service", "Currency", "Charged", "Returned", "Revenue", "Entries"],
        ["RVB", "", "RUB", "12.34", "0.00", "12.34", "1"],
    ]


def test_payments_per_channel_and_agent(staff):
    account = AccountFactory()
    payment_post(account=account, amount="100.00", channel="bank", metadata={"agent": "sber"})
    payment_post(account=account, amount="30.00", channel="bank", metadata={"agent": "sber"})
    payment_post(account=account, amount="15.00", channel="bank")
    card = payment_post(account=account, amount="7.00", channel="card")
    transaction_reverse(transaction_obj=card, reason="chargeback")
    r = staff.get(f"/api/v1/reports/payments/?{today_query()}")
    rows = [(row["channel"], row["agent"], row["payments"], row["amount"], row["reversed"])
            for row in r.json()["rows"]]  # fmt: skip
    assert rows == [
        ("bank", "", 1, "15.00", "0.00"),
        ("bank", "sber", 2, "130.00", "0.00"),
        ("card", "", 1, "7.00", "7.00"),
    ]
    assert r.json()["totals"] == {"payments": 4, "amount": "152.00"}
    assert r.json()["chart"]["labels"] == ["bank", "card"]


def _billed(brand, price: str):
    service = ServiceFactory(brand=brand, vat_rate=Decimal("20.00"))
    account = AccountFactory(brands=[brand])
    tariff = invoicing.tariff_create(
        service=service, kind="flat", price=Decimal(price), valid_from=date(2026, 1, 1)
    )
    invoicing.subscription_create(account=account, tariff=tariff, starts_on=date(2026, 1, 1))
    return account


def _run(period: str, brand):
    run = invoicing.invoice_run_start(period=period, brand=brand)
    invoicing.invoice_run_plan(run_id=run.pk)
    for chunk in run.chunks.filter(status="pending").order_by("index"):
        invoicing.invoice_run_chunk_process(chunk_id=chunk.pk)
    return run


def test_invoice_run_summary_and_settlements_with_commission(staff):
    brand = BrandFactory(code="STL")
    first, second = _billed(brand, "100.00"), _billed(brand, "40.00")
    run = _run("2026-01", brand)
    payment_post(account=first, amount="60.00", channel="bank")  # allocated to its invoice
    payment_post(account=second, amount="40.00", channel="bank")
    r = staff.get(f"/api/v1/reports/invoice-runs/?{today_query()}")
    (row,) = r.json()["rows"]
    assert (row["run"], row["period"], row["brand"], row["invoices"]) == (
        run.pk,
        "2026-01",
        "STL",
        2,
    )
    assert (row["total"], row["vat"], row["status"]) == (
        "140.00",
        "23.34",
        "completed",
    )  # 16.67 + 6.67
    r = staff.get(f"/api/v1/reports/settlements/?{today_query()}&commission=2.5")
    assert r.status_code == 200, r.content
    assert r.json()["rows"] == [
        {
            "brand": "STL",
            "currency": "RUB",
            "payments": 2,
            "collected": "100.00",
            "commission": "2.50",
            "to_transfer": "97.50",
        }
    ]
    r = staff.get(f"/api/v1/reports/settlements/?{today_query()}&commission=101")
    assert (r.status_code, r.json()["code"]) == (400, "validation_error")


def test_statement_pdf_holds_the_figures(staff):
    account = AccountFactory()
    payment_post(account=account, amount="1250.00", channel="bank", memo="Оплата за январь")
    today = timezone.localdate()
    r = staff.get(f"/api/v1/reports/statement/pdf/?account={account.pk}&from={today}&to={today}")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(r.content)).pages)
    assert account.number in text
    assert "1 250.00" in text and "Оплата за январь" in text
    r = staff.get(f"/api/v1/reports/statement/pdf/?account=999999&from={today}&to={today}")
    assert (r.status_code, r["Content-Type"]) == (404, "application/json")
