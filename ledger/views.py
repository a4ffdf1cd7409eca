"""Staff UI: post money on an account, reverse a transaction, capture or void a hold.

Each move is a form with a review step: the first POST validates and shows what will
happen, the second (``step=confirm``) calls the ledger service as the signed-in user
(``Caller.for_user``), with the idempotency key the form was drawn with. A domain
refusal comes back on the form as its message; nothing moved. Moves that need a second
person are filed as approval requests and say so.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.models import Account
from accounts.selectors import account_in_scope
from approvals.models import ApprovalRequest
from core.errors import DomainError
from core.ui import bootstrap, format_money, staff_scope, staff_view, user_may
from core.ui_errors import refusal_message
from ledger.models import Hold, Transaction
from ledger.selectors import account_balance, holds_in_scope, transactions_in_scope
from ledger.staff_forms import OPERATIONS, HoldSettleForm, ReverseForm

CONFIRM = "confirm"
EDIT = "edit"


def _account_url(account_id: int) -> Any:
    return redirect("backoffice:account", pk=account_id)


def _report(request: Any, result: Any, account: Account) -> None:
    if isinstance(result, ApprovalRequest):
        messages.info(
            request,
            _("Sent for approval as request #%(id)s: a second person must approve it.")
            % {"id": result.pk},
        )
        return
    view = account_balance(account)
    balance = format_money(view.balance, view.currency)
    if isinstance(result, Hold):
        messages.success(
            request,
            _("Hold #%(id)s placed. Available now: %(available)s.")
            % {"id": result.pk, "available": format_money(view.available, view.currency)},
        )
        return
    messages.success(
        request,
        _("Posted: %(kind)s of %(amount)s. New balance: %(balance)s.")
        % {
            "kind": result.get_kind_display(),
            "amount": format_money(result.amount, result.currency),
            "balance": balance,
        },
    )


def _step(request: Any, form: Any, *, template_context: dict[str, Any], execute: Any) -> Any:
    """The form / review / confirm cycle shared by every move. Returns a response, or the
    result of ``execute`` once confirmed and posted."""
    bootstrap(form)
    if request.method != "POST":
        return render(request, "ledger/post.html", {**template_context, "form": form})
    step = request.POST.get("step")
    if not form.is_valid() or step == EDIT:
        return render(request, "ledger/post.html", {**template_context, "form": form})
    if step != CONFIRM:
        return render(
            request,
            "ledger/post.html",
            {**template_context, "form": form, "review": True},
        )
    try:
        return execute()
    except DomainError as error:
        form.add_error(None, refusal_message(error))
        return render(
            request,
            "ledger/post.html",
            {**template_context, "form": form, "refusal_code": error.code},
        )


@staff_view("accounts.view_account")
def post(request: Any, pk: int, operation: str) -> HttpResponse:
    form_class = OPERATIONS.get(operation)
    if form_class is None:
        raise Http404
    if not user_may(request.user, form_class.permission):
        raise PermissionDenied
    scope = staff_scope(request)
    account = account_in_scope(scope, pk)
    if account is None or account.kind != Account.Kind.CLIENT:
        raise Http404
    form = form_class(request.POST or None, account=account)
    outcome = _step(
        request,
        form,
        template_context={
            "title": form_class.title,
            "account": account,
            "balance": account_balance(account),
            "summary": form.summary if request.method == "POST" else None,
        },
        execute=lambda: form.execute(scope.caller),
    )
    if isinstance(outcome, HttpResponse):
        return outcome
    _report(request, outcome, account)
    return _account_url(account.pk)


@staff_view("ledger.view_transaction", "ledger.reverse_transaction")
def reverse(request: Any, pk: int) -> HttpResponse:
    scope = staff_scope(request)
    original = transactions_in_scope(scope).select_related("account").filter(pk=pk).first()
    if original is None:
        raise Http404
    form = ReverseForm(request.POST or None)
    outcome = _step(
        request,
        form,
        template_context={
            "title": _("Reverse transaction #%(id)s") % {"id": original.pk},
            "account": original.account,
            "transaction": original,
            "summary": lambda: [(_("Reason"), form.cleaned_data["reason"])],
        },
        execute=lambda: form.execute(original, scope.caller),
    )
    if isinstance(outcome, HttpResponse):
        return outcome
    _report(request, outcome, original.account)
    return _account_url(original.account_id)


@staff_view("ledger.view_hold", "ledger.settle_hold")
def hold(request: Any, pk: int, action: str) -> HttpResponse:
    if action not in {"capture", "void"}:
        raise Http404
    scope = staff_scope(request)
    found = holds_in_scope(scope).select_related("account").filter(pk=pk).first()
    if found is None:
        raise Http404
    form = HoldSettleForm(request.POST or None, action=action)
    title = (_("Capture hold #%(id)s") if action == "capture" else _("Void hold #%(id)s")) % {
        "id": found.pk
    }
    outcome = _step(
        request,
        form,
        template_context={
            "title": title,
            "account": found.account,
            "hold": found,
            "summary": lambda: [
                (
                    _("Amount"),
                    format_money(form.cleaned_data.get("amount") or found.amount, found.currency),
                ),
            ],
        },
        execute=lambda: form.execute(found, scope.caller),
    )
    if isinstance(outcome, HttpResponse):
        return outcome
    if isinstance(outcome, Transaction):
        _report(request, outcome, found.account)
    else:
        messages.success(request, _("Hold #%(id)s released.") % {"id": found.pk})
    return _account_url(found.account_id)
