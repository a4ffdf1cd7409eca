"""Staff UI of payment intake: payment agents, registries (upload with a preview, then
apply; each registry with its reconciliation) and the suspense queue (assign to an
account, or return to the payer).

Each page checks the permission the payments API checks for the same move
(``payments.api.views``: ``view_paymentagent``, ``view_registry``, ``apply_registry``,
``view_suspenseitem``, ``resolve_suspenseitem``) and calls the same services as the
signed-in user. An upload is previewed by the real ``registry_preview`` inside a
transaction that is rolled back: nothing is stored (no registry, no claim, no money)
until **Apply** imports the same file, once.
"""

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
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account
from core.errors import DomainError
from core.ui import bootstrap, list_page, staff_scope, staff_view, user_may
from core.ui_errors import refusal_message
from payments import services
from payments.filtersets import PaymentAgentFilterSet, RegistryFilterSet, SuspenseItemFilterSet
from payments.models import Registry, SuspenseItem
from payments.reconciliation import registry_reconciliation
from payments.selectors import (
    payment_agents_in_scope,
    registries_in_scope,
    suspense_in_scope,
    suspense_queue_totals,
)
from payments.staff_forms import RegistryUploadForm, SuspenseAssignForm, SuspenseReturnForm
from payments.tables import PaymentAgentTable, RegistryTable, SuspenseTable

PREVIEW_ERRORS = 200
SESSION_KEY = "registry_upload"

# --------------------------------------------------------------------------- agents


@staff_view("payments.view_paymentagent")
def agents(request: Any) -> HttpResponse:
    return list_page(
        request,
        queryset=payment_agents_in_scope(staff_scope(request)).order_by("code"),
        filterset_class=PaymentAgentFilterSet,
        table_class=PaymentAgentTable,
        template="ui/list.html",
        export_name="payment-agents",
        export_fields=["code", "name", "format", "commission_rate", "currency", "active"],
        context={"title": _("Payment agents")},
    )


# --------------------------------------------------------------------------- registries


@staff_view("payments.view_registry")
def registries(request: Any) -> HttpResponse:
    return list_page(
        request,
        queryset=registries_in_scope(staff_scope(request)).order_by("-id"),
        filterset_class=RegistryFilterSet,
        table_class=RegistryTable,
        template="payments/registries.html",
        export_name="registries",
        export_fields=[
            "id",
            "agent__code",
            "file_name",
            "status",
            "rows",
            "total_amount",
            "posted",
            "posted_amount",
            "suspense",
            "suspense_amount",
            "duplicates",
            "commission",
            "created_at",
            "applied_at",
        ],
        context={
            "title": _("Registries"),
            "may_upload": user_may(request.user, "payments.apply_registry"),
        },
    )


@staff_view("payments.view_registry")
def registry(request: Any, pk: int) -> HttpResponse:
    """A registry's figures, row errors and reconciliation; a previewed one (from the API's
    dry run) is applied here (``apply_registry``)."""
    scope = staff_scope(request)
    found = registries_in_scope(scope).filter(pk=pk).first()
    if found is None:
        raise Http404
    may_apply = user_may(request.user, "payments.apply_registry")
    if request.method == "POST":
        if not may_apply:
            raise PermissionDenied
        try:
            services.registry_apply(registry=found.pk, caller=scope.caller)
        except DomainError as error:
            messages.error(request, refusal_message(error))
        else:
            messages.success(request, _("Registry #%(id)s applied.") % {"id": found.pk})
        return redirect("payments:registry", pk=found.pk)
    try:
        reconciliation = registry_reconciliation(Registry.objects.get(pk=found.pk))
    except DomainError as error:
        reconciliation, problem = None, refusal_message(error)
    else:
        problem = None
    return render(
        request,
        "payments/registry.html",
        {
            "registry": found,
            "errors": found.errors[:PREVIEW_ERRORS],
            "more_errors": max(len(found.errors) - PREVIEW_ERRORS, 0),
            "reconciliation": reconciliation,
            "reconciliation_problem": problem,
            "may_apply": may_apply and found.status == Registry.Status.PREVIEWED,
        },
    )


