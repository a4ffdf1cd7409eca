"""The invoice document: a one-or-more-page A4 PDF drawn with reportlab, and its payment QR.

Pure functions of an ``InvoiceDocument`` (plain values, no ORM): loading,
storage and delivery live in ``invoicing.documents``. Drawn straight on a
reportlab canvas (no platypus), with fonts registered once per process: a
bulk run renders hundreds of invoices per second per core.

**Text** is set in DejaVu Sans, shipped in ``static/fonts`` (Bitstream Vera
licence, see ``LICENSE-DejaVu.txt``) so Cyrillic renders on any machine.
Amounts are written Russian style with two decimals: ``12 345,67``.

**Payment QR** follows GOST R 56042-2014 (the "ST00012" payment-order format
Russian banking apps scan): ``ST00012|Name=...|PersonalAcc=...|BankName=...|
BIC=...|CorrespAcc=...|PayeeINN=...|KPP=...|Sum=<kopecks>|Purpose=...|
PersAcc=...|PaymPeriod=MMYYYY``, UTF-8 (the "2" in ``ST00012``). Values are
sanitised: no ``|`` (the separator), no control characters, single spaces,
cut to the standard's lengths. The QR is printed only for a rouble invoice
with an amount to pay and a payee with complete bank details. Its matrix is
built by Zint (zint-bindings, C): the payload's UTF-8 bytes without an ECI
header, error correction M, with a fixed mask pattern: any of the eight masks
decodes, and scoring all eight costs more than the rest of the page. Zint
encodes in about 0.1 ms what took segno (pure Python) 4 ms, more than half of a
page's CPU time. It is painted as a one-bit stencil (an inline image
mask), which viewers and printers draw at device resolution: sharp at any
zoom, one operator rather than a rectangle per run of modules.

**Fonts** are embedded as subsets. Every document first claims the same
alphabet (Cyrillic, Latin, digits, the signs the page uses) in the same
order, so the first subset of each font is the same in every invoice; its
font program is cut and compressed once per process and reused
(``_CachedSubsetFont``). A character outside the alphabet still works: it
extends the subset, which is then cut for that document.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

import zint
from django.conf import settings
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.ttfonts import (
    FF_NONSYMBOLIC,
    FF_SYMBOLIC,
    SUBSETN,
    TTFont,
    makeToUnicodeCMap,
)
from reportlab.pdfgen.canvas import Canvas

CENT = Decimal("0.01")
FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
QR_HEADER = "ST00012"  # format ST, version 0001, encoding 2 = UTF-8
QR_MASK_PATTERN = 0


# --------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Payee:
    """The brand as it appears on its invoices: requisites and bank details."""

    legal_name: str
    inn: str
    kpp: str = ""
    address: str = ""
    bank_name: str = ""
    bik: str = ""
    settlement_account: str = ""
    correspondent_account: str = ""


@dataclass(frozen=True)
class Payer:
    name: str
    inn: str = ""
    address: str = ""


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    amount: Decimal
    vat_rate: Decimal
    vat: Decimal
    estimated: bool = False


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything an invoice PDF shows, as plain values."""

    number: str
    issued_on: date
    due_date: date | None
    period_code: str  # YYYY-MM
    period_starts_on: date
    period_ends_on: date
    currency: str
    account_number: str
    payee: Payee
    payer: Payer
    subtotal: Decimal
    vat: Decimal
    total: Decimal
    balance_brought_forward: Decimal | None  # + credit, - debt, before this invoice
    lines: Sequence[DocumentLine] = field(default_factory=tuple)
    adjusts_number: str | None = None  # set for an adjustment (debit / credit note)
    # A draft or a void invoice says so in its title and carries no payment QR.
    status_note: str = ""

    @property
    def amount_due(self) -> Decimal:
        """What brings the account back to zero: this invoice plus any debt, less any credit."""
        brought_forward = self.balance_brought_forward or Decimal("0.00")
        return max(self.total - brought_forward, Decimal("0.00"))


# --------------------------------------------------------------------------- formatting


