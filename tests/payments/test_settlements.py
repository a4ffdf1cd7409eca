"""Settlements with brands: totals equal to the ledger, commissions, one payout, documents."""

import io
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db.models import Sum
from django.utils import timezone
from openpyxl import load_workbook

from invoicing.models import InvoiceAllocation
from ledger.models import Transaction
from ledger.services import debit_post, payment_post, transaction_reverse
from payments.documents import settlement_pdf, settlement_xlsx
from payments.models import Settlement, SettlementTerms
from payments.services import registry_import
from payments.services.settlements import SettlementAlreadyPaid, settlement_pay, settlement_prepare
from tests.api.test_permissions import staff_client
from tests.factories import AccountFactory
from tests.payments.conftest import Pay, sber_txt
from tests.payments.helpers import issue_invoice

TODAY = timezone.localdate()
PERIOD = f"{TODAY:%Y-%m}"  # the month the tests' postings happen in
NEXT_MONTH = (TODAY.replace(day=28) + timedelta(days=4)).replace(day=5)


def after_the_month():
    """The business calendar moved on a month (only today's date: sessions keep their time)."""
    return mock.patch("django.utils.timezone.localdate", return_value=NEXT_MONTH)


@pytest.fixture
def month(sber, brand, accounts):
    """A month of a brand: an invoice of 300.00 paid by a registry (100.00, commission 1.50)
    and a bank payment (250.00: 200.00 to the invoice, 50.00 advance), a debit of 40.00 and
    one of 15.00 reversed; another brand's debit that must not count."""
    a, b, _ = accounts
    SettlementTerms.objects.create(brand=brand, operator_commission_rate=Decimal("5.00"))
    issue_invoice(a, brand, "300.00")
    registry_import(
        agent=sber,
        file_name="s",
        content=sber_txt([Pay("1", a.number, "100.00", commission="1.50")]),
    )
    payment_post(account=a, amount="250.00", channel="bank")
    payment_post(account=b, amount="100.00", channel="bank")
    debit_post(account=b, amount="40.00", brand=brand)
    mistake = debit_post(account=b, amount="15.00", brand=brand)
    transaction_reverse(transaction_obj=mistake, reason="double order")
    from tests.factories import BrandFactory

    elsewhere = BrandFactory()
    other = AccountFactory(brands=[elsewhere])
    payment_post(account=other, amount="10.00", channel="bank")
    debit_post(account=other, amount="9.00", brand=elsewhere)
    return brand


def test_settlement_totals_equal_the_ledger(month):
    with after_the_month():
        settlement = settlement_prepare(brand=month, period=PERIOD)
    allocated = InvoiceAllocation.objects.filter(invoice__brand=month).aggregate(s=Sum("amount"))
    written_off = Transaction.objects.filter(brand=month, kind="debit").aggregate(s=Sum("amount"))
    reversed_ = Transaction.objects.filter(kind="reversal", reversal_of__brand=month).aggregate(
        s=Sum("amount")
    )
    assert settlement.invoice_payments == allocated["s"] == Decimal("300.00")
    assert settlement.debits == written_off["s"] - reversed_["s"] == Decimal("40.00")
    assert settlement.collected == Decimal("340.00")
    assert settlement.agent_commission == Decimal("1.50")
    assert settlement.operator_commission == Decimal("17.00")
    assert settlement.payable == Decimal("321.50")
    assert settlement.items.count() == 2 + 3  # two allocations; two debits and a reversal


def test_a_settlement_is_paid_out_once_and_nothing_is_settled_twice(month, accounts):
    with after_the_month():
        settlement = settlement_prepare(brand=month, period=PERIOD)
        again = settlement_prepare(brand=month, period=PERIOD)  # prepared again: same items
    assert again.pk == settlement.pk and again.collected == Decimal("340.00")
    paid = settlement_pay(settlement=settlement, reference="PP-001")
    assert (paid.status, paid.payout_reference) == ("paid", "PP-001")
    with pytest.raises(SettlementAlreadyPaid):
        settlement_pay(settlement=settlement, reference="PP-002")
    with after_the_month(), pytest.raises(SettlementAlreadyPaid):
        settlement_prepare(brand=month, period=PERIOD)
    assert Settlement.objects.get().payout_reference == "PP-001"


def test_a_month_that_has_not_ended_cannot_be_settled(month):
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        settlement_prepare(brand=month, period=PERIOD)
    with pytest.raises(ValidationFailed):
        settlement_prepare(brand=month, period="2026-13")
    assert Settlement.objects.count() == 0


def test_statement_documents(month):
    with after_the_month():
        settlement = settlement_prepare(brand=month, period=PERIOD)
    pdf = settlement_pdf(settlement)
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    book = load_workbook(io.BytesIO(settlement_xlsx(settlement)))
    figures = {row[0]: row[1] for row in book["Statement"].iter_rows(values_only=True) if row}
    assert Decimal(str(figures["Payable to the brand"])) == Decimal("321.50")
    items = list(book["Items"].iter_rows(min_row=2, values_only=True))
    assert sum(Decimal(str(row[4])) for row in items) == Decimal("340.00")


def test_settlements_over_the_api(month, staff_api, side_a):
    with after_the_month():
        response = staff_api.post(
            "/api/v1/settlements/", {"brand": month.pk, "period": PERIOD}, format="json"
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["collected"], body["payable"], body["status"]) == ("340.00", "321.50", "draft")
    url = f"/api/v1/settlements/{body['id']}/"
    assert staff_api.get(url + "pdf/")["Content-Type"] == "application/pdf"
    assert staff_api.get(url + "xlsx/").status_code == 200
    clerk = staff_client("payments.view_settlement")
    refused = clerk.post(url + "pay/", {"reference": "X"}, format="json")
    assert refused.status_code == 403
    paid = staff_api.post(url + "pay/", {"reference": "PP-9"}, format="json")
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    twice = staff_api.post(url + "pay/", {"reference": "PP-9"}, format="json")
    assert (twice.status_code, twice.json()["code"]) == (409, "settlement_already_paid")
    assert side_a.api.get(url).status_code == 404  # another brand's
    assert side_a.api.post(url + "pay/", {"reference": "X"}, format="json").status_code == 403
