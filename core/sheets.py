"""Spreadsheets in and out, for any app: streamed rows, resources that save through the
owning app's services, an all-or-nothing import driver and streamed exports.

* ``read_rows`` yields ``{column: text}`` per data row of a CSV or XLSX file, streamed
  (``csv`` over the upload, openpyxl's read-only mode), so a 100,000-row file never sits
  in memory. A cell this module's exports quoted against formula injection (``'=...``)
  is read back without the quote.
* ``ServiceBackedResource`` is a django-import-export ``ModelResource`` whose rows are saved by
  the owning app's services (``service_save``), never by ``Model.save``: the admin's
  import (with its confirm step) and the staff UI's import run the same checks as the
  API. A refusal of a service (``DomainError``) becomes an invalid row naming its column
  and carrying the service's code; an unknown reference is ``not_found``.
* ``import_rows`` feeds streamed rows to a resource inside one database transaction,
  keeps only counts and the row errors ``{row, column, code, message}`` (``row`` is the
  line of the file, the header being line 1), refuses duplicates inside the file by the
  resource's ``file_unique`` keys, and rolls everything back on a dry run or when any
  row is refused. A resource with a ``batch_size`` gets its rows in batches: the
  batch's references looked up in one query per model, new rows checked without the
  database and created by the service's bulk creation (one savepoint per batch); the
  rows it refuses, rows with an ``id`` and the rows of a batch the bulk creation refused
  (or the rows it left, when the refusal bears on them only) go one at a time (a
  savepoint per row, so the rows after a refused one are still checked), which names
  the errors as without batches.
* ``export_response`` streams rows (a queryset through a resource) as CSV or XLSX.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from itertools import islice
from typing import Any, BinaryIO

from django.core.exceptions import (
    NON_FIELD_ERRORS,
    MultipleObjectsReturned,
    ObjectDoesNotExist,
    ValidationError,
)
from django.db import DataError, IntegrityError, transaction
from django.http import StreamingHttpResponse
from django.utils import timezone
from import_export import resources, widgets
from import_export.admin import ImportExportMixin
from import_export.exceptions import ImportError as ImportError_
from import_export.results import Result, RowResult
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell

from core.errors import DomainError
from core.forms import TextGuardedResource

MAX_ERRORS = 1000
CSV_CHUNK_ROWS = 1000
FILE_CHUNK = 256 * 1024
FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --------------------------------------------------------------------------- cells


def safe_text(value: str) -> str:
    """A cell starting with = + - @ is a formula to spreadsheet programs: quote it (OWASP
    CSV injection), unless it is a number such as -12.50 or +79161234567."""
    if value[:1] in FORMULA_STARTS:
        try:
            Decimal(value)
        except ArithmeticError:
            return "'" + value
    return value


def _unquoted(text: str) -> str:
    if text[:1] == "'" and text[1:2] in FORMULA_STARTS:
        return text[1:]
    return text


def cell_text(value: Any) -> str:
    """One cell as import text: dates as ISO, whole-number floats without ``.0``."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.time() == time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _unquoted(str(value).strip())


def read_rows(upload: BinaryIO, filename: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: text})`` per data row of a CSV (UTF-8) or XLSX file, streamed;
    ``line`` is the row's line in the file (the header is line 1; blank lines are
    skipped but counted, a CSV record spanning lines has the number of its first)."""
    if filename.lower().endswith(".xlsx"):
        sheet = load_workbook(upload, read_only=True, data_only=True).active
        values = sheet.iter_rows(values_only=True)
        header = [str(v or "").strip() for v in next(values, ())]
        for line, row in enumerate(values, start=2):
            if row is None or all(v is None for v in row):
                continue
            yield line, _named(header, row)
        return
    text = io.TextIOWrapper(upload, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    header = [name.strip() for name in next(reader, [])]
    last_line = reader.line_num
    for values in reader:
        first_line, last_line = last_line + 1, reader.line_num
        if not any(value.strip() for value in values):
            continue
        yield first_line, _named(header, values)


def _named(header: list[str], values: Any) -> dict[str, str]:
    """A row's cells by column name; a short row reads as empty cells."""
    return {
        name: cell_text(values[index]) if index < len(values) else ""
        for index, name in enumerate(header)
        if name
    }


