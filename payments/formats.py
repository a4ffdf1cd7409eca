"""Reading registry files: the built-in formats and the layouts staff describe.

Every format is a ``Layout`` (encoding, delimiter, where each field sits, how
amounts and dates are written, the control line); the built-in ones are
constants here, a staff-described one comes from a ``RegistryLayout`` row. One
reader, ``parse_registry(layout, data)``, turns the bytes into

* ``rows``: the payment lines that could be read (``ParsedRow``);
* ``errors``: the lines that could not, each with its line number, the column
  and a stable code (``RowError``);
* the file's own control figures and the ones counted from its lines.

A file that cannot be a registry of this layout at all (wrong encoding, no
control line, control figures that do not match the lines) raises
``RegistryRefused`` with the reason in ``details["reason"]``. Row errors are
returned, not raised: the preview shows them, and applying refuses the file
while any remain (a file is applied whole or not at all).

Row error codes: ``wrong_column_count``, ``missing_value``, ``invalid_amount``,
``invalid_date``, ``invalid_commission``, ``value_too_long``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from payments.exceptions import RegistryRefused

CENT = Decimal("0.01")
ZERO = Decimal("0")
MAX_ROWS = 1_000_000
FIELD_LIMITS = {"payment_id": 64, "account": 40, "payer": 300, "address": 500, "period": 20}
REQUIRED = ("payment_id", "account", "amount")
KNOWN_FIELDS = (
    "payment_id",
    "account",
    "amount",
    "paid_at",
    "paid_time",
    "payer",
    "address",
    "period",
    "commission",
)
ISO = "iso"


@dataclass(frozen=True)
class Layout:
    """How one kind of registry file is written (see ``payments.models.RegistryLayout``)."""

    name: str
    encoding: str
    delimiter: str
    columns: dict[str, int]
    quoted: bool = False
    decimal_separator: str = "."
    date_format: str = ISO
    header_lines: int = 0
    footer_lines: int = 0
    control_line: str = "none"  # none | first | last
    control_prefix: str = ""
    control_columns: dict[str, int] = field(default_factory=dict)
    # The header line expected after the control line (built-in formats check it).
    header: tuple[str, ...] | None = None


SBER_TXT = Layout(
    name="sber-txt",
    encoding="cp1251",
    delimiter=";",
    decimal_separator=",",
    date_format="%d-%m-%Y %H:%M:%S",
    columns={
        "paid_at": 0,
        "paid_time": 1,
        "payment_id": 4,
        "account": 5,
        "payer": 6,
        "address": 7,
        "period": 8,
        "amount": 9,
        "commission": 11,
    },
    control_line="last",
    control_prefix="=",
    control_columns={"count": 0, "total": 1, "commission": 3},
)

CSV_TOTAL = Layout(
    name="csv-total",
    encoding="utf-8",
    delimiter=",",
    quoted=True,
    date_format=ISO,
    columns={"payment_id": 0, "paid_at": 1, "account": 2, "payer": 3, "amount": 4, "period": 5},
    header_lines=1,
    header=("payment_id", "paid_at", "account", "payer", "amount", "period"),
    control_line="first",
    control_prefix="#TOTAL",
    control_columns={"count": 0, "total": 1},
)

BUILT_IN = {SBER_TXT.name: SBER_TXT, CSV_TOTAL.name: CSV_TOTAL}


def layout_problems(layout: Layout) -> dict[str, str]:
    """What is wrong with a described layout (empty: it can read files), by field."""
    problems: dict[str, str] = {}
    try:
        "".encode(layout.encoding)
    except LookupError:
        problems["encoding"] = f"Unknown encoding {layout.encoding!r}."
    if len(layout.delimiter) != 1 or layout.delimiter in "\r\n":
        problems["delimiter"] = "One character, not a line break."
    columns = layout.columns
    if not isinstance(columns, dict):
        problems["columns"] = "A mapping of field name to 0-based column position."
    else:
        missing = [name for name in REQUIRED if name not in columns]
        unknown = sorted(set(columns) - set(KNOWN_FIELDS))
        bad = [name for name, pos in columns.items() if not isinstance(pos, int) or pos < 0]
        if missing or unknown or bad:
            problems["columns"] = "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(unknown)} (known: {', '.join(KNOWN_FIELDS)})"
                    if unknown
                    else "",
                    f"positions must be integers >= 0 ({', '.join(bad)})" if bad else "",
                )
                if part
            )
        elif len(set(columns.values())) != len(columns):
            problems["columns"] = "Two fields share a column."
    if layout.control_line != "none":
        cc = layout.control_columns
        if (
            not isinstance(cc, dict)
            or not {"count", "total"} <= set(cc)
            or set(cc) - {"count", "total", "commission"}
            or any(not isinstance(v, int) or v < 0 for v in cc.values())
        ):
            problems["control_columns"] = (
                'Positions of "count" and "total" (and optionally "commission") in the control'
                " line, after its prefix."
            )
    if layout.date_format != ISO:
        try:
            datetime.now().strftime(layout.date_format)
        except ValueError:
            problems["date_format"] = "Not a valid strftime format."
    return problems


@dataclass(slots=True)
class ParsedRow:
    row: int  # line number in the file, 1-based
    payment_id: str
    account: str
    amount: Decimal
    commission: Decimal | None
    paid_at: datetime | None
    payer: str
    address: str
    period: str
    raw: str


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "code": self.code, "message": self.message}


@dataclass(slots=True)
class ParsedRegistry:
    rows: list[ParsedRow]
    errors: list[RowError]
    lines: int  # payment lines in the file, readable or not
    total: Decimal  # sum of the readable amounts
    control_count: int
    control_total: Decimal
    control_commission: Decimal | None
    has_commission: bool  # the lines carry their own commission


def refuse(reason: str, message: str, **details: Any) -> RegistryRefused:
    return RegistryRefused(message, reason=reason, **details)


def _decode(layout: Layout, data: bytes) -> str:
    encoding = layout.encoding.lower().replace("_", "-")
    if encoding in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # a byte-order mark is tolerated
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise refuse(
            "wrong_encoding",
            f"The file is not valid {layout.encoding} text (byte {exc.start}): is it in another"
            " encoding?",
            encoding=layout.encoding,
            position=exc.start,
        ) from None
    if encoding != "utf-8-sig" and not data.isascii():
        # A single-byte encoding reads any bytes; a file that is valid UTF-8 with non-ASCII
        # characters was almost surely written in UTF-8 instead.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise refuse(
                "wrong_encoding",
                f"The file is UTF-8 text, but this agent's registries are {layout.encoding}.",
                encoding=layout.encoding,
            )
    if "\x00" in text:
        raise refuse("wrong_encoding", "The file contains NUL characters: not a text registry.")
    return text


def _split(layout: Layout, line: str) -> list[str]:
    if layout.quoted:
        try:
            return next(csv.reader([line], delimiter=layout.delimiter, strict=True))
        except (csv.Error, StopIteration):
            return []
    return line.split(layout.delimiter)


_AMOUNT = {
    ".": re.compile(r"^\d{1,16}(\.\d{1,2})?$"),
    ",": re.compile(r"^\d{1,16}(,\d{1,2})?$"),
}


def parse_amount(layout: Layout, text: str) -> Decimal | None:
    """A non-negative amount as the layout writes it, or None when it is not one."""
    text = text.strip().replace(" ", "").replace("\u00a0", "")
    if not _AMOUNT[layout.decimal_separator].match(text):
        return None
    try:
        return Decimal(text.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        return None


def _parse_moment(layout: Layout, text: str) -> datetime | None:
    text = text.strip()
    try:
        if layout.date_format == ISO:
            moment = datetime.fromisoformat(text)
        else:
            moment = datetime.strptime(text, layout.date_format)
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _control(layout: Layout, line: str, line_no: int) -> tuple[int, Decimal, Decimal | None]:
    rest = line.strip()
    if not rest.startswith(layout.control_prefix):
        raise refuse(
            "control_line_missing",
            f"Line {line_no} should be the control line starting with {layout.control_prefix!r}.",
            row=line_no,
        )
    rest = rest[len(layout.control_prefix) :]
    if rest.startswith(layout.delimiter):
        rest = rest[1:]
    parts = _split(layout, rest)
    cc = layout.control_columns

    def part(name: str) -> str | None:
        pos = cc.get(name)
        return parts[pos].strip() if pos is not None and pos < len(parts) else None

    count_text, total_text = part("count"), part("total")
    count = int(count_text) if count_text and count_text.isdigit() else None
    total = parse_amount(layout, total_text) if total_text is not None else None
    commission = None
    if "commission" in cc:
        commission_text = part("commission")
        commission = parse_amount(layout, commission_text) if commission_text else None
        if commission is None:
            count = None
    if count is None or total is None:
        raise refuse(
            "control_line_malformed",
            f"The control line (line {line_no}) cannot be read: {line.strip()[:200]!r}.",
            row=line_no,
        )
    return count, total, commission


def parse_registry(layout: Layout, data: bytes) -> ParsedRegistry:
    """Read a registry file; see the module docstring."""
    text = _decode(layout, data)
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    control = None
    if layout.control_line == "first":
        if not numbered:
            raise refuse("empty_file", "The file is empty.")
        control = _control(layout, numbered[0][1], numbered[0][0])
        numbered = numbered[1:]
    elif layout.control_line == "last":
        if not numbered:
            raise refuse("empty_file", "The file is empty.")
        control = _control(layout, numbered[-1][1], numbered[-1][0])
        numbered = numbered[:-1]
    header = numbered[: layout.header_lines]
    numbered = numbered[layout.header_lines : len(numbered) - layout.footer_lines or None]
    if layout.header is not None:
        got = tuple(h.strip().lower() for h in _split(layout, header[0][1])) if header else ()
        if got != layout.header:
            raise refuse(
                "unparseable",
                f"The header line should be {','.join(layout.header)!r}.",
                row=header[0][0] if header else None,
            )
    if len(numbered) > MAX_ROWS:
        raise refuse("unparseable", f"At most {MAX_ROWS} payment lines in one file.")

    columns = layout.columns
    width = max(columns.values()) + 1
    has_commission = "commission" in columns
    rows: list[ParsedRow] = []
    errors: list[RowError] = []
    total = ZERO
    moments: dict[str, datetime | None] = {}
    for line_no, line in numbered:
        parts = _split(layout, line)
        if len(parts) < width:
            errors.append(
                RowError(
                    line_no,
                    None,
                    "wrong_column_count",
                    f"Expected at least {width} fields separated by {layout.delimiter!r},"
                    f" found {len(parts)}.",
                )
            )
            continue
        values = {name: parts[pos].strip() for name, pos in columns.items()}
        row_errors = []
        for name in REQUIRED:
            if not values[name]:
                row_errors.append(RowError(line_no, name, "missing_value", f"No {name}."))
        for name, limit in FIELD_LIMITS.items():
            if len(values.get(name, "")) > limit:
                row_errors.append(
                    RowError(line_no, name, "value_too_long", f"At most {limit} characters.")
                )
        amount = parse_amount(layout, values["amount"]) if values["amount"] else None
        if values["amount"] and (amount is None or amount <= 0):
            row_errors.append(
                RowError(
                    line_no,
                    "amount",
                    "invalid_amount",
                    f"{values['amount']!r} is not a positive amount with at most two decimals"
                    f" (decimal separator {layout.decimal_separator!r}).",
                )
            )
        commission = None
        if has_commission:
            commission = parse_amount(layout, values["commission"] or "0")
            if commission is None:
                row_errors.append(
                    RowError(
                        line_no,
                        "commission",
                        "invalid_commission",
                        f"{values['commission']!r} is not an amount.",
                    )
                )
        paid_at = None
        if values.get("paid_at"):
            moment_text = values["paid_at"]
            if "paid_time" in values:
                moment_text = f"{moment_text} {values['paid_time']}"
            # A registry's lines share a few dates and times: each is parsed once.
            if moment_text in moments:
                paid_at = moments[moment_text]
            else:
                paid_at = moments[moment_text] = _parse_moment(layout, moment_text)
            if paid_at is None:
                row_errors.append(
                    RowError(
                        line_no,
                        "paid_at",
                        "invalid_date",
                        f"{moment_text!r} does not match"
                        f" {'ISO 8601' if layout.date_format == ISO else layout.date_format!r}.",
                    )
                )
        if amount is not None and amount > 0:
            total += amount
        if row_errors:
            errors.extend(row_errors)
            continue
        rows.append(
            ParsedRow(
                row=line_no,
                payment_id=values["payment_id"],
                account=values["account"],
                amount=amount,
                commission=commission,
                paid_at=paid_at,
                payer=values.get("payer", ""),
                address=values.get("address", ""),
                period=values.get("period", ""),
                raw=line,
            )
        )
    lines = len(numbered)
    if not lines:
        raise refuse("empty_file", "The file has no payment lines.")
    amount_errors = any(e.column == "amount" or e.column is None for e in errors)
    if control is None:
        control_count, control_total, control_commission = lines, total, None
    else:
        control_count, control_total, control_commission = control
        if control_count != lines:
            raise refuse(
                "control_count_mismatch",
                f"The control line says {control_count} payments, the file has {lines}.",
                control_count=control_count,
                count=lines,
            )
        if not amount_errors and control_total != total:
            raise refuse(
                "control_total_mismatch",
                f"The control line says {control_total}, the payments add up to {total}.",
                control_total=str(control_total),
                total=str(total),
            )
        commission_sum = sum((r.commission or ZERO for r in rows), ZERO)
        if (
            control_commission is not None
            and has_commission
            and not errors
            and control_commission != commission_sum
        ):
            raise refuse(
                "control_commission_mismatch",
                f"The control line says a commission of {control_commission}, the lines add up"
                f" to {commission_sum}.",
                control_commission=str(control_commission),
                commission=str(commission_sum),
            )
    return ParsedRegistry(
        rows=rows,
        errors=errors,
        lines=lines,
        total=total,
        control_count=control_count,
        control_total=control_total,
        control_commission=control_commission,
        has_commission=has_commission,
    )


def commission_of(amount: Decimal, rate: Decimal) -> Decimal:
    """An agent's commission on one payment at ``rate`` percent, to the cent (half up)."""
    return (amount * rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
