"""Staff UI of the ad-hoc report builder: pick a dataset of the whitelist
(``reports.adhoc.datasets``), its dimensions, measures and one filter, and see the table
and chart ``reports.adhoc.compiler.adhoc_report`` answers (the API's ``adhoc/run``);
export it streamed, or save the definition (``saved_report_create``, needs
``reports.add_savedreport`` as in the API). Saved reports visible to the user are
listed and open back in the builder."""

from __future__ import annotations

from itertools import islice
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.errors import DomainError
from core.forms import TextGuardedForm
from core.ui import bootstrap, staff_view, user_may
from core.ui_errors import refusal_message
from reports.adhoc.compiler import InvalidDefinition, adhoc_report
from reports.adhoc.datasets import AGGREGATES, OPERATORS, catalogue
from reports.adhoc.services import saved_report_create, saved_reports_visible_to
from reports.exports import export_response
from reports.views import PERMISSION, SHOWN_ROWS, _flat

SAVE_PERMISSION = "reports.add_savedreport"


class BuilderForm(TextGuardedForm, forms.Form):
    dataset = forms.ChoiceField(label=gettext_lazy("Dataset"))
    dimensions = forms.MultipleChoiceField(
        label=gettext_lazy("Dimensions"), required=False, widget=forms.SelectMultiple
    )
    measures = forms.MultipleChoiceField(
        label=gettext_lazy("Measures"), required=False, widget=forms.SelectMultiple
    )
    filter_field = forms.ChoiceField(label=gettext_lazy("Filter on"), required=False)
    filter_op = forms.ChoiceField(
        label=gettext_lazy("Operator"),
        required=False,
        choices=[("", "—"), *[(op, op) for op in OPERATORS]],
    )
    filter_value = forms.CharField(
        label=gettext_lazy("Value (comma-separated for in)"), required=False, max_length=2000
    )
    limit = forms.IntegerField(
        label=gettext_lazy("Row limit"), required=False, min_value=1, max_value=100_000
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        datasets = catalogue()
        self.fields["dataset"].choices = [(k, v["label"]) for k, v in datasets.items()]
        chosen = self.data.get("dataset") if self.is_bound else None
        spec = datasets.get(chosen) or next(iter(datasets.values()))
        self.fields["dimensions"].choices = [(k, v["label"]) for k, v in spec["dimensions"].items()]
        self.fields["measures"].choices = [("count:", _("count of rows"))] + [
            (f"{agg}:{k}", f"{agg} {v['label']}")
            for k, v in spec["measures"].items()
            for agg in AGGREGATES
            if agg != "count"
        ]
        self.fields["filter_field"].choices = [("", "—")] + [
            (k, v["label"]) for k, v in spec["filters"].items()
        ]

    def definition(self) -> dict[str, Any]:
        data = self.cleaned_data
        measures = []
        for item in data["measures"]:
            agg, _sep, field = item.partition(":")
            measures.append({"agg": agg, "field": field} if field else {"agg": agg})
        definition: dict[str, Any] = {
            "dataset": data["dataset"],
            "dimensions": data["dimensions"],
            "measures": measures,
        }
        if data.get("filter_field") and data.get("filter_op"):
            value: Any = data["filter_value"]
            if data["filter_op"] in ("in", "not_in"):
                value = [v.strip() for v in value.split(",") if v.strip()]
            definition["filters"] = [
                {"field": data["filter_field"], "op": data["filter_op"], "value": value}
            ]
        if data.get("limit"):
            definition["limit"] = data["limit"]
        return definition


def _query_of(definition: dict[str, Any]) -> dict[str, Any]:
    """A saved definition as the builder's query parameters."""
    query: dict[str, Any] = {
        "dataset": definition.get("dataset", ""),
        "dimensions": definition.get("dimensions", []),
        "measures": [
            f"{m.get('agg')}:{m.get('field') or ''}" for m in definition.get("measures", [])
        ],
    }
    for item in definition.get("filters", [])[:1]:
        value = item.get("value")
        query.update(
            filter_field=item.get("field"),
            filter_op=item.get("op"),
            filter_value=", ".join(map(str, value)) if isinstance(value, list) else value,
        )
    if definition.get("limit"):
        query["limit"] = definition["limit"]
    return query


def _as_query(values: dict[str, Any]) -> QueryDict:
    return QueryDict(urlencode({k: v for k, v in values.items() if v}, doseq=True))


@staff_view(PERMISSION)
def builder(request: Any) -> HttpResponse:
    may_save = user_may(request.user, SAVE_PERMISSION)
    data: Any = request.POST if request.method == "POST" else request.GET.copy()
    saved_id = request.GET.get("saved", "")
    if request.method == "GET" and saved_id.isdigit() and len(saved_id) < 19:
        saved = saved_reports_visible_to(request.user).filter(pk=int(saved_id)).first()
        if saved is not None:
            data = _as_query(_query_of(saved.definition))
    if request.method == "POST" and not may_save:
        raise PermissionDenied
    fmt = data.get("export") if request.method == "GET" else None
    form = bootstrap(BuilderForm(data if data.get("dataset") else None), small=True)
    context: dict[str, Any] = {
        "form": form,
        "may_save": may_save,
        "saved_reports": saved_reports_visible_to(request.user).order_by("name")[:100],
    }
    if form.is_bound and form.is_valid():
        definition = form.definition()
        try:
            if request.method == "POST":
                name = (request.POST.get("name") or "").strip()[:200]
                if not name:
                    raise InvalidDefinition("name", _("A saved report needs a name."))
                report = saved_report_create(
                    owner=request.user, name=name, definition={**definition, "name": name}
                )
                messages.success(request, _("Report “%(name)s” saved.") % {"name": name})
                return redirect(f"{request.path}?saved={report.pk}")
            if fmt in ("csv", "xlsx"):
                return export_response(adhoc_report(definition, streamed=True), fmt, "adhoc-report")
            built = adhoc_report(definition)
        except InvalidDefinition as error:
            for part, problems in error.errors.items():
                for problem in problems:
                    form.add_error(None, f"{part}: {problem}")
        except DomainError as error:
            form.add_error(None, refusal_message(error))
        else:
            rows = list(islice(iter(built.rows), SHOWN_ROWS + 1))
            context.update(
                report=built,
                columns=[(c.key, c.label, c.kind) for c in built.columns],
                rows=[
                    [(row.get(c.key), c.kind) for c in built.columns] for row in rows[:SHOWN_ROWS]
                ],
                more_rows=len(rows) > SHOWN_ROWS,
                totals=_flat(built.totals),
                chart=built.chart,
                export_query=_as_query(_query_of(definition)).urlencode(),
            )
    return render(request, "reports/builder.html", context)
