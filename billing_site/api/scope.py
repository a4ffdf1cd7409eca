"""What a request may see and do: a partner's brands, or everything for staff.

A partner sees the client accounts linked (``Account.brands``) to its key's
brands, the clients owning them (plus clients it created itself), their
transactions and holds, and only its own brands and their services. Anything
else answers 404, exactly like something that does not exist.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.models import Account, Client
from brands.models import Brand, Service
from ledger.models import Hold, Transaction
from ledger.services import Caller
from partners.models import PartnerClient
from partners.services import ApiPrincipal

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
AccountBrand = Account.brands.through
_ACCOUNT_COLUMNS = [f.attname for f in Account._meta.concrete_fields]


@dataclass(frozen=True)
class Scope:
    brand_ids: frozenset[int] | None  # None: staff, no restriction
    partner_id: int | None
    caller: Caller

    @property
    def is_partner(self) -> bool:
        return self.brand_ids is not None

    def _linked(self, account_field: str = "pk") -> Exists:
        return Exists(
            AccountBrand.objects.filter(
                account_id=OuterRef(account_field), brand_id__in=self.brand_ids
            )
        )

    def accounts(self, qs: QuerySet[Account] | None = None) -> QuerySet[Account]:
        qs = Account.objects.filter(kind=Account.Kind.CLIENT) if qs is None else qs
        return qs if self.brand_ids is None else qs.filter(self._linked())

    def clients(self, qs: QuerySet[Client] | None = None) -> QuerySet[Client]:
        qs = Client.objects.all() if qs is None else qs
        if self.brand_ids is None:
            return qs
        has_account = Exists(
            Account.objects.filter(client_id=OuterRef("pk")).filter(self._linked())
        )
        created = Exists(
            PartnerClient.objects.filter(client_id=OuterRef("pk"), partner_id=self.partner_id)
        )
        return qs.filter(has_account | created)

    def transactions(self, qs: QuerySet[Transaction] | None = None) -> QuerySet[Transaction]:
        qs = Transaction.objects.all() if qs is None else qs
        if self.brand_ids is None:
            return qs
        return qs.filter(Q(self._linked("account_id")) | Q(self._linked("counter_account_id")))

    def holds(self, qs: QuerySet[Hold] | None = None) -> QuerySet[Hold]:
        qs = Hold.objects.all() if qs is None else qs
        return qs if self.brand_ids is None else qs.filter(self._linked("account_id"))

    def brands(self, qs: QuerySet[Brand] | None = None) -> QuerySet[Brand]:
        qs = Brand.objects.all() if qs is None else qs
        return qs if self.brand_ids is None else qs.filter(pk__in=self.brand_ids)

    def services(self, qs: QuerySet[Service] | None = None) -> QuerySet[Service]:
        qs = Service.objects.all() if qs is None else qs
        return qs if self.brand_ids is None else qs.filter(brand_id__in=self.brand_ids)

    def _account_row(self, columns: list[str], account_id: int) -> tuple | None:
        """One client account row in scope, by a plain query: building the
        equivalent ORM query with its ``Exists`` costs more than running it."""
        sql = (
            f"SELECT {', '.join(f'a.{c}' for c in columns)} FROM accounts_account a"
            " WHERE a.id = %s AND a.kind = 'client'"
        )
        params: list[Any] = [account_id]
        if self.brand_ids is not None:
            sql += (
                " AND EXISTS (SELECT 1 FROM accounts_account_brands b"
                " WHERE b.account_id = a.id AND b.brand_id = ANY(%s))"
            )
            params.append(list(self.brand_ids))
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    def account_ref(self, account_id: int) -> tuple[int, str] | None:
        """(id, currency) of a client account this scope may post to, or None."""
        row = self._account_row(["id", "currency"], account_id)
        return (row[0], row[1]) if row else None

    def account(self, account_id: int) -> Account | None:
        """The client account with this id if this scope sees it (the hot path of reads)."""
        row = self._account_row(_ACCOUNT_COLUMNS, account_id)
        return None if row is None else Account.from_db("default", _ACCOUNT_COLUMNS, row)

    def allows_brand(self, brand_id: int) -> bool:
        return self.brand_ids is None or brand_id in self.brand_ids


def request_id_of(request: Any) -> str:
    existing = getattr(request, "_billing_request_id", None)
    if existing:
        return existing
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex
    request._billing_request_id = request_id
    return request_id


def request_scope(request: Any) -> Scope:
    """The scope of an authenticated DRF request (computed once per request)."""
    cached = getattr(request, "_billing_scope", None)
    if cached is not None:
        return cached
    request_id = request_id_of(request)
    principal = request.auth
    if isinstance(principal, ApiPrincipal):
        scope = Scope(
            brand_ids=principal.brand_ids,
            partner_id=principal.partner_id,
            caller=Caller.for_partner(principal.partner_id, request_id=request_id),
        )
    else:
        scope = Scope(
            brand_ids=None,
            partner_id=None,
            caller=Caller.for_user(request.user, request_id=request_id),
        )
    request._billing_scope = scope
    return scope