def format_money(value: Decimal) -> str:
    """``Decimal("-12345.6")`` -> ``"-12 345,60"``: two decimals, half-up, spaced thousands."""
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    units, cents = f"{abs(rounded):.2f}".split(".")
    return f"{sign}{int(units):,}".replace(",", " ") + f",{cents}"


def format_quantity(value: Decimal, min_places: int = 0) -> str:
    """A quantity or price without trailing zeros (but at least ``min_places`` decimals)."""
    text = f"{value.normalize():f}"
    units, _, decimals = text.partition(".")
    decimals = decimals.ljust(min_places, "0")
    sign = "-" if units.startswith("-") else ""
    grouped = f"{int(units.lstrip('-') or 0):,}".replace(",", " ")
    return f"{sign}{grouped}" + (f",{decimals}" if decimals else "")


def format_date(value: date | None) -> str:
    return value.strftime("%d.%m.%Y") if value else "—"


# --------------------------------------------------------------------------- payment QR

# Field lengths of GOST R 56042-2014 (maximum characters).
QR_FIELD_LIMITS = {
    "Name": 160,
    "PersonalAcc": 20,
    "BankName": 45,
    "BIC": 9,
    "CorrespAcc": 20,
    "PayeeINN": 12,
    "KPP": 9,
    "Sum": 18,
    "Purpose": 210,
    "PersAcc": 30,
    "PaymPeriod": 6,
}
QR_REQUIRED = ("Name", "PersonalAcc", "BankName", "BIC", "CorrespAcc")
_UNSAFE = re.compile(r"[|\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")


def qr_value(value: str, limit: int) -> str:
    """A value safe inside the payload: no separators or control characters, single spaces."""
    return _SPACES.sub(" ", _UNSAFE.sub(" ", value)).strip()[:limit].rstrip()


def payment_purpose(document: InvoiceDocument) -> str:
    return (
        f"Оплата по счёту {document.number} от {format_date(document.issued_on)}"
        f" за {document.period_code}, л/с {document.account_number}"
    )


def payment_qr_payload(document: InvoiceDocument) -> str | None:
    """The ST00012 payload for the amount due, or None when there is nothing to scan.

    None for a draft or void invoice, a non-rouble one (the format is roubles
    only), nothing to pay, or a payee whose bank details are incomplete.
    """
    amount_due = document.amount_due
    if document.status_note or document.currency != "RUB" or amount_due <= 0:
        return None
    payee = document.payee
    period = f"{document.period_code[5:7]}{document.period_code[:4]}"
    fields = {
        "Name": payee.legal_name,
        "PersonalAcc": payee.settlement_account,
        "BankName": payee.bank_name,
        "BIC": payee.bik,
        "CorrespAcc": payee.correspondent_account,
        "PayeeINN": payee.inn,
        "KPP": payee.kpp,
        "Sum": str(int(amount_due.quantize(CENT, rounding=ROUND_HALF_UP) * 100)),
        "Purpose": payment_purpose(document),
        "PersAcc": document.account_number,
        "PaymPeriod": period,
    }
    values = {name: qr_value(value, QR_FIELD_LIMITS[name]) for name, value in fields.items()}
    if not all(values[name] for name in QR_REQUIRED):
        return None
    return "|".join([QR_HEADER, *(f"{name}={value}" for name, value in values.items() if value)])


def qr_matrix(payload: str) -> list[bytes]:
    """The QR modules row by row, one byte each (1 = dark), without the quiet zone: error
    correction M (at least), the payload's UTF-8 bytes without an ECI header (banking apps
    read ST00012 by its header; Zint may put runs of digits in numeric segments, which
    every reader joins back), mask pattern ``QR_MASK_PATTERN`` (see the module docstring)."""
    symbol = zint.Symbol()
    symbol.symbology = zint.Symbology.QRCODE
    symbol.input_mode = zint.InputMode.DATA
    symbol.option_1 = 2  # error correction level M
    symbol.option_3 = (QR_MASK_PATTERN + 1) << 8  # a fixed mask: Zint skips the scoring
    try:
        symbol.encode(payload.encode("utf-8"))
    except RuntimeError as exc:  # Zint's "input too long" and kin
        raise ValueError("The payment QR payload is too long.") from exc
    # Zint packs each row's modules eight to a byte, the first module in the lowest bit.
    modules, data = symbol.width, symbol.encoded_data
    stride = data.shape[1]
    packed = data.tobytes()
    matrix = []
    for row in range(symbol.rows):
        bits = int.from_bytes(packed[row * stride : (row + 1) * stride], "little")
        matrix.append(format(bits, "b").zfill(modules)[-modules:][::-1].encode().translate(_DIGITS))
    return matrix


