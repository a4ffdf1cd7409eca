"""Staff UI of invoicing: invoices (list, one, PDF), invoice runs (start, live progress,
failures, approve a draft) and usage / meter-reading files (preview, then store)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from core.errors import DomainError
from core.ui import bootstrap, list_page, staff_scope, staff_view, user_may
from core.ui_errors import refusal_message
from invoicing import ingest, services
from invoicing.documents import PDF_MIMETYPE, invoice_pdf, invoice_pdf_filename
from invoicing.filtersets import InvoiceFilterSet, InvoiceRunFilterSet
from invoicing.forms import RunStartForm, UploadForm
from invoicing.models import InvoiceRun
from invoicing.selectors import invoices_in_scope
from invoicing.tables import InvoiceRunTable, InvoiceTable

RUNNING = (InvoiceRun.Status.PENDING, InvoiceRun.Status.RUNNING)
PREVIEW_ERRORS = 200


# --------------------------------------------------------------------------- invoices


@staff_view("invoicing.view_invoice")
def invoices(request: Any) -> HttpResponse:
    return list_page(
        request,
        queryset=invoices_in_scope(staff_scope(request)).select_related(
            "account", "brand", "period"
        ),
        filterset_class=InvoiceFilterSet,
        table_class=InvoiceTable,
        template="invoicing/invoices.html",
        export_name="invoices",
        export_fields=[
            "id",
            "number",
            "kind",
            "status",
            "currency",
            "subtotal",
            "vat",
            "total",
            "paid_amount",
            "due_date",
            "issued_at",
        ],
    )


def _invoice(request: Any, pk: int) -> Any:
    found = (
        invoices_in_scope(staff_scope(request))
        .select_related("account", "brand", "period", "adjusts")
        .filter(pk=pk)
        .first()
    )
    if found is None:
        raise Http404
    return found


@staff_view("invoicing.view_invoice")
def invoice(request: Any, pk: int) -> HttpResponse:
    found = _invoice(request, pk)
    return render(
        request,
        "invoicing/invoice.html",
        {"invoice": found, "lines": found.lines.select_related("service").order_by("id")},
    )


@staff_view("invoicing.view_invoice")
def invoice_pdf_download(request: Any, pk: int) -> HttpResponse:
    found = _invoice(request, pk)
    response = HttpResponse(invoice_pdf(invoice=found.pk), content_type=PDF_MIMETYPE)
    name = invoice_pdf_filename(found.number, found.pk)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --------------------------------------------------------------------------- runs


@staff_view("invoicing.view_invoicerun")
def runs(request: Any) -> HttpResponse:
    """The runs, and (with ``invoicing.add_invoicerun``) the form that starts one."""
    may_start = user_may(request.user, "invoicing.add_invoicerun")
    form = bootstrap(RunStartForm(request.POST or None)) if may_start else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied
        if form.is_valid():
            try:
                run = services.invoice_run_start(
                    period=form.cleaned_data["period"],
                    brand=form.cleaned_data["brand"],
                    mode=form.cleaned_data["mode"],
                    created_by=request.user,
                )
            except DomainError as error:
                form.add_error(None, refusal_message(error))
            else:
                messages.success(request, _("Invoice run #%(id)s started.") % {"id": run.pk})
                return redirect("invoicing:run", pk=run.pk)
    return list_page(
        request,
        queryset=InvoiceRun.objects.select_related("period", "brand"),
        filterset_class=InvoiceRunFilterSet,
        table_class=InvoiceRunTable,
        template="invoicing/runs.html",
        export_name="invoice-runs",
        export_fields=[
            "id",
            "mode",
            "status",
            "total",
            "processed",
            "failed",
            "invoices_issued",
            "created_at",
            "finished_at",
        ],
        context={"start_form": form},
    )


def _run(pk: int) -> InvoiceRun:
    found = InvoiceRun.objects.select_related("period", "brand", "created_by").filter(pk=pk).first()
    if found is None:
        raise Http404
    return found


def _progress_context(run: InvoiceRun) -> dict[str, Any]:
    percent = 100 if run.total == 0 and run.status not in RUNNING else 0
    if run.total:
        percent = min(100, run.processed * 100 // run.total)
    return {"run": run, "percent": percent, "live": run.status in RUNNING}


@staff_view("invoicing.view_invoicerun")
def run(request: Any, pk: int) -> HttpResponse:
    found = _run(pk)
    return render(
        request,
        "invoicing/run.html",
        {
            **_progress_context(found),
            "failures": found.failures.select_related("account", "brand").order_by("id")[:200],
            "may_approve": found.status == InvoiceRun.Status.DRAFT_READY
            and user_may(request.user, "invoicing.approve_invoicerun"),
        },
    )


@staff_view("invoicing.view_invoicerun")
def run_progress(request: Any, pk: int) -> HttpResponse:
    """The progress bar alone, polled by htmx every second while the run works."""
    return render(request, "invoicing/_run_progress.html", _progress_context(_run(pk)))


@staff_view("invoicing.view_invoicerun", "invoicing.approve_invoicerun")
def run_approve(request: Any, pk: int) -> HttpResponse:
    if request.method != "POST":
        raise Http404
    found = _run(pk)
    try:
        services.invoice_run_approve(run=found, approved_by=request.user)
    except DomainError as error:
        messages.error(request, refusal_message(error))
    else:
        messages.success(request, _("Draft run #%(id)s approved: issuing.") % {"id": found.pk})
    return redirect("invoicing:run", pk=found.pk)


# --------------------------------------------------------------------------- uploads

INGEST = {
    "usage": ("invoicing.add_usagerecord", ingest.usage_ingest_file),
    "readings": ("invoicing.add_meterreading", ingest.meter_readings_ingest_file),
}


class _Preview(Exception):
    """Raised inside the preview's transaction so that nothing it staged is kept."""

    def __init__(self, result: ingest.IngestResult) -> None:
        self.result = result