# --------------------------------------------------------------------------- resources


class CellError(ValueError):
    """A cell that cannot be read, with a stable code."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class LookupWidget(widgets.ForeignKeyWidget):
    """A reference by a natural key (a number, a code); an unknown one is ``not_found``.

    The batched import (``import_rows``) looks a batch's references up in one query
    (``prefetch``); while that cache is set, a value it lacks is ``not_found`` too (the
    per-row path, which asks the database, then names the row's error).
    """

    batch_cache: dict[Any, list[Any]] | None = None

    def prefetchable(self) -> bool:
        """The lookup can be made for a whole batch: it does not depend on the row
        (``get_queryset`` not overridden), or the widget says how (``batch_objects``)."""
        return (
            type(self).get_queryset is widgets.ForeignKeyWidget.get_queryset
            or type(self).batch_objects is not LookupWidget.batch_objects
        )

    def batch_key(self, value: Any, row: Any) -> Any:
        """What names the record in the batch's cache (a widget whose look-up depends on
        the row's other columns adds them)."""
        return str(value)

    def batch_objects(self, keys: set[Any]) -> Iterable[tuple[Any, Any]]:
        """``(key, record)`` for the records the keys name, in one query."""
        query = self.get_queryset(None, None).filter(**{f"{self.field}__in": sorted(keys)})
        return ((str(getattr(obj, self.field)), obj) for obj in query)

    def prefetch(self, column: str, rows: Iterable[dict[str, Any]]) -> None:
        found: dict[Any, list[Any]] = {}
        keys = {self.batch_key(row.get(column), row) for row in rows if row.get(column)}
        if keys:
            for key, obj in self.batch_objects(keys):
                found.setdefault(key, []).append(obj)
        self.batch_cache = found

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        if self.batch_cache is not None and value:
            hits = self.batch_cache.get(self.batch_key(value, row), [])
            if len(hits) == 1:
                return hits[0]
            if not hits:
                raise CellError(f"No {self.model._meta.verbose_name} {value}.", "not_found")
            raise CellError(f"{value} names several records.", "ambiguous")
        try:
            return super().clean(value, row, **kwargs)
        except ObjectDoesNotExist:
            raise CellError(f"No {self.model._meta.verbose_name} {value}.", "not_found") from None
        except MultipleObjectsReturned:
            raise CellError(f"{value} names several records.", "ambiguous") from None


class CodesWidget(widgets.ManyToManyWidget):
    """A comma-separated list of codes; every one must exist (``not_found`` otherwise)."""

    batch_cache: dict[str, Any] | None = None

    def codes(self, value: Any) -> list[str]:
        return [c.strip() for c in str(value or "").split(self.separator) if c.strip()]

    def prefetch(self, column: str, rows: Iterable[dict[str, Any]]) -> None:
        """The codes of a whole batch of rows in one query (see ``LookupWidget``)."""
        wanted = sorted({code for row in rows for code in self.codes(row.get(column))})
        query = self.model.objects.filter(**{f"{self.field}__in": wanted})
        self.batch_cache = {str(getattr(obj, self.field)): obj for obj in query}

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        codes = self.codes(value)
        if self.batch_cache is not None:
            found = [self.batch_cache[c] for c in dict.fromkeys(codes) if c in self.batch_cache]
        else:
            found = list(self.model.objects.filter(**{f"{self.field}__in": codes}))
        missing = sorted(set(codes) - {str(getattr(obj, self.field)) for obj in found})
        if missing:
            raise CellError(f"Unknown: {', '.join(missing)}.", "not_found")
        return found

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        return self.separator.join(sorted(str(getattr(o, self.field)) for o in value.all()))


class MoneyWidget(widgets.DecimalWidget):
    """An amount: a finite, non-negative decimal with at most 2 places (``invalid_amount``);
    an empty cell is no amount."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Decimal | None:
        text = str(value if value is not None else "").strip()
        if not text:
            return None
        try:
            amount = Decimal(text)
        except ArithmeticError:
            raise CellError(f"{text!r} is not an amount.", "invalid_amount") from None
        if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
            raise CellError("A non-negative amount with 2 decimals.", "invalid_amount")
        return amount

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "" if value is None else str(value)


def _error_code(error: ValidationError) -> str:
    return error.code or "invalid"


class ServiceBackedResource(TextGuardedResource, resources.ModelResource):
    """A resource whose rows are saved by the owning app's services (see the module).

    Subclasses implement ``service_save(instance, is_create, row)``; they may name
    ``file_unique`` keys (tuples of columns; a row repeating an earlier row's non-empty
    key is a ``duplicate_in_file``) and ``required_columns``.
    """

    file_unique: tuple[tuple[str, ...], ...] = ()
    required_columns: tuple[str, ...] = ()
    # Rows per batch of the batched import (``import_rows``); 0: every row on its own.
    batch_size: int = 0

    class Meta:
        clean_model_instances = False
        skip_html_diff = True

    def service_save(self, instance: Any, is_create: bool, row: dict[str, Any]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- batched import
    # A resource with a ``batch_size`` implements ``batch_item`` and ``batch_create``:
    # ``batch_item`` checks a new row without asking the database (what the service would
    # check of it alone) and returns what ``batch_create`` hands the service's bulk
    # creation for the whole batch. A row it refuses, every row of a batch holding a row
    # with an ``id`` (a change, which may bear on the rows after it), and every row of a
    # batch the bulk creation refused go through the per-row path (``import_row``), in
    # the file's order, which names the errors exactly as without batches.

    def batch_item(self, instance: Any, row: dict[str, Any]) -> Any:
        raise NotImplementedError

    def batch_create(self, items: list[Any]) -> Collection[int] | None:
        """Create the batch's items. Raising one of ``BATCH_REFUSALS`` (``PerRow``) sends the
        whole batch to the per-row path; returning positions of ``items`` sends those rows
        there (the others having been created) when a refusal bears on them only."""
        raise NotImplementedError

    def batch_prefetch(self, rows: list[dict[str, Any]]) -> None:
        """Look up a batch's references in one query per referenced model."""
        for resource_field in self.get_import_fields():
            widget = resource_field.widget
            prefetch = isinstance(widget, CodesWidget) or (
                isinstance(widget, LookupWidget) and widget.prefetchable()
            )
            if prefetch:
                widget.prefetch(resource_field.column_name, rows)

    def batch_release(self) -> None:
        for resource_field in self.get_import_fields():
            if isinstance(resource_field.widget, LookupWidget | CodesWidget):
                resource_field.widget.batch_cache = None

    def _may_skip(self) -> bool:
        """Whether ``skip_row`` may skip a new row (import-export's skips only unchanged
        rows, with ``skip_unchanged``)."""
        overridden = type(self).skip_row is not resources.ModelResource.skip_row
        return overridden or bool(self._meta.skip_unchanged)

    def batch_prepare(self, batch: list[tuple[int, dict[str, Any]]]) -> _Batch:
        """Split a batch into items for ``batch_create`` and rows for the per-row path."""
        prepared = _Batch()
        if any(str(row.get("id") or "").strip() for _line, row in batch):
            # A change may bear on the rows after it (a payer moved, a name taken): the
            # batch goes row by row, in the file's order.
            prepared.single = list(batch)
            return prepared
        self.batch_prefetch([row for _line, row in batch])
        try:
            for line, row in batch:
                try:
                    self.before_import_row(row, row_number=line)
                    instance = self.init_instance(row)
                    self.import_instance(instance, row, row_number=line)
                    if self._may_skip() and self.skip_row(
                        instance, self.init_instance(row), row, {}
                    ):
                        raise PerRow
                    item = self.batch_item(instance, row)
                except BATCH_REFUSALS:
                    prepared.single.append((line, row))
                    continue
                prepared.ready.append((line, row, item))
        finally:
            self.batch_release()
        return prepared

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        super().before_import_row(row, **kwargs)
        self._refuse_duplicate(row, kwargs.get("row_number"))

    def _refuse_duplicate(self, row: Any, number: int | None) -> None:
        """A row repeating an earlier row's ``file_unique`` key (all its cells non-empty) is
        refused; the keys are kept as 16-byte digests, a few MB for 100,000 rows."""
        seen: dict[bytes, Any] = self.__dict__.setdefault("_seen_keys", {})
        for columns in self.file_unique:
            values = [str(row.get(column) or "").strip() for column in columns]
            if not all(values):
                continue
            key = hashlib.blake2b(
                "\x1f".join([",".join(columns), *values]).encode(), digest_size=16
            ).digest()
            first = seen.setdefault(key, number)
            if first != number:
                message = f"Repeats row {first} ({', '.join(columns)})."
                raise ValidationError(
                    {columns[-1]: ValidationError(message, code="duplicate_in_file")}
                )

    def after_init_instance(self, instance: Any, new: bool, row: Any, **kwargs: Any) -> None:
        if new and str(row.get("id") or "").strip():
            raise ValidationError({"id": ValidationError("No such record.", code="not_found")})
        super().after_init_instance(instance, new, row, **kwargs)

    def import_instance(self, instance: Any, row: Any, **kwargs: Any) -> None:
        errors = {}
        for resource_field in self.get_import_fields():
            if isinstance(resource_field.widget, widgets.ManyToManyWidget):
                continue
            try:
                self.import_field(resource_field, instance, row, **kwargs)
            except (ValueError, ArithmeticError) as exc:
                code = getattr(exc, "code", "invalid")
                message = str(exc) if isinstance(exc, ValueError) else "Not a number."
                errors[resource_field.attribute] = ValidationError(message, code=code)
        if errors:
            raise ValidationError(errors)

    def cleaned(self, name: str, row: dict[str, Any]) -> Any:
        """The value of the (m2m or read-only) field ``name`` read from ``row``."""
        resource_field = self.fields[name]
        try:
            return resource_field.clean(row)
        except (ValueError, ArithmeticError) as exc:
            code = getattr(exc, "code", "invalid")
            raise ValidationError(
                {resource_field.attribute or name: ValidationError(str(exc), code=code)}
            ) from None

    def save_instance(self, instance: Any, is_create: bool, row: Any, **kwargs: Any) -> None:
        self.before_save_instance(instance, row, **kwargs)
        try:
            self.service_save(instance, is_create, row)
        except DomainError as exc:
            column = str(exc.details.get("field") or NON_FIELD_ERRORS)
            raise ValidationError({column: ValidationError(exc.message, code=exc.code)}) from None
        self.after_save_instance(instance, row, **kwargs)

    def save_m2m(self, instance: Any, row: Any, **kwargs: Any) -> None:
        """Relations are set by the services in ``service_save``."""

    def after_import(self, dataset: Any, result: Any, **kwargs: Any) -> None:
        """No sequence reset (``ModelResource``'s, for rows inserted with their ids): the
        services insert without ids, and the runtime role may not ``setval`` (the
        failure rolled the admin's import back after reporting it finished)."""

    def import_data(
        self,
        dataset: Any,
        dry_run: bool = False,
        raise_errors: bool = False,
        use_transactions: bool | None = None,
        collect_failed_rows: bool = False,
        rollback_on_validation_errors: bool = False,
        **kwargs: Any,
    ) -> Result:
        """The admin's import (its dry run, then the confirm step) through ``import_rows``,
        as the staff UI imports: batched when the resource has a ``batch_size``, all rows
        or none. Rows are numbered as django-import-export numbers them (the first data
        row is 1); refused rows become its invalid rows (a ``ValidationError``) or error
        rows. Only counts and refused rows are kept: the preview lists no accepted rows,
        and the confirm step writes no admin log entry per row (the audit trail records
        every record)."""
        result = self.get_result_class()()
        result.diff_headers = self.get_diff_headers()
        result.total_rows = len(dataset)
        header = [str(name or "").strip() for name in dataset.headers or []]
        reported: set[int] = set()

        def refused(number: int, row: dict[str, Any], row_result: RowResult) -> None:
            reported.add(number)
            if row_result.validation_error is not None:
                result.append_invalid_row(number, row, row_result.validation_error)
                result.totals[RowResult.IMPORT_TYPE_INVALID] += 1
            else:
                row_result.import_type = RowResult.IMPORT_TYPE_ERROR
                result.append_error_row(number, row, row_result.errors)
                result.append_row_result(row_result)
                result.totals[RowResult.IMPORT_TYPE_ERROR] += 1

        outcome = import_rows(
            resource=self,
            rows=((number, _named(header, values)) for number, values in enumerate(dataset, 1)),
            dry_run=dry_run,
            on_refused=refused,
        )
        for error in outcome.errors:  # refusals of the file (a missing column)
            if error["row"] not in reported:
                reported.add(error["row"])
                problem = ValidationError(error["message"], code=error["code"])
                result.append_invalid_row(error["row"], {}, ValidationError([problem]))
        result.totals[RowResult.IMPORT_TYPE_NEW] = outcome.new
        result.totals[RowResult.IMPORT_TYPE_UPDATE] = outcome.updated
        result.totals[RowResult.IMPORT_TYPE_SKIP] = outcome.skipped
        if raise_errors and outcome.errors:
            first = outcome.errors[0]
            raise ImportError_(first["message"], number=first["row"])
        return result

    def column_of(self, attribute: str) -> str:
        for resource_field in self.fields.values():
            if resource_field.attribute == attribute:
                return resource_field.column_name
        return "" if attribute == NON_FIELD_ERRORS else attribute


class SheetAdminMixin(ImportExportMixin):
    """A ``ModelAdmin`` mixin: django-import-export's import (a dry run listing the row
    errors, then the confirm step) and export, the import for users holding every one of
    ``import_permissions`` (the permissions of the records it creates or changes)."""

    import_permissions: tuple[str, ...] = ()

    def has_import_permission(self, request: Any) -> bool:
        return bool(self.import_permissions) and request.user.has_perms(self.import_permissions)


# --------------------------------------------------------------------------- imports


@dataclass
class ImportOutcome:
    """What an import did (or, on a dry run or a refusal, would have done)."""

    rows: int = 0
    new: int = 0
    updated: int = 0
    skipped: int = 0
    dry_run: bool = True
    written: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def created(self) -> int:
        """New records made (on a dry run: that would be made); 0 once a row is refused."""
        return 0 if self.errors else self.new

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "new": self.new,
            "updated": self.updated,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "written": self.written,
            "errors": self.errors,
        }