_DIGITS = bytes.maketrans(b"01", b"\x00\x01")
_MODULE_BITS = bytes.maketrans(b"\x01\x00", b"01")  # a dark module paints (bit 0)


def qr_image_operators(matrix: list[bytes], x: float, top: float, size: float) -> str:
    """PDF operators painting the QR as a one-bit stencil (an inline image mask) in a
    ``size`` x ``size`` square whose top-left corner is (x, top): one operator instead of
    a rectangle per run, and as sharp, since a stencil is drawn at device resolution."""
    modules = len(matrix)
    width = (modules + 7) // 8
    rows = b"".join(
        int(row.translate(_MODULE_BITS).ljust(width * 8, b"1"), 2).to_bytes(width) for row in matrix
    )
    return (
        f"q 0 g {size:.3f} 0 0 {size:.3f} {x:.3f} {top - size:.3f} cm\n"
        f"BI /W {modules} /H {modules} /IM true /BPC 1 /F /AHx ID\n{rows.hex()}>\nEI Q"
    )


# --------------------------------------------------------------------------- drawing


def font_dir() -> Path:
    return Path(getattr(settings, "INVOICING_PDF_FONT_DIR", settings.BASE_DIR / "static" / "fonts"))


# Claimed by every document in this order, so that the fonts' first subsets are the same
# in every invoice (and their font programs are cut and compressed once per process).
ALPHABET = "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдеёжзийклмнопрстуфхцчшщъыьэюя№«»–—·…’“”„₽€×"


class _Formatted(pdfdoc.PDFObject):
    """A PDF object whose bytes were formatted (and compressed) once."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def format(self, document: pdfdoc.PDFDocument) -> bytes:
        return self.data


def _compressed_stream(content: bytes, **entries: object) -> pdfdoc.PDFStream:
    """A stream whose content is compressed already (a fresh object per document:
    reportlab registers each object in one document only)."""
    stream = pdfdoc.PDFStream(content=content)
    stream.dictionary["Filter"] = pdfdoc.PDFName("FlateDecode")  # applied already
    for name, value in entries.items():
        stream.dictionary[name] = value
    return stream


@dataclass(frozen=True)
class _SubsetObjects:
    """One subset's font objects as bytes: formatted and compressed once."""

    widths: bytes
    to_unicode: bytes
    font_file: bytes
    font_file_length: int


