"""Reads for the staff UI's cross-app pages: the dashboard's figures, search, account trees.

Everything here reads through the owning apps' models and selectors; nothing writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, Sum
from django.db.models.functions import Lower, TruncDate
from django.utils import timezone

from accounts.models import Account, Client
from accounts.selectors import accounts_in_scope, clients_in_scope
from approvals.selectors import approvals_awaiting_count
from core.api.scope import Scope
from invoicing.models import InvoiceRun
from ledger.models import Transaction, TransactionKind
from ledger.selectors import account_balance

ZERO = Decimal("0.00")
# What the dashboard counts as charges: everything that takes money from a client.
CHARGE_KINDS = (TransactionKind.DEBIT, TransactionKind.ACCRUAL, TransactionKind.HOLD_CAPTURE)
TURNOVER_DAYS = 30
SEARCH_LIMIT = 10


def day_start(day: date) -> datetime:
    """The first moment of a business day (days are counted in ``TIME_ZONE``)."""
    return timezone.make_aware(datetime.combine(day, time.min))


@dataclass
class CurrencyTotals:
    currency: str
    payments: Decimal = ZERO
    payments_count: int = 0
    charges: Decimal = ZERO
    charges_count: int = 0
    balances: Decimal = ZERO
    debt: Decimal = ZERO


@dataclass
class Dashboard:
    today: date
    totals: list[CurrencyTotals]
    accounts_blocked: int
    last_run: InvoiceRun | None
    approvals_pending: int
    turnover: dict[str, Any] = field(default_factory=dict)
    as_of: datetime | None = None


def _totals_by_currency(today: date) -> list[CurrencyTotals]:
    totals: dict[str, CurrencyTotals] = {}

    def row(currency: str) -> CurrencyTotals:
        return totals.setdefault(currency, CurrencyTotals(currency=currency))

    moves = (
        Transaction.objects.filter(
            created_at__gte=day_start(today),
            kind__in=[TransactionKind.PAYMENT, *CHARGE_KINDS],
        )
        .values("currency", "kind")
        .annotate(total=Sum("amount"), count=Count("id"))
    )
    for move in moves:
        target = row(move["currency"])
        if move["kind"] == TransactionKind.PAYMENT:
            target.payments += move["total"]
            target.payments_count += move["count"]
        else:
            target.charges += move["total"]
            target.charges_count += move["count"]
    # Balances live on root payers only (a sub-account's funds are its payer's).
    balances = (
        Account.objects.filter(kind=Account.Kind.CLIENT, parent__isnull=True)
        .values("currency")
        .annotate(
            credit=Sum("balance", filter=Q(balance__gt=0)),
            debt=Sum("balance", filter=Q(balance__lt=0)),
        )
    )
    for line in balances:
        target = row(line["currency"])
        target.balances = line["credit"] or ZERO
        target.debt = -(line["debt"] or ZERO)
    default = settings.BILLING_DEFAULT_CURRENCY
    row(default)
    return sorted(totals.values(), key=lambda t: (t.currency != default, t.currency))


def daily_turnover(today: date, currency: str, days: int = TURNOVER_DAYS) -> dict[str, Any]:
    """Payments and charges per business day over the last ``days`` days (amounts as
    decimal strings, for the chart)."""
    first = today - timedelta(days=days - 1)
    rows = (
        Transaction.objects.filter(
            created_at__gte=day_start(first),
            currency=currency,
            kind__in=[TransactionKind.PAYMENT, *CHARGE_KINDS],
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "kind")
        .annotate(total=Sum("amount"))
    )
    payments: dict[date, Decimal] = {}
    charges: dict[date, Decimal] = {}
    for line in rows:
        target = payments if line["kind"] == TransactionKind.PAYMENT else charges
        target[line["day"]] = target.get(line["day"], ZERO) + line["total"]
    labels = [first + timedelta(days=n) for n in range(days)]
    return {
        "currency": currency,
        "labels": [day.isoformat() for day in labels],
        "payments": [str(payments.get(day, ZERO)) for day in labels],
        "charges": [str(charges.get(day, ZERO)) for day in labels],
    }


def _ledger_figures(today: date, now: datetime) -> dict[str, Any]:
    return {
        "totals": _totals_by_currency(today),
        "accounts_blocked": Account.objects.filter(
            kind=Account.Kind.CLIENT, status=Account.Status.BLOCKED
        ).count(),
        "turnover": daily_turnover(today, settings.BILLING_DEFAULT_CURRENCY),
        "as_of": now,
    }


def dashboard(*, now: datetime | None = None) -> Dashboard:
    """The dashboard's figures. Those summed over the ledger and all accounts (today's
    moves, balances and debt, blocked accounts, the turnover chart) are computed at most
    once per ``BACKOFFICE_DASHBOARD_CACHE_SECONDS`` and shared through the cache (0: every
    time); the last run and the approvals waiting are read on every request."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    ttl = settings.BACKOFFICE_DASHBOARD_CACHE_SECONDS
    key = f"backoffice:dashboard:{today.isoformat()}"
    figures = cache.get(key) if ttl > 0 else None
    if figures is None:
        figures = _ledger_figures(today, now)
        if ttl > 0:
            cache.set(key, figures, ttl)
    return Dashboard(
        today=today,
        last_run=InvoiceRun.objects.select_related("period", "brand").order_by("-id").first(),
        approvals_pending=approvals_awaiting_count(),
        **figures,
    )