class _Rollback(Exception):
    pass


class PerRow(Exception):
    """Raised by a resource's ``batch_item`` (for a row) or ``batch_create`` (for the
    whole batch): leave it to the per-row path, which names the errors."""


@dataclass
class _Batch:
    ready: list[tuple[int, dict[str, Any], Any]] = field(default_factory=list)
    single: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


# What sends a row (or a whole batch) to the per-row path, which names the error.
BATCH_REFUSALS = (
    PerRow, ValidationError, DomainError, ValueError, ArithmeticError, ObjectDoesNotExist,
    IntegrityError, DataError,
)  # fmt: skip


class _RowRefused(Exception):
    def __init__(self, result: RowResult) -> None:
        self.result = result


def _row_errors(resource: ServiceBackedResource, line: int, result: RowResult) -> list[dict]:
    found = []
    if result.validation_error is not None:
        error = result.validation_error
        items = error.error_dict.items() if hasattr(error, "error_dict") else [("", [error])]
        for attribute, problems in items:
            for problem in problems:
                for message in problem.messages:
                    found.append(
                        {"row": line, "column": resource.column_of(attribute),
                         "code": _error_code(problem), "message": message}
                    )  # fmt: skip
    for error in result.errors:
        exc = error.error
        code = getattr(exc, "code", None) or "invalid"
        found.append({"row": line, "column": "", "code": str(code), "message": str(exc)})
    return found or [{"row": line, "column": "", "code": "invalid", "message": "Refused."}]


