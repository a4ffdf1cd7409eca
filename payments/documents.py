"""The settlement statement as documents: a PDF (reportlab) and an XLSX workbook (openpyxl).

Both show the same figures as the API: the brand, the month, collected (invoice
payments and debits), the agents' and the operator's commission, payable, the
payout when made, and every item (the XLSX lists them all; the PDF sums them by
kind, as a statement to sign).
"""

from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import Workbook
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from invoicing.pdf import FONT, FONT_BOLD, register_fonts
from payments.models import Settlement, SettlementItem


def _money(value: Decimal) -> str:
    text = f"{value:,.2f}".replace(",", " ").replace(".", ",")
    return text


def _rows(settlement: Settlement) -> list[tuple[str, Decimal]]:
    return [
        ("Invoice payments", settlement.invoice_payments),
        ("Debits (write-offs for the brand)", settlement.debits),
        ("Collected", settlement.collected),
        ("Agents' commission", settlement.agent_commission),
        (
            f"Operator's commission ({settlement.operator_commission_rate}%)",
            settlement.operator_commission,
        ),
        ("Payable to the brand", settlement.payable),
    ]


def settlement_pdf(settlement: Settlement) -> bytes:
    register_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    brand = settlement.brand
    width, height = A4
    y = height - 25 * mm
    canvas.setFont(FONT_BOLD, 14)
    canvas.drawString(20 * mm, y, f"Settlement statement {settlement.period}")
    y -= 9 * mm
    canvas.setFont(FONT, 10)
    for line in (
        f"Brand: {brand.legal_name or brand.name} ({brand.code}), INN {brand.tax_id}",
        f"Currency: {settlement.currency}",
        f"Status: {settlement.get_status_display()}"
        + (
            f", paid {settlement.paid_at:%d.%m.%Y} (ref. {settlement.payout_reference})"
            if settlement.paid_at
            else ""
        ),
    ):
        canvas.drawString(20 * mm, y, line)
        y -= 6 * mm
    y -= 4 * mm
    counts = {
        kind: settlement.items.filter(kind=kind).count() for kind in SettlementItem.Kind.values
    }
    for label, value in _rows(settlement):
        bold = label in ("Collected", "Payable to the brand")
        canvas.setFont(FONT_BOLD if bold else FONT, 11)
        canvas.drawString(20 * mm, y, label)
        canvas.drawRightString(width - 20 * mm, y, _money(value))
        y -= 7 * mm
    y -= 4 * mm
    canvas.setFont(FONT, 9)
    canvas.drawString(
        20 * mm,
        y,
        f"Items: {counts['invoice_payment']} invoice payments, {counts['debit']} debits.",
    )
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def settlement_xlsx(settlement: Settlement) -> bytes:
    book = Workbook()
    summary = book.active
    summary.title = "Statement"
    summary.append(["Brand", settlement.brand.code])
    summary.append(["Period", settlement.period])
    summary.append(["Currency", settlement.currency])
    summary.append(["Status", settlement.status])
    summary.append(["Payout reference", settlement.payout_reference])
    summary.append([])
    for label, value in _rows(settlement):
        summary.append([label, value])
    for row in summary.iter_rows(min_row=7, min_col=2, max_col=2):
        for cell in row:
            cell.number_format = "#,##0.00"
    items = book.create_sheet("Items")
    items.append(["kind", "at", "allocation", "transaction", "amount", "agent_commission"])
    for item in settlement.items.order_by("at", "id"):
        items.append(
            [
                item.kind,
                item.at.replace(tzinfo=None),
                item.allocation_id,
                item.transaction_id,
                item.amount,
                item.agent_commission,
            ]
        )
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
