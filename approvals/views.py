"""Staff UI: the maker-checker queue; approve or reject someone else's request."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from approvals.filtersets import ApprovalRequestFilterSet
from approvals.models import ApprovalRequest
from approvals.selectors import approval_requests_in_scope
from approvals.services import approval_approve, approval_reject
from approvals.tables import ApprovalRequestTable
from core.errors import DomainError
from core.forms import TextGuardedForm
from core.ui import bootstrap, list_page, staff_scope, staff_view, user_may
from core.ui_errors import refusal_message


class RejectForm(TextGuardedForm, forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=500)


@staff_view("approvals.view_approvalrequest")
def queue(request: Any) -> HttpResponse:
    """Pending requests by default (``?status=`` shows the others)."""
    if "status" not in request.GET and "export" not in request.GET:
        query = request.GET.copy()
        query["status"] = ApprovalRequest.Status.PENDING
        request.GET = query
    return list_page(
        request,
        queryset=approval_requests_in_scope(staff_scope(request)).select_related("maker"),
        filterset_class=ApprovalRequestFilterSet,
        table_class=ApprovalRequestTable,
        template="approvals/queue.html",
        export_name="approval-requests",
        export_fields=["id", "kind", "summary", "amount", "currency", "status", "created_at"],
    )


def _may_decide(user: Any, item: ApprovalRequest) -> bool:
    return (
        user_may(user, "approvals.approve_request")
        and item.status == ApprovalRequest.Status.PENDING
        and item.maker_id != user.pk
    )


@staff_view("approvals.view_approvalrequest")
def detail(request: Any, pk: int) -> HttpResponse:
    item = (
        approval_requests_in_scope(staff_scope(request))
        .select_related("maker", "checker")
        .filter(pk=pk)
        .first()
    )
    if item is None:
        raise Http404
    return render(
        request,
        "approvals/request.html",
        {
            "item": item,
            "may_decide": _may_decide(request.user, item),
            "reject_form": bootstrap(RejectForm()),
        },
    )


@staff_view("approvals.view_approvalrequest", "approvals.approve_request")
def decide(request: Any, pk: int, decision: str) -> HttpResponse:
    """POST only. Self-approval, a decided or an expired request are refused by the service
    (its message is shown); nothing moves."""
    if decision not in {"approve", "reject"} or request.method != "POST":
        raise Http404
    scope = staff_scope(request)
    item = approval_requests_in_scope(scope).filter(pk=pk).first()
    if item is None:
        raise Http404
    try:
        if decision == "approve":
            decided = approval_approve(request=item.pk, checker=scope.caller)
        else:
            form = RejectForm(request.POST)
            if not form.is_valid():
                messages.error(request, _("Give a reason for the rejection."))
                return redirect("approvals:request", pk=item.pk)
            decided = approval_reject(
                request=item.pk, checker=scope.caller, reason=form.cleaned_data["reason"]
            )
    except DomainError as error:
        messages.error(request, refusal_message(error))
        return redirect("approvals:request", pk=item.pk)
    if decided.status == ApprovalRequest.Status.APPROVED:
        messages.success(request, _("Request #%(id)s approved and executed.") % {"id": item.pk})
    elif decided.status == ApprovalRequest.Status.FAILED:
        messages.error(
            request,
            _("Request #%(id)s failed when executed: %(reason)s")
            % {"id": item.pk, "reason": decided.error_message or decided.error_code},
        )
    else:
        messages.info(request, _("Request #%(id)s rejected.") % {"id": item.pk})
    return redirect("approvals:request", pk=item.pk)