def import_rows(
    *,
    resource: ServiceBackedResource,
    rows: Iterable[tuple[int, dict[str, Any]]],
    dry_run: bool = True,
    batch_size: int | None = None,
    on_refused: Callable[[int, dict[str, Any], RowResult], None] | None = None,
) -> ImportOutcome:
    """Import streamed rows through ``resource``: all rows or none (see the module).
    ``on_refused(line, row, row_result)`` is told of each refused row (the admin's
    import lists them as django-import-export's invalid and error rows)."""
    outcome = ImportOutcome(dry_run=dry_run)
    loader = resource._meta.instance_loader_class(resource, None)
    rows = iter(rows)
    first = next(rows, None)
    if first is not None:
        missing = [c for c in resource.required_columns if c not in first[1]]
        if missing:
            outcome.errors.append(
                {"row": 1, "column": ", ".join(missing), "code": "missing_column",
                 "message": f"The header lacks {', '.join(missing)}."}
            )  # fmt: skip
            return outcome
    counted = {
        RowResult.IMPORT_TYPE_NEW: "new",
        RowResult.IMPORT_TYPE_UPDATE: "updated",
        RowResult.IMPORT_TYPE_SKIP: "skipped",
    }

    def one(line: int, row: dict[str, Any]) -> None:
        try:
            with transaction.atomic():
                result = resource.import_row(
                    row, loader, dry_run=False, using_transactions=True, row_number=line
                )
                if result.errors or result.validation_error is not None:
                    raise _RowRefused(result)
        except _RowRefused as refused:
            outcome.errors.extend(_row_errors(resource, line, refused.result))
            if on_refused is not None:
                on_refused(line, row, refused.result)
            return
        name = counted.get(result.import_type)
        if name:
            setattr(outcome, name, getattr(outcome, name) + 1)

    try:
        with transaction.atomic():
            if batch_size is None:
                batch_size = resource.batch_size
            if batch_size > 0:
                _import_batches(resource, _chain(first, rows), batch_size, outcome, one)
            else:
                for line, row in _chain(first, rows):
                    outcome.rows += 1
                    if len(outcome.errors) >= MAX_ERRORS:
                        continue  # count the rest, stop checking
                    one(line, row)
            if dry_run or outcome.errors:
                raise _Rollback
            outcome.written = True
    except _Rollback:
        pass
    return outcome