class _Preview(Exception):
    """Raised inside the preview's transaction so that the previewed registry is not kept."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry


def _upload_dir() -> Path:
    folder = Path(settings.MEDIA_ROOT) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _preview(agent: Any, name: str, content: bytes, caller: Any) -> Registry:
    """The real preview of the file, in a transaction rolled back: its figures, nothing kept."""
    try:
        with transaction.atomic():
            raise _Preview(
                services.registry_preview(
                    agent=agent, file_name=name, content=content, caller=caller
                )
            )
    except _Preview as outcome:
        return outcome.registry


@staff_view("payments.view_registry", "payments.apply_registry")
def registry_upload(request: Any) -> HttpResponse:
    """Step 1: the file is previewed (row errors with their rows, totals, the control line
    checked) and nothing is stored. Step 2 (``apply``): the same file is imported whole."""
    scope = staff_scope(request)
    if request.method == "POST" and request.POST.get("step") == "apply":
        pending = request.session.pop(SESSION_KEY, None)
        token = request.POST.get("token", "")
        if not pending or pending.get("token") != token:
            messages.error(request, _("This registry is no longer waiting; upload the file again."))
            return redirect("payments:registry_upload")
        path = _upload_dir() / f"{token}.registry"
        agent = payment_agents_in_scope(scope).filter(pk=pending["agent"]).first()
        try:
            if agent is None or not path.exists():
                raise Http404
            applied = services.registry_import(
                agent=agent,
                file_name=pending["name"],
                content=path.read_bytes(),
                caller=scope.caller,
            )
        except DomainError as error:
            messages.error(request, refusal_message(error))
            return redirect("payments:registry_upload")
        finally:
            path.unlink(missing_ok=True)
        messages.success(
            request,
            _("Registry #%(id)s applied: %(posted)s payments posted, %(suspense)s to suspense.")
            % {"id": applied.pk, "posted": applied.posted, "suspense": applied.suspense},
        )
        return redirect("payments:registry", pk=applied.pk)
    form = bootstrap(RegistryUploadForm(request.POST or None, request.FILES or None))
    context: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        agent = form.cleaned_data["agent"]
        upload = form.cleaned_data["file"]
        name = (upload.name or "registry")[:255]
        content = upload.read()
        try:
            preview = _preview(agent, name, content, scope.caller)
        except DomainError as error:
            form.add_error("file", refusal_message(error))
        else:
            token = uuid.uuid4().hex
            (_upload_dir() / f"{token}.registry").write_bytes(content)
            request.session[SESSION_KEY] = {"token": token, "agent": agent.pk, "name": name}
            context.update(
                preview=preview,
                agent=agent,
                name=name,
                token=token,
                errors=preview.errors[:PREVIEW_ERRORS],
                more_errors=max(len(preview.errors) - PREVIEW_ERRORS, 0),
                control_matches=(
                    preview.control_total == preview.total_amount
                    and preview.control_count == preview.rows
                ),
            )
    return render(request, "payments/upload.html", context)


# --------------------------------------------------------------------------- suspense


@staff_view("payments.view_suspenseitem")
def suspense(request: Any) -> HttpResponse:
    scope = staff_scope(request)
    query = request.GET.copy()
    if "status" not in query:
        query["status"] = SuspenseItem.Status.OPEN
        request.GET = query
    return list_page(
        request,
        queryset=suspense_in_scope(scope).order_by("received_at", "id"),
        filterset_class=SuspenseItemFilterSet,
        table_class=SuspenseTable,
        template="payments/suspense.html",
        export_name="suspense",
        export_fields=[
            "id",
            "registry",
            "row",
            "account_number",
            "payer",
            "amount",
            "currency",
            "received_at",
            "reason",
            "status",
        ],
        context={"title": _("Suspense"), "totals": suspense_queue_totals(scope)},
    )


def _account_by_number(number: str) -> Account | None:
    return Account.objects.filter(number=number.strip(), kind=Account.Kind.CLIENT).first()


@staff_view("payments.view_suspenseitem")
def suspense_item(request: Any, pk: int) -> HttpResponse:
    """One suspense item; accountants (``resolve_suspenseitem``) assign it to an account
    number or return it to the payer with a reason."""
    scope = staff_scope(request)
    item = suspense_in_scope(scope).filter(pk=pk).first()
    if item is None:
        raise Http404
    may_resolve = user_may(request.user, "payments.resolve_suspenseitem")
    action = request.POST.get("action") if request.method == "POST" else None
    if action is not None and not may_resolve:
        raise PermissionDenied
    assign_form = bootstrap(SuspenseAssignForm(request.POST if action == "assign" else None))
    return_form = bootstrap(SuspenseReturnForm(request.POST if action == "return" else None))
    if action == "assign" and assign_form.is_valid():
        account = _account_by_number(assign_form.cleaned_data["account_number"])
        if account is None:
            assign_form.add_error("account_number", _("No client account with this number."))
        else:
            try:
                services.suspense_assign(
                    item=item.pk,
                    account=account.pk,
                    caller=scope.caller,
                    idempotency_key=assign_form.key,
                )
            except DomainError as error:
                assign_form.add_error(None, refusal_message(error))
            else:
                messages.success(
                    request,
                    _("Suspense item #%(id)s assigned to account %(number)s.")
                    % {"id": item.pk, "number": account.number},
                )
                return redirect("payments:suspense_item", pk=item.pk)
    elif action == "return" and return_form.is_valid():
        try:
            services.suspense_return(
                item=item.pk,
                reason=return_form.cleaned_data["reason"],
                caller=scope.caller,
                idempotency_key=return_form.key,
            )
        except DomainError as error:
            return_form.add_error(None, refusal_message(error))
        else:
            messages.success(request, _("Suspense item #%(id)s returned.") % {"id": item.pk})
            return redirect("payments:suspense_item", pk=item.pk)
    elif action not in (None, "assign", "return"):
        raise Http404
    item.refresh_from_db()
    return render(
        request,
        "payments/suspense_item.html",
        {
            "item": item,
            "age_days": (timezone.now() - item.received_at).days,
            "may_resolve": may_resolve and item.status == SuspenseItem.Status.OPEN,
            "assign_form": assign_form,
            "return_form": return_form,
        },
    )
