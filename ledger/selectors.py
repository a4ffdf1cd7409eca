"""Reads of the ledger: balances, balance at a moment, history with keyset pagination,
and the transactions and holds within a caller's scope.

Scope by brand and by author (staff see everything). A partner reads a
transaction or hold *through* an account when the account is linked to one of
its key's brands and either the account is not shared (linked to no brand
outside the key's scope), or the posting carries one of the key's brands, or
the partner's own keys posted it (``caller == "partner:<id>"``). A transfer is
read through either of its accounts; the side it is not readable through is
redacted (``transfer_hidden_accounts``). A partner reverses, captures and voids
only what its own keys posted. ``transactions_in_scope`` and ``holds_in_scope``
say this to the database; ``readable_through`` says it in Python for one
posting (webhooks, redaction): tests hold the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.exceptions import AccountChainLoop
from accounts.models import Account
from accounts.selectors import (
    AccountFunds,
    account_brand_ids,
    account_is_shared,
    linked_outside_brands,
    linked_to_brands,
)
from core.api.scope import Scope
from ledger.models import Entry, Hold, Transaction
from ledger.services import ZERO, business_date, credit_refusal


def _readable_through(scope: Scope, account_field: str) -> Q:
    brand_ids = scope.brand_ids
    return Q(linked_to_brands(brand_ids, account_field)) & (
        Q(brand_id__in=brand_ids)
        | Q(caller=scope.caller.ref)
        | ~Q(linked_outside_brands(brand_ids, account_field))
    )


def readable_through(
    scope: Scope, *, account_brands: frozenset[int], brand_id: int | None, caller: str
) -> bool:
    """Whether ``scope`` reads a posting (its ``brand_id``, ``caller``) through an account
    linked to ``account_brands``: the rule of ``transactions_in_scope`` for one row."""
    if scope.brand_ids is None:
        return True
    if not account_brands & scope.brand_ids:
        return False
    return (
        brand_id in scope.brand_ids
        or caller == scope.caller.ref
        or account_brands <= scope.brand_ids
    )


def transactions_in_scope(
    scope: Scope, qs: QuerySet[Transaction] | None = None
) -> QuerySet[Transaction]:
    """Transactions the scope reads through their account (or a transfer's receiving account)."""
    qs = Transaction.objects.all() if qs is None else qs
    if scope.brand_ids is None:
        return qs
    return qs.filter(
        _readable_through(scope, "account_id") | _readable_through(scope, "counter_account_id")
    )


def transactions_reversible_by(
    scope: Scope, qs: QuerySet[Transaction] | None = None
) -> QuerySet[Transaction]:
    """What the scope may reverse: for a partner, what its own keys posted among what it reads."""
    qs = transactions_in_scope(scope, qs)
    return qs if scope.brand_ids is None else qs.filter(caller=scope.caller.ref)


def holds_in_scope(scope: Scope, qs: QuerySet[Hold] | None = None) -> QuerySet[Hold]:
    """Holds the scope reads through their account (the rule of ``transactions_in_scope``)."""
    qs = Hold.objects.all() if qs is None else qs
    if scope.brand_ids is None:
        return qs
    return qs.filter(_readable_through(scope, "account_id"))


def holds_settleable_by(scope: Scope, qs: QuerySet[Hold] | None = None) -> QuerySet[Hold]:
    """What the scope may capture or void: for a partner, the holds its own keys placed."""
    qs = holds_in_scope(scope, qs)
    return qs if scope.brand_ids is None else qs.filter(caller=scope.caller.ref)


def transfer_hidden_accounts(
    scope: Scope, transactions: Iterable[Transaction]
) -> dict[int, frozenset[int]]:
    """{transfer id: its accounts the scope does not read it through} (one query for all).

    Their entries are shown without the payer and ``balance_after``.
    """
    if scope.brand_ids is None:
        return {}
    transfers = [t for t in transactions if t.counter_account_id is not None]
    if not transfers:
        return {}
    brands = account_brand_ids(
        sorted({pk for t in transfers for pk in (t.account_id, t.counter_account_id)})
    )
    hidden: dict[int, frozenset[int]] = {}
    for txn in transfers:
        sides = frozenset(
            pk
            for pk in (txn.account_id, txn.counter_account_id)
            if not readable_through(
                scope, account_brands=brands[pk], brand_id=txn.brand_id, caller=txn.caller
            )
        )
        if sides:
            hidden[txn.pk] = sides
    return hidden


@dataclass(frozen=True)
class BalanceView:
    """What an operator or a partner sees for an account (sub-accounts show the payer's funds)."""

    account: Account | AccountFunds
    payer: Account | AccountFunds
    balance: Decimal
    held: Decimal
    available: Decimal
    credit_limit: Decimal
    credit_available: Decimal
    currency: str
    as_of: datetime
    write_off_remaining: Decimal | None


def account_chain(
    account: Account | AccountFunds, *, refresh: bool = True
) -> list[Account | AccountFunds]:
    """The account, its parent, ... up to the root payer (no locks).

    ``refresh=False`` trusts the given instance (just read by the caller).
    """
    chain = [Account.objects.get(pk=account.pk) if refresh else account]
    seen = {chain[0].pk}
    while chain[-1].parent_id is not None:
        if chain[-1].parent_id in seen:  # corrupt data: never walk it forever
            raise AccountChainLoop(account=chain[0].number)
        seen.add(chain[-1].parent_id)
        chain.append(Account.objects.get(pk=chain[-1].parent_id))
    return chain


def balance_at(account: Account, at: datetime) -> Decimal:
    """The payer's balance right after the last entry made at or before ``at``."""
    value = (
        Entry.objects.filter(account_id=account.pk, balance_after__isnull=False, created_at__lte=at)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    return value if value is not None else ZERO


def held_at(account: Account, at: datetime) -> Decimal:
    total = Hold.objects.filter(
        Q(closed_at__isnull=True) | Q(closed_at__gt=at), payer_id=account.pk, created_at__lte=at
    ).aggregate(total=Sum("amount"))["total"]
    return total or ZERO


def write_off_remaining(chain: list[Account], now: datetime) -> Decimal | None:
    """How much the write-off limits of the whole chain still allow right now (None: no limit)."""
    today = business_date(now)
    month = today.replace(day=1)
    remaining: list[Decimal] = []
    for acc in chain:
        if acc.write_off_limit_transaction is not None:
            remaining.append(acc.write_off_limit_transaction)
        if acc.write_off_limit_day is not None:
            spent = acc.spent_day if acc.spent_day_on == today else ZERO
            remaining.append(acc.write_off_limit_day - spent)
        if acc.write_off_limit_month is not None:
            spent = acc.spent_month if acc.spent_month_on == month else ZERO
            remaining.append(acc.write_off_limit_month - spent)
    return max(min(remaining), ZERO) if remaining else None


def account_balance(
    account: Account | AccountFunds, at: datetime | None = None, *, refresh: bool = True
) -> BalanceView:
    """Balance, held and available funds now (or at a past moment ``at``).

    ``refresh=False``: ``account`` was just read in this request (an ``Account``, or the
    ``AccountFunds`` the API's balance read selects); do not read it again.
    """
    chain = account_chain(account, refresh=refresh)
    payer = chain[-1]
    now = timezone.now()
    moment = at or now
    if at is None:
        balance, held = payer.balance, payer.held
    else:
        balance, held = balance_at(payer, at), held_at(payer, at)
    own = balance - held
    usable = payer.credit_limit if credit_refusal(payer, moment) is None else ZERO
    credit_used = max(-own, ZERO)
    credit_available = max(usable - credit_used, ZERO)
    return BalanceView(
        account=account,
        payer=payer,
        balance=balance,
        held=held,
        available=max(own + usable, ZERO),
        credit_limit=payer.credit_limit,
        credit_available=credit_available,
        currency=payer.currency,
        as_of=moment,
        write_off_remaining=write_off_remaining(chain, now) if at is None else None,
    )


def account_entries(account: Account) -> QuerySet[Entry]:
    """An account's history, newest first: its own entries, or a sub-account's postings."""
    qs = Entry.objects.select_related("transaction")
    if account.parent_id is not None:
        return qs.filter(subaccount_id=account.pk).order_by("-id")
    return qs.filter(account_id=account.pk).order_by("-id")


def entries_in_scope(scope: Scope, account: Account) -> QuerySet[Entry]:
    """An account's history as the scope reads it: all of it, or on a shared account only
    the entries of postings that carry one of the scope's brands or that it posted."""
    qs = account_entries(account)
    if scope.brand_ids is None or not account_is_shared(scope, account.pk):
        return qs
    return qs.filter(
        Q(transaction__brand_id__in=scope.brand_ids) | Q(transaction__caller=scope.caller.ref)
    )


def account_history(
    account: Account,
    *,
    before_id: int | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = 50,
) -> list[Entry]:
    """One page of history, newest first; pass the last id seen as ``before_id`` for the next."""
    qs = account_entries(account)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    if created_from is not None:
        qs = qs.filter(created_at__gte=created_from)
    if created_to is not None:
        qs = qs.filter(created_at__lt=created_to)
    return list(qs[:limit])


def system_account_balance(account: Account) -> Decimal:
    """A system account keeps no running balance: it is the sum of its entries."""
    total = Entry.objects.filter(account_id=account.pk).aggregate(total=Sum("amount"))["total"]
    return total or ZERO


def transactions_for_account(account: Account) -> QuerySet[Transaction]:
    return Transaction.objects.filter(Q(account=account) | Q(counter_account=account))