def _import_batches(
    resource: ServiceBackedResource,
    rows: Iterator[tuple[int, dict[str, Any]]],
    size: int,
    outcome: ImportOutcome,
    one: Any,
) -> None:
    """The batched path: per batch, one look-up per referenced model, the new rows the
    resource accepts created by one bulk call of the service (in a savepoint: refused,
    the whole batch goes row by row), the other rows one at a time (``one``)."""
    while batch := list(islice(rows, size)):
        outcome.rows += len(batch)
        if len(outcome.errors) >= MAX_ERRORS:
            continue  # count the rest, stop checking
        prepared = resource.batch_prepare(batch)
        single = prepared.single
        if prepared.ready:
            try:
                with transaction.atomic():
                    left = resource.batch_create([item for _line, _row, item in prepared.ready])
                left = set(left or ())
                outcome.new += len(prepared.ready) - len(left)
                single = sorted(
                    single + [(line, row) for n, (line, row, _item) in enumerate(prepared.ready)
                              if n in left],
                    key=lambda pair: pair[0],
                )  # fmt: skip
            except BATCH_REFUSALS:
                single = sorted(
                    single + [(line, row) for line, row, _item in prepared.ready],
                    key=lambda pair: pair[0],
                )
        for line, row in single:
            if len(outcome.errors) >= MAX_ERRORS:
                break
            one(line, row)


