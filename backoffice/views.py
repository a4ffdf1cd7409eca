"""The staff UI's cross-app pages: dashboard, search, clients, a client and an account.

Every view checks the user's permissions on the server (``core.ui.staff_view``); the
templates hide what the user may not do. Reads go through the apps' selectors.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.filtersets import ClientFilterSet
from accounts.models import Account
from accounts.resources import ClientResource
from accounts.selectors import account_in_scope, clients_in_scope
from approvals.models import ApprovalRequest
from approvals.selectors import approval_requests_about
from backoffice import selectors
from backoffice.forms import HistoryFilterForm
from backoffice.roles import role_overview
from backoffice.tables import ClientTable
from core.audit.history import audit_history
from core.sheets import FORMATS, export_rows_response
from core.ui import bootstrap, list_page, staff_scope, staff_view, user_may
from ledger.filtersets import EntryFilterSet
from ledger.models import Hold
from ledger.selectors import account_balance, entries_in_scope, holds_in_scope
from ledger.services import business_date

HISTORY_PAGE = 30


@staff_view()
def dashboard(request: Any) -> HttpResponse:
    return render(request, "backoffice/dashboard.html", {"board": selectors.dashboard()})


@staff_view("auth.view_group")
def roles(request: Any) -> HttpResponse:
    """The staff roles: what each may do (its permissions) and who holds it."""
    return render(request, "backoffice/roles.html", {"roles": role_overview()})


@staff_view("accounts.view_account", "accounts.view_client")
def search(request: Any) -> HttpResponse:
    """Search as you type: a partial for htmx (the navbar's drop-down), a page otherwise."""
    query = request.GET.get("q", "")[:100]
    results = selectors.search(staff_scope(request), query)
    template = "backoffice/_search_results.html" if request.htmx else "backoffice/search.html"
    return render(request, template, {"results": results, "query": query})


@staff_view("accounts.view_client")
def clients(request: Any) -> HttpResponse:
    return list_page(
        request,
        queryset=clients_in_scope(staff_scope(request)),
        filterset_class=ClientFilterSet,
        table_class=ClientTable,
        template="backoffice/clients.html",
        export_name="clients",
        export_fields=["id", "kind", "name", "legal_name", "tax_id", "phone", "email", "status"],
        export_resource=ClientResource,  # the columns the clients import reads
    )


@staff_view("accounts.view_client", "accounts.view_account")
def client(request: Any, pk: int) -> HttpResponse:
    found = clients_in_scope(staff_scope(request)).filter(pk=pk).first()
    if found is None:
        raise Http404
    return render(
        request,
        "backoffice/client.html",
        {"client": found, "tree": selectors.client_account_tree(found)},
    )


def _limit_rows(account: Account, now: datetime) -> list[dict[str, Any]]:
    """Each write-off limit of the account with what it still allows today / this month."""
    today = business_date(now)
    month = today.replace(day=1)
    spent_day = account.spent_day if account.spent_day_on == today else None
    spent_month = account.spent_month if account.spent_month_on == month else None
    zero = selectors.ZERO
    rows = []
    if account.write_off_limit_transaction is not None:
        rows.append({"name": "transaction", "limit": account.write_off_limit_transaction})
    if account.write_off_limit_day is not None:
        used = spent_day or zero
        rows.append(
            {
                "name": "day",
                "limit": account.write_off_limit_day,
                "used": used,
                "remaining": max(account.write_off_limit_day - used, zero),
            }
        )
    if account.write_off_limit_month is not None:
        used = spent_month or zero
        rows.append(
            {
                "name": "month",
                "limit": account.write_off_limit_month,
                "used": used,
                "remaining": max(account.write_off_limit_month - used, zero),
            }
        )
    return rows


HISTORY_EXPORT_HEADERS = [
    "entry", "transaction", "created_at", "kind", "memo", "amount", "currency", "balance_after",
]  # fmt: skip


def _history_entries(request: Any, scope: Any, account: Account) -> tuple[Any, Any]:
    """The history form and the account's entries between its two dates (inclusive),
    through the API's ``EntryFilterSet``."""
    form = bootstrap(HistoryFilterForm(request.GET or None))
    data: dict[str, str] = {}
    if form.is_bound and form.is_valid():
        first, last = form.cleaned_data.get("date_from"), form.cleaned_data.get("date_to")
        if first:
            data["from"] = timezone.make_aware(datetime.combine(first, time.min)).isoformat()
        if last:
            end = timezone.make_aware(datetime.combine(last + timedelta(days=1), time.min))
            data["to"] = (end - timedelta(microseconds=1)).isoformat()
    filterset = EntryFilterSet(data, queryset=entries_in_scope(scope, account))
    return form, filterset.qs.select_related("transaction", "transaction__reversed_by")


def _history_export(entries: Any, account: Account, fmt: str) -> HttpResponse:
    """The whole filtered history (not one page), streamed as CSV or XLSX."""
    rows = (
        [
            entry.pk, entry.transaction_id, entry.created_at, entry.transaction.kind,
            entry.transaction.memo, entry.amount, entry.currency, entry.balance_after,
        ]
        for entry in entries.order_by("-id").iterator(chunk_size=2000)
    )  # fmt: skip
    return export_rows_response(
        headers=HISTORY_EXPORT_HEADERS, rows=rows, name=f"history-{account.number}", fmt=fmt
    )


def _history(request: Any, form: Any, entries: Any) -> dict[str, Any]:
    """One page of the account's history, newest first: keyset (``?before=<entry id>``)."""
    before = form.cleaned_data.get("before") if form.is_bound and form.is_valid() else None
    if before:
        entries = entries.filter(id__lt=before)
    page = list(entries[: HISTORY_PAGE + 1])
    more = len(page) > HISTORY_PAGE
    page = page[:HISTORY_PAGE]
    query = request.GET.copy()
    query.pop("before", None)
    if more:
        query["before"] = str(page[-1].pk)
    export_query = request.GET.copy()
    for name in ("before", "export"):
        export_query.pop(name, None)
    return {
        "history_form": form,
        "history_export_query": export_query.urlencode(),
        "entries": page,
        "next_query": query.urlencode() if more else "",
        "first_page": not before,
    }


@staff_view("accounts.view_account", "ledger.view_entry")
def account(request: Any, pk: int) -> HttpResponse:
    scope = staff_scope(request)
    found = account_in_scope(scope, pk)
    if found is None or found.kind != Account.Kind.CLIENT:
        raise Http404
    form, entries = _history_entries(request, scope, found)
    fmt = request.GET.get("export")
    if fmt in FORMATS:
        return _history_export(entries, found, fmt)
    now = timezone.now()
    context = {
        "account": found,
        "balance": account_balance(found, refresh=False),
        "limits": _limit_rows(found, now),
        "holds": holds_in_scope(scope)
        .filter(account=found, status=Hold.Status.ACTIVE)
        .select_related("brand")
        .order_by("-id")[:50],
        "requests": approval_requests_about(found)
        .filter(status=ApprovalRequest.Status.PENDING)
        .select_related("maker")[:20],
        "audit": audit_history(found, limit=50),
        "sub_accounts": Account.objects.filter(parent=found).select_related("client")[:50],
        "can_block": user_may(request.user, "accounts.block_account"),
        "may_reverse": user_may(request.user, "ledger.reverse_transaction"),
        **_history(request, form, entries),
    }
    template = (
        "backoffice/_history.html"
        if request.htmx and request.htmx.target == "history"
        else "backoffice/account.html"
    )
    return render(request, template, context)