def _upload_dir() -> Path:
    folder = Path(settings.MEDIA_ROOT) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ingest(kind: str, path: Path, *, preview: bool, source: str) -> ingest.IngestResult:
    """Run the real ingest on the file; for a preview, inside a transaction rolled back."""
    _, ingest_file = INGEST[kind]
    with path.open("rb") as stream:
        if not preview:
            return ingest_file(stream=stream, source=source)
        try:
            with transaction.atomic():
                raise _Preview(ingest_file(stream=stream, source=source))
        except _Preview as outcome:
            return outcome.result


@staff_view()
def upload(request: Any) -> HttpResponse:
    """Step 1: the file is checked by the real ingest in a transaction that is rolled back,
    and its row errors shown. Step 2 (``confirm``): the same file is ingested for good."""
    allowed = [kind for kind, (perm, _f) in INGEST.items() if user_may(request.user, perm)]
    if not allowed:
        raise PermissionDenied
    pending = request.session.get("upload")
    if request.method == "POST" and request.POST.get("step") == "confirm":
        token = request.POST.get("token", "")
        if not pending or pending.get("token") != token or pending["kind"] not in allowed:
            messages.error(request, _("This upload is no longer waiting; upload the file again."))
            return redirect("invoicing:upload")
        path = _upload_dir() / f"{token}.csv"
        try:
            result = _ingest(pending["kind"], path, preview=False, source=pending["name"][:100])
        except DomainError as error:
            messages.error(request, refusal_message(error))
            return redirect("invoicing:upload")
        finally:
            path.unlink(missing_ok=True)
            request.session.pop("upload", None)
        messages.success(
            request,
            _(
                "Stored %(accepted)s records "
                "(%(duplicates)s duplicates skipped, %(errors)s refused)."
            )
            % {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "errors": len(result.errors),
            },
        )
        return redirect("invoicing:upload")
    form = bootstrap(UploadForm(request.POST or None, request.FILES or None))
    form.fields["kind"].choices = [c for c in form.fields["kind"].choices if c[0] in allowed]
    context: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        token = uuid.uuid4().hex
        path = _upload_dir() / f"{token}.csv"
        with path.open("wb") as target:
            for chunk in form.cleaned_data["file"].chunks():
                target.write(chunk)
        kind, name = form.cleaned_data["kind"], form.cleaned_data["file"].name
        try:
            result = _ingest(kind, path, preview=True, source=name[:100])
        except DomainError as error:
            path.unlink(missing_ok=True)
            form.add_error("file", refusal_message(error))
        else:
            request.session["upload"] = {"token": token, "kind": kind, "name": name}
            context.update(
                preview=result,
                errors=result.errors[:PREVIEW_ERRORS],
                more_errors=max(len(result.errors) - PREVIEW_ERRORS, 0),
                token=token,
                kind=kind,
                name=name,
            )
    return render(request, "invoicing/upload.html", context)