def _chain(first: tuple | None, rest: Iterator[tuple]) -> Iterator[tuple]:
    if first is None:
        return
    yield first
    yield from rest


def import_file(
    *,
    resource: ServiceBackedResource,
    upload: BinaryIO,
    filename: str,
    dry_run: bool = True,
    batch_size: int | None = None,
) -> ImportOutcome:
    """``import_rows`` over a CSV or XLSX file; an unreadable file is one row-1 error."""
    try:
        return import_rows(
            resource=resource,
            rows=read_rows(upload, filename),
            dry_run=dry_run,
            batch_size=batch_size,
        )
    except (UnicodeDecodeError, csv.Error, OSError, KeyError, ValueError) as exc:
        outcome = ImportOutcome(dry_run=dry_run)
        outcome.errors.append(
            {"row": 1, "column": "", "code": "unreadable_file",
             "message": f"Not a UTF-8 CSV or an XLSX workbook ({type(exc).__name__})."}
        )  # fmt: skip
        return outcome


# --------------------------------------------------------------------------- exports


def _export_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat() if timezone.is_aware(value) else str(value)
    return safe_text(str(value))


def _resource_rows(resource: Any, queryset: Any) -> Iterator[list[Any]]:
    for obj in resource.iter_queryset(queryset):
        yield resource.export_resource(obj)


