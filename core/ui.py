"""What every staff UI view checks on the server: a signed-in staff user holding the
permissions of the move, the same Django permissions the API checks for it
(``core.api.permissions``); a user without them gets 403, never the page."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.formats import number_format
from django_tables2 import RequestConfig
from django_tables2.paginators import LazyPaginator
from import_export.resources import modelresource_factory

from core import sheets
from core.api.permissions import user_has_permission
from core.api.scope import Scope, request_id_of
from core.caller import Caller
from core.forms import bad_query_parameters
from core.text import text_problem


def user_may(user: Any, *permissions: str) -> bool:
    """A staff user holding every one of ``permissions`` (a view permission is also
    granted by the model's change permission, as in the admin and the API)."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return False
    return all(user_has_permission(user, permission) for permission in permissions)


def staff_view(*permissions: str) -> Callable:
    """Decorate a view: anonymous users go to the login page, everyone else needs to be
    active staff with all ``permissions`` (403 otherwise)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_may(request.user, *permissions):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapped.required_permissions = permissions  # type: ignore[attr-defined]
        return wrapped

    return decorate


def staff_scope(request: Any) -> Scope:
    """A staff user's scope: every brand, postings made as ``user:<id>`` with the request's id."""
    return Scope(
        brand_ids=None,
        partner_id=None,
        caller=Caller.for_user(request.user, request_id=request_id_of(request)),
    )


# --------------------------------------------------------------------------- lists

EXPORT_FORMATS = sheets.FORMATS
PER_PAGE = 25


def export_response(
    queryset: Any,
    *,
    fields: list[str],
    name: str,
    fmt: str,
    resource_class: type | None = None,
) -> StreamingHttpResponse:
    """The list as a CSV or XLSX file, streamed (``core.sheets``): through
    ``resource_class`` when given (the one the list's objects import with), else a
    django-import-export ModelResource of ``fields``."""
    if resource_class is None:
        resource_class = modelresource_factory(
            queryset.model, meta_options={"fields": fields, "export_order": fields}
        )
    return sheets.export_response(resource=resource_class(), queryset=queryset, name=name, fmt=fmt)


def list_page(
    request: Any,
    *,
    queryset: Any,
    filterset_class: type,
    table_class: type,
    template: str,
    export_name: str,
    export_fields: list[str],
    context: dict[str, Any] | None = None,
    export_resource: type | None = None,
) -> HttpResponse:
    """A sortable, filtered, paginated list (django-tables2 over the app's FilterSet, the
    one its API uses), or the same rows exported (``?export=csv|xlsx``)."""
    query = request.GET.copy()
    bad = bad_query_parameters(query)
    for name, values in list(query.lists()):
        if any(text_problem(text) is not None for text in [name, *values]):
            del query[name]  # unstorable text: the list shows unfiltered, with a message
    fmt = query.pop("export", [None])[-1]
    filterset = filterset_class(query or None, queryset=queryset, request=request)
    bootstrap(filterset.form, small=True)
    rows = filterset.qs if filterset.is_bound else queryset
    if fmt in EXPORT_FORMATS:
        return export_response(
            rows, fields=export_fields, name=export_name, fmt=fmt, resource_class=export_resource
        )
    table = table_class(rows)
    RequestConfig(
        request, paginate={"per_page": PER_PAGE, "paginator_class": LazyPaginator}
    ).configure(table)
    export_query = query.copy()
    return render(
        request,
        template,
        {
            "filterset": filterset,
            "table": table,
            "bad_parameters": bad,
            "export_query": export_query.urlencode(),
            **(context or {}),
        },
    )


def format_money(value: Any, currency: str = "") -> str:
    """A Decimal amount with two places, grouped and with the decimal mark of the active
    language (``1 234,50`` in Russian, ``1,234.50`` in English), then the currency code.
    Never goes through float; an empty value is a dash."""
    if value is None or value == "":
        return "—"
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    text = number_format(amount, decimal_pos=2, use_l10n=True, force_grouping=True)
    return f"{text} {currency}".strip()


def bootstrap(form: Any, *, small: bool = False) -> Any:
    """Give a form's widgets Bootstrap's classes (selects, checkboxes, other inputs)."""
    for field in form.fields.values():
        widget = field.widget
        if getattr(widget, "input_type", None) == "hidden":
            continue
        if isinstance(widget, forms.Select):
            css = "form-select form-select-sm" if small else "form-select"
        elif isinstance(widget, forms.CheckboxInput):
            css = "form-check-input"
        else:
            css = "form-control form-control-sm" if small else "form-control"
        widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()
    return form
