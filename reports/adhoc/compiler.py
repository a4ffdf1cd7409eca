"""Ad-hoc definitions: validated against the whitelist, compiled to one parameterised query.

A definition is JSON::

    {"dataset": "entries",
     "dimensions": ["brand", "month"],
     "measures": [{"agg": "sum", "field": "amount"}, {"agg": "count"}],
     "filters": [{"field": "kind", "op": "in", "value": ["debit", "accrual"]}],
     "order_by": ["-sum_amount"], "limit": 1000}

Every name is looked up in ``reports.adhoc.datasets``; anything else is refused with
``400 validation_error`` naming the part of the definition (``InvalidDefinition``).
Values are typed by their field and passed as query parameters. With measures the
query groups by the dimensions; without, it lists rows (the dimensions as columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings

from core.text import text_problem
from reports.adhoc.datasets import AGGREGATES, DATASETS, DATE, INT, MONEY, OPERATORS, Field
from reports.standard.base import Column, Report, ReportError, fetch, stream

MAX_ROWS = 100_000  # a JSON answer; exports stream without a limit
MAX_LIST = 1000
MAX_TEXT = 200
NAMES = ("dimensions", "measures", "filters")


class InvalidDefinition(ReportError):
    """A definition outside the whitelist; ``errors`` names every part at fault."""

    code = "invalid_definition"

    def __init__(self, part: str, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message, field=part)
        self.errors = errors or {part: [message]}


@dataclass(frozen=True)
class Measure:
    agg: str
    field: str | None

    @property
    def key(self) -> str:
        return self.agg if self.field is None else f"{self.agg}_{self.field}"


@dataclass(frozen=True)
class Compiled:
    sql: str
    params: dict[str, Any]
    columns: list[Column]


def _list(definition: dict, part: str) -> list:
    value = definition.get(part, [])
    if not isinstance(value, list):
        raise InvalidDefinition(part, f"{part} is a list.")
    return value


def _typed(field: Field, value: Any, part: str) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        raise InvalidDefinition(part, "A filter value is a string or a number.")
    try:
        if field.kind == DATE:
            return date.fromisoformat(str(value))
        if field.kind == MONEY:
            amount = Decimal(str(value))
            if not amount.is_finite():
                raise InvalidOperation
            return amount
        if field.kind == INT:
            number = int(str(value))
            if abs(number) >= 2**63:
                raise ValueError
            return number
    except (ValueError, InvalidOperation):
        raise InvalidDefinition(part, f"{value!r} is not a {field.kind} value.") from None
    text = str(value)
    problem = text_problem(text)
    if problem is not None or len(text) > MAX_TEXT:
        raise InvalidDefinition(part, f"Text values are at most {MAX_TEXT} printable characters.")
    return text


def parse(definition: Any) -> tuple[str, list[str], list[Measure], list[tuple], list[str], int]:
    """The validated parts of a definition, or ``InvalidDefinition`` naming every part at
    fault (each part is checked on its own, so one mistake does not hide another)."""
    if not isinstance(definition, dict):
        raise InvalidDefinition("definition", "A definition is a JSON object.")
    errors: dict[str, list[str]] = {}

    def check(part: str, validate: Any) -> Any:
        try:
            return validate()
        except InvalidDefinition as exc:
            errors.setdefault(part, []).append(exc.message)
            return None

    check("definition", lambda: _check_keys(definition))
    check("name", lambda: _check_name(definition.get("name")))
    name = check("dataset", lambda: _check_dataset(definition.get("dataset")))
    dataset = DATASETS.get(name) if name else None
    dimensions = check("dimensions", lambda: _check_dimensions(definition, dataset)) or []
    measures = check("measures", lambda: _check_measures(definition, dataset)) or []
    filters = check("filters", lambda: _check_filters(definition, dataset)) or []
    keys = [*dimensions, *(m.key for m in measures)]
    order_by = check("order_by", lambda: _check_order(definition, keys)) or []
    limit = check("limit", lambda: _check_limit(definition.get("limit", MAX_ROWS)))
    if not errors and not dimensions and not measures:
        errors["dimensions"] = ["Name at least one dimension or measure."]
    if errors:
        part = next(iter(errors))
        raise InvalidDefinition(part, errors[part][0], errors)
    return name, dimensions, measures, filters, order_by, limit


def _check_keys(definition: dict) -> None:
    unknown = set(definition) - {"dataset", "dimensions", "measures", "filters", "order_by",
                                 "limit", "name"}  # fmt: skip
    if unknown:
        listed = ", ".join(sorted(str(k)[:50] for k in unknown))
        raise InvalidDefinition("definition", f"Unknown keys: {listed}.")


def _check_name(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > 200 or text_problem(value) is not None:
        raise InvalidDefinition("name", "name is text of at most 200 printable characters.")


def _check_dataset(name: Any) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise InvalidDefinition("dataset", f"dataset is one of {', '.join(DATASETS)}.")
    return name


def _check_dimensions(definition: dict, dataset: Any) -> list[str]:
    dimensions = _list(definition, "dimensions")
    for dim in dimensions:
        if not isinstance(dim, str) or dataset is None or dim not in dataset.dimensions:
            raise InvalidDefinition("dimensions", f"Unknown dimension {str(dim)[:50]!r}.")
    if len(set(dimensions)) != len(dimensions):
        raise InvalidDefinition("dimensions", "A dimension is named twice.")
    return dimensions


def _check_measures(definition: dict, dataset: Any) -> list[Measure]:
    measures = []
    for item in _list(definition, "measures"):
        if not isinstance(item, dict) or set(item) - {"agg", "field"}:
            raise InvalidDefinition("measures", 'A measure is {"agg", "field"}.')
        agg, field_name = item.get("agg"), item.get("field")
        if not isinstance(agg, str) or agg not in AGGREGATES:
            raise InvalidDefinition("measures", f"agg is one of {', '.join(AGGREGATES)}.")
        if field_name is None and agg != "count":
            raise InvalidDefinition("measures", f"{agg} needs a field.")
        if field_name is not None and (
            not isinstance(field_name, str) or dataset is None or field_name not in dataset.measures
        ):
            raise InvalidDefinition("measures", f"Unknown measure field {str(field_name)[:50]!r}.")
        measures.append(Measure(agg, field_name))
    if len({m.key for m in measures}) != len(measures):
        raise InvalidDefinition("measures", "A measure is named twice.")
    return measures


def _check_filters(definition: dict, dataset: Any) -> list[tuple]:
    filters = []
    filterable = dataset.filterable() if dataset is not None else {}
    for item in _list(definition, "filters"):
        if not isinstance(item, dict) or set(item) != {"field", "op", "value"}:
            raise InvalidDefinition("filters", 'A filter is {"field", "op", "value"}.')
        field_name, op, value = item["field"], item["op"], item["value"]
        if not isinstance(field_name, str) or field_name not in filterable:
            raise InvalidDefinition("filters", f"Unknown filter field {str(field_name)[:50]!r}.")
        if not isinstance(op, str) or op not in OPERATORS:
            raise InvalidDefinition("filters", f"op is one of {', '.join(OPERATORS)}.")
        field = filterable[field_name]
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not 0 < len(value) <= MAX_LIST:
                raise InvalidDefinition("filters", f"{op} takes a list of 1 to {MAX_LIST} values.")
            typed: Any = [_typed(field, v, "filters") for v in value]
        else:
            typed = _typed(field, value, "filters")
        filters.append((field_name, op, typed))
    return filters


def _check_order(definition: dict, keys: list[str]) -> list[str]:
    order_by = _list(definition, "order_by")
    for key in order_by:
        if not isinstance(key, str) or key.removeprefix("-") not in keys:
            raise InvalidDefinition(
                "order_by", "order_by names dimensions or measures (-: descending)."
            )
    return order_by


def _check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_ROWS:
        raise InvalidDefinition("limit", f"limit is 1 to {MAX_ROWS}.")
    return limit


def compile_definition(definition: Any, *, limit: bool = True) -> Compiled:
    name, dimensions, measures, filters, order_by, max_rows = parse(definition)
    dataset = DATASETS[name]
    params: dict[str, Any] = {"tz": settings.TIME_ZONE}
    select, columns = [], []
    for dim in dimensions:
        field = dataset.dimensions[dim]
        select.append(f"{field.sql} AS {dim}")
        columns.append(Column(dim, field.label, field.kind))
    for measure in measures:
        if measure.field is None:
            select.append(f"COUNT(*) AS {measure.key}")
            columns.append(Column(measure.key, "Count", "int"))
            continue
        field = dataset.measures[measure.field]
        select.append(f"{AGGREGATES[measure.agg]}({field.sql}) AS {measure.key}")
        kind = "int" if measure.agg == "count" else field.kind
        columns.append(Column(measure.key, f"{measure.agg} of {field.label}", kind))
    where = []
    filterable = dataset.filterable()
    for index, (field_name, op, value) in enumerate(filters):
        param = f"f{index}"
        params[param] = value
        field = filterable[field_name]
        if op in ("in", "not_in"):
            where.append(f"{field.sql} {OPERATORS[op]}(%({param})s)")
        else:
            where.append(f"{field.sql} {OPERATORS[op]} %({param})s")
    sql = f"SELECT {', '.join(select)} FROM {dataset.source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if measures and dimensions:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(dimensions)))
    keys = [c.key for c in columns]
    ordering = order_by or ([keys[0]] if dimensions else [])
    if ordering:
        sql += " ORDER BY " + ", ".join(
            f"{keys.index(k.removeprefix('-')) + 1}{' DESC' if k.startswith('-') else ''}"
            f" NULLS LAST"
            for k in ordering
        )
    if limit:
        sql += f" LIMIT {int(max_rows)}"
    return Compiled(sql, params, columns)


def _rows(compiled: Compiled, raw: Any) -> Iterator[dict[str, Any]]:
    keys = [c.key for c in compiled.columns]
    for values in raw:
        yield dict(zip(keys, values, strict=True))


def adhoc_report(definition: Any, *, streamed: bool = False) -> Report:
    """Run a definition: its rows (all of them, streamed, for an export), totals of its
    money measures and a chart of the first measure by the first dimension."""
    compiled = compile_definition(definition, limit=not streamed)
    title = str(definition.get("name") or f"Ad-hoc report on {definition['dataset']}")[:200]
    if streamed:
        rows: Any = _rows(compiled, stream(compiled.sql, compiled.params))
        return Report(name="adhoc", title=title, columns=compiled.columns, rows=rows)
    rows = list(_rows(compiled, fetch(compiled.sql, compiled.params)))
    measure_columns = [c for c in compiled.columns if c.key not in definition.get("dimensions", [])]
    totals: dict[str, Any] = {}
    for column in measure_columns:
        if column.key.startswith("count"):
            totals[column.key] = sum(r[column.key] or 0 for r in rows)
        elif column.key.startswith("sum_"):
            totals[column.key] = sum((r[column.key] or 0 for r in rows), Decimal("0.00"))
    chart = None
    dims = definition.get("dimensions") or []
    if dims and measure_columns:
        first = measure_columns[0].key
        chart = {
            "type": "bar",
            "labels": [str(r[dims[0]]) for r in rows[:100]],
            "series": [
                {"name": measure_columns[0].label, "data": [str(r[first]) for r in rows[:100]]}
            ],
        }
    return Report(
        name="adhoc", title=title, columns=compiled.columns, rows=rows, totals=totals, chart=chart
    )