def csv_chunks(headers: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """CSV text a thousand rows at a time (for a streamed response); formula-like text quoted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    for count, row in enumerate(rows, start=1):
        writer.writerow([_export_text(value) for value in row])
        if count % CSV_CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _xlsx_cell(sheet: Any, value: Any) -> Any:
    if isinstance(value, Decimal):
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = "0.00" if value == value.quantize(Decimal("0.01")) else "General"
        return cell
    if isinstance(value, datetime):
        return WriteOnlyCell(sheet, value=_export_text(value))
    if isinstance(value, date | int | bool):
        return WriteOnlyCell(sheet, value=value)
    return WriteOnlyCell(sheet, value=_export_text(value))


def _xlsx_chunks(headers: list[str], rows: Iterable[list[Any]]) -> Iterator[bytes]:
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet()
        sheet.append(headers)
        for row in rows:
            sheet.append([_xlsx_cell(sheet, value) for value in row])
        workbook.save(path)
        with open(path, "rb") as stream:
            while chunk := stream.read(FILE_CHUNK):
                yield chunk
    finally:
        os.unlink(path)


def export_rows_response(
    *, headers: list[str], rows: Iterable[list[Any]], name: str, fmt: str
) -> StreamingHttpResponse:
    """Rows as a streamed CSV or XLSX download."""
    chunks = _xlsx_chunks(headers, rows) if fmt == "xlsx" else csv_chunks(headers, rows)
    response = StreamingHttpResponse(chunks, content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def export_response(*, resource: Any, queryset: Any, name: str, fmt: str) -> StreamingHttpResponse:
    """A queryset through a django-import-export resource, streamed as CSV or XLSX."""
    return export_rows_response(
        headers=resource.get_export_headers(),
        rows=_resource_rows(resource, queryset),
        name=name,
        fmt=fmt,
    )