class _CachedSubsetFont(TTFont):
    """DejaVu as reportlab embeds it (``TTFont.addObjects``), with each distinct subset's
    widths, ToUnicode map and font program built and compressed once per process."""

    def __init__(self, name: str, filename: str) -> None:
        super().__init__(name, filename)
        self._subsets: dict[tuple[bytes, tuple[int, ...]], _SubsetObjects] = {}

    def _subset_objects(self, base_name: bytes, subset: tuple[int, ...]) -> _SubsetObjects:
        key = (base_name, subset)
        if key not in self._subsets:
            if len(self._subsets) >= 64:  # odd alphabets: keep the cache bounded
                self._subsets.clear()
            face = self.face
            widths = pdfdoc.PDFArray([face.getCharWidth(code) for code in subset])
            program = face.makeSubset(list(subset))
            to_unicode = makeToUnicodeCMap(base_name.decode("pdfdoc"), list(subset))
            self._subsets[key] = _SubsetObjects(
                widths=widths.format(None),
                to_unicode=pdfdoc.PDFZCompress.encode(to_unicode),
                font_file=pdfdoc.PDFZCompress.encode(program),
                font_file_length=len(program),
            )
        return self._subsets[key]

    def addObjects(self, doc: pdfdoc.PDFDocument) -> None:  # reportlab calls it by this name
        state = self._assignState(doc)
        state.frozen = 1
        face = self.face
        for n, subset in enumerate(state.subsets):
            internal_name = self.getSubsetInternalName(n, doc)[1:]
            base_name = b"".join((SUBSETN(n), b"+", face.name, face.subfontNameX))
            cached = self._subset_objects(base_name, tuple(subset))
            font_name = base_name.decode("pdfdoc")
            descriptor = pdfdoc.PDFDictionary(
                {
                    "Type": "/FontDescriptor",
                    "Ascent": face.ascent,
                    "CapHeight": face.capHeight,
                    "Descent": face.descent,
                    "Flags": (face.flags & ~FF_NONSYMBOLIC) | FF_SYMBOLIC,
                    "FontBBox": pdfdoc.PDFArray(face.bbox),
                    "FontName": pdfdoc.PDFName(font_name),
                    "ItalicAngle": face.italicAngle,
                    "StemV": face.stemV,
                    "FontFile2": doc.Reference(
                        _compressed_stream(cached.font_file, Length1=cached.font_file_length),
                        f"fontFile:{font_name}",
                    ),
                    "MissingWidth": face.defaultWidth,
                }
            )
            font = pdfdoc.PDFTrueTypeFont()
            font.Name = internal_name
            font.BaseFont = font_name
            font.FirstChar = 0
            font.LastChar = len(subset) - 1
            font.Widths = _Formatted(cached.widths)
            font.ToUnicode = doc.Reference(
                _compressed_stream(cached.to_unicode), "toUnicodeCMap:" + font_name
            )
            font.FontDescriptor = doc.Reference(descriptor, "fontDescriptor:" + font_name)
            doc.Reference(font, internal_name)
            doc.idToObject["BasicFonts"].dict[internal_name] = font
        del self.state[doc]


