"""Helpers of the payment-intake tests."""

from datetime import date
from decimal import Decimal

from invoicing import services as invoicing
from invoicing.models import Invoice
from tests.factories import ServiceFactory


def issue_invoice(account, brand, amount: str, period: str = "2026-11") -> Invoice:
    """Bill ``account`` a flat ``amount`` for a whole ended month through a real invoice run."""
    year, month = map(int, period.split("-"))
    service = ServiceFactory(brand=brand, vat_rate=Decimal("0.00"))
    tariff = invoicing.tariff_create(
        service=service, kind="flat", price=Decimal(amount), valid_from=date(year, month, 1)
    )
    invoicing.subscription_create(account=account, tariff=tariff, starts_on=date(year, month, 1))
    run = invoicing.invoice_run_start(period=period, brand=brand)
    invoicing.invoice_run_plan(run_id=run.pk)
    for chunk in run.chunks.filter(status="pending").order_by("index"):
        invoicing.invoice_run_chunk_process(chunk_id=chunk.pk)
    return Invoice.objects.get(account=account, brand=brand)
