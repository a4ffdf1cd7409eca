"""An account statement as a PDF (reportlab platypus; DejaVu Sans for Cyrillic, the
fonts invoices use)."""

from __future__ import annotations

import io

from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from invoicing.pdf import FONT, FONT_BOLD, register_fonts
from reports.standard.base import Report


def _money(value) -> str:
    return "" if value is None else f"{value:,.2f}".replace(",", " ")


def statement_pdf(report: Report) -> bytes:
    register_fonts()
    header = report.header
    title = ParagraphStyle("title", fontName=FONT_BOLD, fontSize=13, leading=16)
    body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, title=report.title
    )
    summary = [
        ["Opening balance", _money(header["opening"])],
        ["Credit (money in)", _money(report.totals["credit"])],
        ["Debit (money out)", _money(report.totals["debit"])],
        ["Closing balance", _money(header["closing"])],
    ]
    rows = [["Date and time", "Operation", "Amount", "Balance after", "Memo"]]
    for row in report.rows:
        rows.append(
            [
                timezone.localtime(row["created_at"]).strftime("%Y-%m-%d %H:%M"),
                row["kind"],
                _money(row["amount"]),
                _money(row["balance_after"]),
                Paragraph(row["memo"] or "", body),
            ]
        )
    grid = TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), FONT, 8),
            ("FONT", (0, 0), (-1, 0), FONT_BOLD, 8),
            ("ALIGN", (2, 0), (3, -1), "RIGHT"),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )
    story = [
        Paragraph(report.title, title),
        Paragraph(f"Currency: {header['currency']}", body),
        Spacer(1, 4 * mm),
        Table(summary, colWidths=[50 * mm, 35 * mm], style=grid),
        Spacer(1, 6 * mm),
        Table(rows, colWidths=[32 * mm, 28 * mm, 28 * mm, 28 * mm, 64 * mm], style=grid,
              repeatRows=1),
    ]  # fmt: skip
    doc.build(story)
    return buffer.getvalue()
