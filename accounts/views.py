"""Staff UI: block and unblock an account, with a reason (``accounts.block_account``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Account
from accounts.selectors import account_in_scope
from accounts.services import account_block, account_unblock
from core.errors import DomainError
from core.forms import TextGuardedForm
from core.ui import bootstrap, staff_scope, staff_view
from core.ui_errors import refusal_message


class StatusForm(TextGuardedForm, forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=500)


@staff_view("accounts.view_account", "accounts.block_account")
def status(request: Any, pk: int, action: str) -> HttpResponse:
    if action not in {"block", "unblock"}:
        raise Http404
    scope = staff_scope(request)
    account = account_in_scope(scope, pk)
    if account is None or account.kind != Account.Kind.CLIENT:
        raise Http404
    form = bootstrap(StatusForm(request.POST or None))
    if request.method == "POST" and form.is_valid():
        reason = form.cleaned_data["reason"]
        try:
            if action == "block":
                account_block(
                    account=account,
                    reason=reason,
                    blocked_by=request.user,
                    caller_ref=scope.caller.ref,
                )
                messages.success(
                    request, _("Account %(number)s blocked.") % {"number": account.number}
                )
            else:
                account_unblock(
                    account=account,
                    reason=reason,
                    unblocked_by=request.user,
                    caller_ref=scope.caller.ref,
                )
                messages.success(
                    request, _("Account %(number)s unblocked.") % {"number": account.number}
                )
            return redirect("backoffice:account", pk=account.pk)
        except DomainError as error:
            form.add_error(None, refusal_message(error))
    title = _("Block account") if action == "block" else _("Unblock account")
    return render(
        request,
        "accounts/status.html",
        {"form": form, "account": account, "title": title, "action": action},
    )
