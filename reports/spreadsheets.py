"""Spreadsheets in: accounts with their limits and payers, from CSV or XLSX.

Rows are read as a stream (``csv`` or openpyxl's read-only mode) and handled one at a
time, so a 100,000-row file never sits in memory (only the database transaction grows).
Every row goes through the owning app's service (``accounts.services.account_create``):
the same checks as the admin and the API (currency, payer structure, limits). The
whole file is one database transaction: a refused row is reported as ``{row, column,
code, message}`` (``row`` is the line of the file, the header being line 1) and, when
any row is refused, nothing at all is written. A dry run does the same work and always
rolls back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from django.db import transaction
from openpyxl import load_workbook

from accounts.models import Account, Client
from accounts.services import account_create
from brands.models import Brand
from core.errors import DomainError
from core.text import text_problem

MAX_ERRORS = 1000
ACCOUNT_COLUMNS = (
    "client_tax_id", "client_external_ref", "currency", "brands", "parent", "name",
    "credit_limit", "credit_period_days", "credit_expires_at", "write_off_limit_transaction",
    "write_off_limit_day", "write_off_limit_month",
)  # fmt: skip
MONEY_COLUMNS = (
    "credit_limit", "write_off_limit_transaction", "write_off_limit_day",
    "write_off_limit_month",
)  # fmt: skip


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    dry_run: bool = True
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class RowError(Exception):
    def __init__(self, column: str, code: str, message: str) -> None:
        super().__init__(message)
        self.column, self.code, self.message = column, code, message


class _Rollback(Exception):
    pass


def _rows(upload: BinaryIO, filename: str) -> Iterator[dict[str, str]]:
    """``{column: text}`` per data row, streamed."""
    if filename.lower().endswith(".xlsx"):
        sheet = load_workbook(upload, read_only=True, data_only=True).active
        values = sheet.iter_rows(values_only=True)
        header = [str(v or "").strip() for v in next(values, ())]
        for row in values:
            yield {
                h: "" if v is None else (v.isoformat() if isinstance(v, date) else str(v))
                for h, v in zip(header, row, strict=False)
            }
        return
    text = io.TextIOWrapper(upload, encoding="utf-8-sig", newline="")
    yield from csv.DictReader(text)


def _money(row: dict, column: str) -> Decimal | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RowError(column, "invalid_amount", f"{text!r} is not an amount.") from None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise RowError(column, "invalid_amount", "A non-negative amount with 2 decimals.")
    return value


class _Lookups:
    """Clients, payers and brands named by rows, cached per chunk-independent key."""

    def __init__(self) -> None:
        self.brands = {b.code: b for b in Brand.objects.all()}

    def client(self, row: dict) -> Client:
        tax_id = (row.get("client_tax_id") or "").strip()
        ref = (row.get("client_external_ref") or "").strip()
        if tax_id:
            found = Client.objects.filter(tax_id=tax_id).first()
            column = "client_tax_id"
        elif ref:
            found = Client.objects.filter(external_ref=ref).first()
            column = "client_external_ref"
        else:
            raise RowError("client_tax_id", "required", "Name the client by tax id or ref.")
        if found is None:
            raise RowError(column, "not_found", "No such client.")
        return found

    def parent(self, row: dict) -> Account | None:
        number = (row.get("parent") or "").strip()
        if not number:
            return None
        found = Account.objects.filter(number=number, kind=Account.Kind.CLIENT).first()
        if found is None:
            raise RowError("parent", "not_found", f"No account {number}.")
        return found

    def brand_list(self, row: dict) -> list[Brand]:
        codes = [c.strip() for c in (row.get("brands") or "").split(",") if c.strip()]
        missing = [c for c in codes if c not in self.brands]
        if missing:
            raise RowError("brands", "not_found", f"Unknown brands: {', '.join(missing)}.")
        return [self.brands[c] for c in codes]


def _account_row(row: dict, lookups: _Lookups) -> None:
    for column, value in row.items():
        if value and text_problem(str(value)) is not None:
            raise RowError(str(column), "invalid_text", "Text with NUL or unpaired surrogates.")
    try:
        days_text = (row.get("credit_period_days") or "").strip()
        days = int(days_text) if days_text else None
        if days is not None and not 0 <= days < 100_000:
            raise ValueError
    except ValueError:
        raise RowError("credit_period_days", "invalid", "A whole number of days.") from None
    try:
        expires_text = (row.get("credit_expires_at") or "").strip()[:10]
        expires = date.fromisoformat(expires_text) if expires_text else None
    except ValueError:
        raise RowError("credit_expires_at", "invalid", "A date YYYY-MM-DD.") from None
    limits = {column: _money(row, column) for column in MONEY_COLUMNS}
    account_create(
        client=lookups.client(row),
        currency=(row.get("currency") or "").strip() or None,
        brands=lookups.brand_list(row),
        parent=lookups.parent(row),
        name=(row.get("name") or "").strip()[:200],
        credit_limit=limits.pop("credit_limit") or Decimal("0.00"),
        credit_period_days=days,
        credit_expires_at=expires,
        **limits,
    )


def accounts_import(*, upload: BinaryIO, filename: str, dry_run: bool = True) -> ImportResult:
    """Import accounts (see the module); all rows or none."""
    result = ImportResult(dry_run=dry_run)
    lookups = _Lookups()
    try:
        with transaction.atomic():
            for line, row in enumerate(_rows(upload, filename), start=2):
                result.rows += 1
                if len(result.errors) >= MAX_ERRORS:
                    continue  # count the rest, stop checking
                try:
                    with transaction.atomic():
                        _account_row(row, lookups)
                    result.created += 1
                except RowError as exc:
                    result.errors.append(
                        {"row": line, "column": exc.column, "code": exc.code,
                         "message": exc.message}
                    )  # fmt: skip
                except DomainError as exc:
                    column = str(exc.details.get("field") or "")
                    result.errors.append(
                        {"row": line, "column": column, "code": exc.code, "message": exc.message}
                    )
            if dry_run or result.errors:
                raise _Rollback
    except _Rollback:
        if result.errors or dry_run:
            result.created = 0 if result.errors else result.created
    return result
