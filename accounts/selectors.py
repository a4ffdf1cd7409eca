"""Reads of clients and accounts within a caller's scope (API, staff views, reports).

A partner sees the client accounts linked (``Account.brands``) to its key's
brands and the clients owning them, plus the clients it created itself;
staff (``scope.brand_ids is None``) see every client account.

An account is *shared* for a partner when it is also linked to a brand outside
the key's scope; a client is shared when one of its accounts is. A partner
reads a shared account (``ledger.selectors`` limits which of its transactions
and holds) but may not change it (``accounts.exceptions.SharedObject``).
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db.models import Exists, OuterRef, QuerySet

from accounts.models import Account, Client, PartnerClient
from core.api.scope import Scope
from core.hot_cursor import PREPARE, hot_cursor

AccountBrand = Account.brands.through
_ACCOUNT_COLUMNS = tuple(f.attname for f in Account._meta.concrete_fields)


def linked_to_brands(brand_ids: frozenset[int], account_field: str = "pk") -> Exists:
    """Whether the account in ``account_field`` is linked to one of ``brand_ids``."""
    return Exists(
        AccountBrand.objects.filter(account_id=OuterRef(account_field), brand_id__in=brand_ids)
    )


def linked_outside_brands(brand_ids: frozenset[int], account_field: str = "pk") -> Exists:
    """Whether the account in ``account_field`` is linked to a brand not in ``brand_ids``."""
    return Exists(
        AccountBrand.objects.filter(account_id=OuterRef(account_field)).exclude(
            brand_id__in=brand_ids
        )
    )


def account_is_shared(scope: Scope, account_id: int | None) -> bool:
    """Whether this account is linked to a brand outside a partner's scope (never for staff)."""
    if scope.brand_ids is None or account_id is None:
        return False
    return (
        AccountBrand.objects.filter(account_id=account_id)
        .exclude(brand_id__in=scope.brand_ids)
        .exists()
    )


def client_is_shared(scope: Scope, client_id: int) -> bool:
    """Whether one of the client's accounts is linked to a brand outside a partner's scope."""
    if scope.brand_ids is None:
        return False
    return (
        AccountBrand.objects.filter(account__client_id=client_id)
        .exclude(brand_id__in=scope.brand_ids)
        .exists()
    )


def account_brand_ids(account_ids: list[int]) -> dict[int, frozenset[int]]:
    """{account id: the brands it is linked to} (an account with none maps to an empty set)."""
    links: dict[int, set[int]] = {pk: set() for pk in account_ids}
    for account_id, brand_id in AccountBrand.objects.filter(account_id__in=account_ids).values_list(
        "account_id", "brand_id"
    ):
        links[account_id].add(brand_id)
    return {pk: frozenset(brands) for pk, brands in links.items()}


def accounts_in_scope(scope: Scope, qs: QuerySet[Account] | None = None) -> QuerySet[Account]:
    qs = Account.objects.filter(kind=Account.Kind.CLIENT) if qs is None else qs
    return qs if scope.brand_ids is None else qs.filter(linked_to_brands(scope.brand_ids))


def clients_in_scope(scope: Scope, qs: QuerySet[Client] | None = None) -> QuerySet[Client]:
    qs = Client.objects.all() if qs is None else qs
    if scope.brand_ids is None:
        return qs
    has_account = Exists(
        Account.objects.filter(client_id=OuterRef("pk")).filter(linked_to_brands(scope.brand_ids))
    )
    created = Exists(
        PartnerClient.objects.filter(client_id=OuterRef("pk"), partner_id=scope.partner_id)
    )
    return qs.filter(has_account | created)


# The ids a BIGINT primary key can hold; no account has an id outside them.
_MIN_ID, _MAX_ID = -(2**63), 2**63 - 1


@functools.cache
def _account_row_sql(columns: tuple[str, ...], scoped: bool) -> str:
    sql = (
        f"SELECT {', '.join(f'a.{c}' for c in columns)} FROM accounts_account a"
        " WHERE a.id = %s AND a.kind = 'client'"
    )
    if scoped:
        sql += (
            " AND EXISTS (SELECT 1 FROM accounts_account_brands b"
            " WHERE b.account_id = a.id AND b.brand_id = ANY(%s))"
        )
    return sql


def _account_row(scope: Scope, columns: tuple[str, ...], account_id: int) -> tuple | None:
    """One client account row in scope, by a plain query: building the equivalent
    ORM query with its ``Exists`` costs more than running it (the API's hot path).
    A prepared statement on the connection's reused cursor (``core.hot_cursor``)."""
    if not _MIN_ID <= account_id <= _MAX_ID:
        return None  # a BIGINT parameter could not even carry it
    params: list[Any] = [account_id]
    if scope.brand_ids is not None:
        params.append(list(scope.brand_ids))
    with hot_cursor() as cursor:
        cursor.execute(
            _account_row_sql(columns, scope.brand_ids is not None), params, prepare=PREPARE
        )
        return cursor.fetchone()


def account_ref_in_scope(scope: Scope, account_id: int) -> tuple[int, str] | None:
    """(id, currency) of a client account this scope may post to, or None."""
    row = _account_row(scope, ("id", "currency"), account_id)
    return (row[0], row[1]) if row else None


class AccountFunds(NamedTuple):
    """What a balance read needs of an account (``ledger.selectors.account_balance``): its
    limits and running state, read like an ``Account`` without building the model."""

    id: int
    parent_id: int | None
    currency: str
    credit_limit: Decimal
    credit_period_days: int | None
    credit_expires_at: date | None
    write_off_limit_transaction: Decimal | None
    write_off_limit_day: Decimal | None
    write_off_limit_month: Decimal | None
    balance: Decimal
    held: Decimal
    negative_since: datetime | None
    spent_day: Decimal
    spent_day_on: date | None
    spent_month: Decimal
    spent_month_on: date | None

    @property
    def pk(self) -> int:
        return self.id


def account_funds_in_scope(scope: Scope, account_id: int) -> AccountFunds | None:
    """``account_in_scope`` for a balance read: the same account, only what it needs."""
    row = _account_row(scope, AccountFunds._fields, account_id)
    return None if row is None else AccountFunds._make(row)


def account_in_scope(scope: Scope, account_id: int) -> Account | None:
    """The client account with this id if this scope sees it."""
    row = _account_row(scope, _ACCOUNT_COLUMNS, account_id)
    return None if row is None else Account.from_db("default", _ACCOUNT_COLUMNS, row)