# --------------------------------------------------------------------------- search

DIGITS = re.compile(r"\D+")
PHONE_LIKE = re.compile(r"[\d\s+()-]+")


@dataclass
class SearchResults:
    query: str
    accounts: list[Account]
    clients: list[Client]

    @property
    def empty(self) -> bool:
        return not self.accounts and not self.clients


def search(scope: Scope, query: str, *, limit: int = SEARCH_LIMIT) -> SearchResults:
    """Accounts by number and clients by name, tax id, phone or e-mail, as one types.

    A query of digits looks up account numbers and tax ids by prefix and phones by
    their digits; one with ``@`` e-mails by prefix; anything else names (trigram index
    ``accounts_client_name_trgm``) and e-mails by prefix (``accounts_client_email_trgm``).
    Fewer than two characters find nothing.
    """
    text = query.strip()
    if len(text) < 2:
        return SearchResults(query=text, accounts=[], clients=[])
    digits = DIGITS.sub("", text)
    accounts = accounts_in_scope(scope).filter(kind=Account.Kind.CLIENT).select_related("client")
    clients = clients_in_scope(scope)
    found_accounts: list[Account] = []
    if len(digits) >= 2 and PHONE_LIKE.fullmatch(text):
        found_accounts = list(accounts.filter(number__startswith=digits).order_by("number")[:limit])
        client_filter = Q(tax_id__startswith=digits) | Q(phone__contains=digits)
    elif "@" in text:
        client_filter = Q(email__istartswith=text)
    else:
        client_filter = Q(name__icontains=text) | Q(email__istartswith=text)
    # Sorted by an expression no index has: the planner then finds the few matches through
    # the search indexes and sorts them, instead of walking the clients list's name index.
    found_clients = list(clients.filter(client_filter).order_by(Lower("name"), "id")[:limit])
    return SearchResults(query=text, accounts=found_accounts, clients=found_clients)


# --------------------------------------------------------------------------- client tree


@dataclass
class TreeRow:
    account: Account
    level: int
    balance: Any  # ledger.selectors.BalanceView


TREE_LIMIT = 200


def client_account_tree(client: Client, *, limit: int = TREE_LIMIT) -> list[TreeRow]:
    """The client's accounts as trees, depth first: each of its accounts that is a root
    payer or hangs under another client's payer (shown with that payer), then its
    sub-accounts of any client, at most ``limit`` rows."""
    own = list(Account.objects.filter(client=client).select_related("parent").order_by("id"))
    own_ids = {account.pk for account in own}
    tops = [a for a in own if a.parent_id is None or a.parent_id not in own_ids]
    rows: list[TreeRow] = []
    visited: set[int] = set()

    def walk(account: Account, level: int) -> None:
        if account.pk in visited or len(rows) >= limit:
            return
        visited.add(account.pk)
        rows.append(TreeRow(account, level, account_balance(account, refresh=False)))
        children = Account.objects.filter(parent_id=account.pk).select_related("client", "parent")
        for child in children.order_by("id"):
            walk(child, level + 1)

    for top in tops:
        walk(top, 0)
    return rows