@cache
def register_fonts() -> None:
    """Register DejaVu Sans once per process (parsing a TTF costs tens of milliseconds)."""
    directory = font_dir()
    pdfmetrics.registerFont(_CachedSubsetFont(FONT, str(directory / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(_CachedSubsetFont(FONT_BOLD, str(directory / "DejaVuSans-Bold.ttf")))


def _claim_alphabet(canvas: Canvas) -> None:
    """Give the alphabet the same codes in every document (see ``ALPHABET``)."""
    for name in (FONT, FONT_BOLD):
        pdfmetrics.getFont(name).splitString(ALPHABET, canvas._doc)


PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 15 * mm
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
QR_SIZE = 38 * mm
BODY = 8.0
LEADING = 10.0
ROW_PADDING = 3.0
# Columns of the lines table: (title, width in mm, alignment).
COLUMNS = (
    ("№", 8, "right"),
    ("Услуга", 60, "left"),
    ("Кол-во", 19, "right"),
    ("Ед.", 14, "left"),
    ("Цена", 19, "right"),
    ("Сумма", 22, "right"),
    ("НДС, %", 15, "right"),
    ("НДС", 21, "right"),
)
COLUMN_X: list[float] = []
_x = MARGIN
for _title, _width, _align in COLUMNS:
    COLUMN_X.append(_x)
    _x += _width * mm
TABLE_RIGHT = _x
HEADER_HEIGHT = LEADING + ROW_PADDING * 2
TOTALS_HEIGHT = 6 * 13 + 20  # the totals block and the estimate note
FOOTER_Y = MARGIN - 2
BOTTOM = MARGIN + 12


def _cell(values: DocumentLine, position: int) -> tuple[str, ...]:
    return (
        str(position),
        "",
        format_quantity(values.quantity),
        values.unit,
        "" if values.unit_price is None else format_quantity(values.unit_price, min_places=2),
        format_money(values.amount),
        format_quantity(values.vat_rate),
        format_money(values.vat),
    )


def _description_lines(line: DocumentLine) -> list[str]:
    text = (line.description or "—") + (" *" if line.estimated else "")
    width = COLUMNS[1][1] * mm - 4
    return simpleSplit(text, FONT, BODY, width) or [""]


def _title(document: InvoiceDocument) -> str:
    if document.adjusts_number:
        kind = "Корректировочный счёт" if document.total > 0 else "Кредит-нота"
        title = (
            f"{kind} № {document.number} от {format_date(document.issued_on)}"
            f" к счёту № {document.adjusts_number}"
        )
    else:
        title = f"Счёт № {document.number} от {format_date(document.issued_on)}"
    return f"{title} ({document.status_note})" if document.status_note else title


class _Page:
    """Drawing helpers over one canvas (string widths cached per call site by reportlab)."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas

    def text(self, x: float, y: float, text: str, size: float = BODY, bold: bool = False) -> None:
        self.canvas.setFont(FONT_BOLD if bold else FONT, size)
        self.canvas.drawString(x, y, text)

    def right(self, x: float, y: float, text: str, size: float = BODY, bold: bool = False) -> None:
        self.canvas.setFont(FONT_BOLD if bold else FONT, size)
        self.canvas.drawRightString(x, y, text)

    def wrapped(
        self, x: float, y: float, text: str, width: float, size: float = BODY, bold: bool = False
    ) -> float:
        """Draw ``text`` wrapped to ``width``; return the y below the last line."""
        font = FONT_BOLD if bold else FONT
        for line in simpleSplit(text, font, size, width) or [""]:
            self.text(x, y, line, size, bold)
            y -= size * 1.25
        return y


def _draw_header(page: _Page, document: InvoiceDocument, qr: list[bytes] | None) -> float:
    payee, payer = document.payee, document.payer
    top = PAGE_HEIGHT - MARGIN
    text_width = CONTENT_WIDTH - (QR_SIZE + 6 * mm if qr else 0)
    y = page.wrapped(MARGIN, top - 10, payee.legal_name, text_width, size=11, bold=True)
    ids = f"ИНН {payee.inn}" + (f"   КПП {payee.kpp}" if payee.kpp else "")
    page.text(MARGIN, y, ids)
    y -= LEADING
    if payee.address:
        y = page.wrapped(MARGIN, y, f"Адрес: {payee.address}", text_width)
    if payee.bank_name:
        y = page.wrapped(MARGIN, y, f"Банк: {payee.bank_name}", text_width)
    if payee.bik:
        page.text(MARGIN, y, f"БИК {payee.bik}   к/с {payee.correspondent_account or '—'}")
        y -= LEADING
    if payee.settlement_account:
        page.text(MARGIN, y, f"р/с {payee.settlement_account}")
        y -= LEADING
    if qr:
        qr_x = PAGE_WIDTH - MARGIN - QR_SIZE
        page.canvas.addLiteral(qr_image_operators(qr, qr_x, top, QR_SIZE))
        page.text(qr_x, top - QR_SIZE - 9, "Оплатите по QR-коду", size=7)
        page.text(qr_x, top - QR_SIZE - 17, "в приложении банка", size=7)
        y = min(y, top - QR_SIZE - 20)
    y -= 14
    y = page.wrapped(MARGIN, y, _title(document), CONTENT_WIDTH, size=14, bold=True)
    y -= 2
    page.text(
        MARGIN,
        y,
        f"Расчётный период: {format_date(document.period_starts_on)} – "
        f"{format_date(document.period_ends_on)}      Оплатить до: "
        f"{format_date(document.due_date)}",
        size=9,
    )
    y -= 18
    y = page.wrapped(MARGIN, y, f"Плательщик: {payer.name}", CONTENT_WIDTH, size=9, bold=True)
    if payer.inn:
        page.text(MARGIN, y, f"ИНН {payer.inn}")
        y -= LEADING
    if payer.address:
        y = page.wrapped(MARGIN, y, f"Адрес: {payer.address}", CONTENT_WIDTH)
    page.text(MARGIN, y, f"Лицевой счёт: {document.account_number}", size=9, bold=True)
    return y - 14


def _draw_table_header(page: _Page, y: float) -> float:
    canvas = page.canvas
    canvas.setFillGray(0.9)
    canvas.rect(MARGIN, y - HEADER_HEIGHT, TABLE_RIGHT - MARGIN, HEADER_HEIGHT, stroke=0, fill=1)
    canvas.setFillGray(0)
    baseline = y - ROW_PADDING - BODY
    for (title, width, align), x in zip(COLUMNS, COLUMN_X, strict=True):
        if align == "right":
            page.right(x + width * mm - 2, baseline, title, bold=True)
        else:
            page.text(x + 2, baseline, title, bold=True)
    return y - HEADER_HEIGHT


def _draw_row(page: _Page, y: float, cells: tuple[str, ...], description: list[str]) -> float:
    baseline = y - ROW_PADDING - BODY
    for index, ((_title, width, align), x, value) in enumerate(
        zip(COLUMNS, COLUMN_X, cells, strict=True)
    ):
        if index == 1:
            line_y = baseline
            for part in description:
                page.text(x + 2, line_y, part)
                line_y -= LEADING
        elif align == "right":
            page.right(x + width * mm - 2, baseline, value)
        else:
            page.text(x + 3, baseline, value)
    height = len(description) * LEADING + ROW_PADDING * 2
    page.canvas.setLineWidth(0.3)
    page.canvas.line(MARGIN, y - height, TABLE_RIGHT, y - height)
    return y - height


def _draw_totals(page: _Page, document: InvoiceDocument, y: float) -> None:
    label_x = TABLE_RIGHT - 62 * mm
    rows: list[tuple[str, str, bool]] = [
        ("Итого без НДС:", format_money(document.subtotal), False),
        ("НДС:", format_money(document.vat), False),
        ("Всего по счёту:", format_money(document.total), True),
    ]
    brought_forward = document.balance_brought_forward or Decimal("0.00")
    if brought_forward < 0:
        rows.append(("Задолженность на начало:", format_money(-brought_forward), False))
    elif brought_forward > 0:
        rows.append(("Аванс на начало:", format_money(brought_forward), False))
    else:
        rows.append(("Задолженность на начало:", format_money(brought_forward), False))
    rows.append((f"К оплате, {document.currency}:", format_money(document.amount_due), True))
    y -= 6
    for label, value, bold in rows:
        y -= 13
        page.right(label_x, y, label, size=9, bold=bold)
        page.right(TABLE_RIGHT - 2, y, value, size=9, bold=bold)
    if any(line.estimated for line in document.lines):
        page.text(MARGIN, y - 16, "* Объём начислен по среднему потреблению и будет уточнён.")


def render_invoice_pdf(document: InvoiceDocument) -> bytes:
    """The invoice as PDF bytes."""
    register_fonts()
    payload = payment_qr_payload(document)
    qr = qr_matrix(payload) if payload else None
    rows = [
        (_cell(line, position), _description_lines(line))
        for position, line in enumerate(document.lines, start=1)
    ]
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    _claim_alphabet(canvas)
    canvas.setTitle(_title(document))
    canvas.setAuthor(document.payee.legal_name)
    canvas.setSubject(f"{document.period_code} {document.account_number}")
    page = _Page(canvas)
    page_number = 1
    y = _draw_header(page, document, qr)
    y = _draw_table_header(page, y)
    for index, (cells, description) in enumerate(rows):
        height = len(description) * LEADING + ROW_PADDING * 2
        # The last row goes to the next page with the totals rather than leave them alone.
        room = height + (TOTALS_HEIGHT if index == len(rows) - 1 else 0)
        if y - room < BOTTOM:
            _draw_footer(page, document, page_number)
            canvas.showPage()
            page_number += 1
            y = PAGE_HEIGHT - MARGIN
            page.text(MARGIN, y - 10, f"{_title(document)} (продолжение)", size=9, bold=True)
            y = _draw_table_header(page, y - 18)
        y = _draw_row(page, y, cells, description)
    _draw_totals(page, document, y)
    _draw_footer(page, document, page_number)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _draw_footer(page: _Page, document: InvoiceDocument, page_number: int) -> None:
    page.text(MARGIN, FOOTER_Y, f"{document.payee.legal_name} · {document.number}", size=6.5)
    page.right(PAGE_WIDTH - MARGIN, FOOTER_Y, f"стр. {page_number}", size=6.5)
