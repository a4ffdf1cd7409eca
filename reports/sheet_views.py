"""Staff pages for spreadsheets in and out: clients, accounts, services, tariffs,
subscriptions and meter readings (``reports.spreadsheets.SHEET_KINDS``).

An import is two steps. **Check the file**: the upload is stored under
``MEDIA_ROOT/sheets/`` and imported as a dry run (every row through the owning app's
services, inside a transaction that is rolled back), and the page lists the counts and
each refused row with its row number, column and code; nothing is written. **Import**
(the preview's one-time token, kept in the session) imports the same file for good, in
one transaction: when any row is refused then (the data moved in between), nothing is
written and the errors are shown again. Only users holding the kind's permissions (to
create and change those records) may do either; anyone else gets 403 before the file
is read. The export of a kind streams every record through the same resource, in the
columns its import reads.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _

from core.forms import TextGuardedForm
from core.sheets import FORMATS, export_response
from core.ui import bootstrap, staff_view, user_may
from reports import spreadsheets
from reports.spreadsheets import SHEET_KINDS, SheetKind

PREVIEW_ERRORS = 200
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
SESSION_KEY = "sheet_import"


class SheetUploadForm(TextGuardedForm, forms.Form):
    file = forms.FileField(label=_("CSV or XLSX file"))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".csv", ".xlsx")):
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."))
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 200 MB."))
        return upload


def _kind(slug: str) -> SheetKind:
    kind = SHEET_KINDS.get(slug)
    if kind is None:
        raise Http404
    return kind


def _may_import(user: Any, kind: SheetKind) -> bool:
    return user_may(user, *kind.permissions)


def _view_permission(kind: SheetKind) -> str:
    opts = kind.resource_class._meta.model._meta
    return f"{opts.app_label}.view_{opts.model_name}"


def _folder() -> Path:
    folder = Path(settings.MEDIA_ROOT) / "sheets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _stored(token: str, extension: str) -> Path:
    return _folder() / f"{token}.{extension}"


@staff_view()
def sheets(request: Any) -> HttpResponse:
    """The kinds the user may import or export."""
    kinds = [
        {
            "kind": kind,
            "may_import": _may_import(request.user, kind),
            "may_export": user_may(request.user, _view_permission(kind)),
        }
        for kind in SHEET_KINDS.values()
    ]
    kinds = [row for row in kinds if row["may_import"] or row["may_export"]]
    if not kinds:
        raise PermissionDenied
    return render(request, "reports/sheets.html", {"kinds": kinds})


@staff_view()
def sheet_export(request: Any, slug: str) -> HttpResponse:
    """Every record of the kind, streamed as CSV or XLSX in the columns its import reads."""
    kind = _kind(slug)
    if not user_may(request.user, _view_permission(kind)):
        raise PermissionDenied
    fmt = request.GET.get("format", "csv")
    if fmt not in FORMATS:
        fmt = "csv"
    resource = kind.resource_class()
    return export_response(
        resource=resource, queryset=resource.get_queryset().order_by("pk"), name=slug, fmt=fmt
    )


def _confirm(request: Any, kind: SheetKind) -> HttpResponse:
    pending = request.session.get(SESSION_KEY) or {}
    token = request.POST.get("token", "")
    if pending.get("token") != token or pending.get("kind") != kind.slug or not token:
        messages.error(request, _("This import is no longer waiting; check the file again."))
        return redirect("reports:sheet_import", slug=kind.slug)
    request.session.pop(SESSION_KEY, None)
    path = _stored(token, pending["extension"])
    try:
        with path.open("rb") as upload:
            outcome = spreadsheets.sheet_import(
                kind=kind.slug, upload=upload, filename=path.name, dry_run=False
            )
    except FileNotFoundError:
        messages.error(request, _("This import is no longer waiting; check the file again."))
        return redirect("reports:sheet_import", slug=kind.slug)
    finally:
        path.unlink(missing_ok=True)
    if outcome.written:
        messages.success(
            request,
            _("Imported %(rows)s rows: %(new)s new, %(updated)s changed, %(skipped)s unchanged.")
            % {
                "rows": outcome.rows,
                "new": outcome.new,
                "updated": outcome.updated,
                "skipped": outcome.skipped,
            },
        )
        return redirect("reports:sheet_import", slug=kind.slug)
    return _render(request, kind, SheetUploadForm(), outcome=outcome, name=pending["name"])


def _render(request: Any, kind: SheetKind, form: Any, **context: Any) -> HttpResponse:
    outcome = context.get("outcome")
    if outcome is not None:
        context.update(
            errors=outcome.errors[:PREVIEW_ERRORS],
            more_errors=max(len(outcome.errors) - PREVIEW_ERRORS, 0),
            refused_rows=len({error["row"] for error in outcome.errors}),
        )
    columns = [
        field.column_name
        for field in kind.resource_class().get_import_fields()
        if not field.readonly
    ]
    return render(
        request,
        "reports/sheet_import.html",
        {"kind": kind, "form": bootstrap(form), "columns": columns, **context},
    )


@staff_view()
def sheet_import(request: Any, slug: str) -> HttpResponse:
    """Upload, preview (a dry run: counts and row errors), confirm (see the module)."""
    kind = _kind(slug)
    if not _may_import(request.user, kind):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("step") == "confirm":
        return _confirm(request, kind)
    form = SheetUploadForm(request.POST or None, request.FILES or None)
    if request.method != "POST" or not form.is_valid():
        return _render(request, kind, form)
    upload = form.cleaned_data["file"]
    extension = "xlsx" if upload.name.lower().endswith(".xlsx") else "csv"
    token = uuid.uuid4().hex
    path = _stored(token, extension)
    with path.open("wb") as target:
        for chunk in upload.chunks():
            target.write(chunk)
    with path.open("rb") as stored:
        outcome = spreadsheets.sheet_import(
            kind=kind.slug, upload=stored, filename=path.name, dry_run=True
        )
    if outcome.ok:
        previous = request.session.get(SESSION_KEY) or {}
        if previous.get("token"):
            _stored(previous["token"], previous.get("extension", "csv")).unlink(missing_ok=True)
        request.session[SESSION_KEY] = {
            "token": token, "kind": kind.slug, "name": upload.name[:200], "extension": extension,
        }  # fmt: skip
    else:
        path.unlink(missing_ok=True)
        token = ""
    return _render(request, kind, SheetUploadForm(), outcome=outcome, name=upload.name, token=token)
