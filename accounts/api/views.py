"""Clients and accounts: reads through selectors and scoped querysets, writes through services.

Managing clients and accounts (create, change, block, unblock) needs the
``billing`` capability of a key, or the admin's permission for the same change
(``accounts.add_client``, ``change_account``, ``block_account``...). A partner
may read, but not change, a client or account it shares with brands outside
its key's scope (``403 shared_object``); it never lifts a block the operator
set (``403 blocked_by_staff``); it moves sub-accounts only between payers that
are wholly its own. Raising a credit limit above
``BILLING_APPROVAL_CREDIT_LIMIT_ABOVE`` waits for staff approval
(``accounts.maker_checker``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.serializers import (
    AccountBlockSerializer,
    AccountCreateSerializer,
    AccountSerializer,
    AccountUnblockSerializer,
    AccountUpdateSerializer,
    ClientSerializer,
    limits_of,
)
from accounts.exceptions import SharedObject
from accounts.filtersets import AccountFilterSet, ClientFilterSet
from accounts.maker_checker import (
    account_change_needs_approval,
    account_update_request,
    credit_limit_needs_approval,
    credit_limit_refusal_at_creation,
)
from accounts.models import Account, Client
from accounts.selectors import (
    account_is_shared,
    accounts_in_scope,
    client_is_shared,
    clients_in_scope,
)
from accounts.services import (
    account_block,
    account_create,
    account_set_parent,
    account_unblock,
    account_update,
    client_create,
    client_update,
)
from approvals.api.serializers import ApprovalRequiredSerializer, approval_required_body
from brands.models import Brand
from brands.selectors import brands_in_scope
from core.api.permissions import reads
from core.api.schema import ERRORS
from core.api.views import ScopedViewSet, in_scope


def _changed_fields(request: Any) -> set[str]:
    return set(request.data) if isinstance(request.data, dict) else set()


class ClientViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ScopedViewSet,
):
    """Clients (individuals and legal entities) who own accounts linked to the caller's brands.

    A partner also sees the clients it created itself, before they have accounts.
    """

    queryset = Client.objects.none()  # for the schema; get_queryset() scopes
    serializer_class = ClientSerializer
    filterset_class = ClientFilterSet
    ordering_fields = ["id", "name", "created_at"]
    ordering = ["id"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    required = {
        **reads("accounts.view_client"),
        "create": ("billing", "accounts.add_client"),
        "partial_update": ("billing", "accounts.change_client"),
    }

    def get_queryset(self):
        return clients_in_scope(self.scope)

    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = client_create(
            created_by_partner_id=self.scope.partner_id, **serializer.validated_data
        )
        return Response(self.get_serializer(client).data, status=201)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        client = self.get_object()
        if _changed_fields(request) and client_is_shared(self.scope, client.pk):
            raise SharedObject(client=client.pk)
        serializer = self.get_serializer(client, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        client = client_update(client=client, **serializer.validated_data)
        return Response(self.get_serializer(client).data)


ACCOUNT_ERRORS = {409: ERRORS[409]}
# What a partner may change on an account it shares: only its own brands' links.
SHARED_ACCOUNT_CHANGES = {"brands"}


class AccountViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ScopedViewSet,
):
    """Client accounts and sub-accounts linked to the caller's brands, with their limits."""

    queryset = Account.objects.none()
    serializer_class = AccountSerializer
    filterset_class = AccountFilterSet
    ordering_fields = ["id", "number", "created_at"]
    ordering = ["id"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    required = {
        **reads("accounts.view_account"),
        "create": ("billing", "accounts.add_account"),
        "partial_update": ("billing", "accounts.change_account"),
        "block": ("billing", "accounts.block_account"),
        "unblock": ("billing", "accounts.block_account"),
    }

    def get_queryset(self):
        accounts = accounts_in_scope(self.scope)
        if self.action in {"block", "unblock", "partial_update"}:
            return accounts  # no brand codes to show (block/unblock/patch re-read in _out)
        return accounts.prefetch_related("brands")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "brand_ids": self.scope.brand_ids}

    def _out(self, account: Account, status: int = 200) -> Response:
        fresh = accounts_in_scope(self.scope).prefetch_related("brands").get(pk=account.pk)
        return Response(self.get_serializer(fresh).data, status=status)

    def _refuse_shared(self, account_id: int | None, **details: Any) -> None:
        if account_is_shared(self.scope, account_id):
            raise SharedObject(**details)

    def _payer(self, parent_id: int | None) -> Account | None:
        """A new payer: one the caller sees (404 otherwise) and, for a partner, wholly its own."""
        if parent_id is None:
            return None
        parent = in_scope(accounts_in_scope(self.scope), parent_id, "parent")
        self._refuse_shared(parent.pk, parent=parent.pk)
        return parent

    def _leave_payer(self, account: Account) -> None:
        """A partner detaches a sub-account only from a payer that is wholly its own."""
        if account.parent_id is None or not self.scope.is_partner:
            return
        if not accounts_in_scope(self.scope).filter(pk=account.parent_id).exists():
            raise SharedObject(
                "The payer of this sub-account is outside your scope.", parent=account.parent_id
            )
        self._refuse_shared(account.parent_id, parent=account.parent_id)

    def _brands(self, codes: list[str] | None) -> list[Brand] | None:
        """Brand codes to brands the caller may link; a partner's default is all its brands."""
        if codes is None:
            return list(brands_in_scope(self.scope)) if self.scope.is_partner else None
        found = {b.code: b for b in brands_in_scope(self.scope).filter(code__in=codes)}
        unknown = sorted(set(codes) - set(found))
        if unknown:
            raise serializers.ValidationError({"brands": [f"Unknown brand code: {unknown[0]}."]})
        if self.scope.is_partner and not found:
            raise serializers.ValidationError(
                {"brands": ["Link the account to at least one of your brands."]}
            )
        return list(found.values())

    @extend_schema(request=AccountCreateSerializer, responses={201: AccountSerializer})
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        serializer = AccountCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if credit_limit_needs_approval(current=Decimal("0.00"), new=data.get("credit_limit")):
            raise serializers.ValidationError(
                {"credit_limit": [credit_limit_refusal_at_creation()]}
            )
        client = in_scope(clients_in_scope(self.scope), data["client"], "client")
        parent = self._payer(data.get("parent"))
        account = account_create(
            client=client,
            currency=data.get("currency"),
            parent=parent,
            brands=self._brands(data.get("brands")) or (),
            **limits_of(data),
        )
        return self._out(account, status=201)

    @extend_schema(
        request=AccountUpdateSerializer,
        responses={200: AccountSerializer, 202: ApprovalRequiredSerializer},
    )
    def partial_update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Change the account's label, limits, brands or payer.

        Raising ``credit_limit`` above ``BILLING_APPROVAL_CREDIT_LIMIT_ABOVE``
        changes nothing yet: it answers ``202 approval_required`` with the request
        (the limits and label of this PATCH) that staff approve or reject.
        """
        account = self.get_object()
        if _changed_fields(request) - SHARED_ACCOUNT_CHANGES:
            self._refuse_shared(account.pk, account=account.pk)
        serializer = AccountUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if account_change_needs_approval(account, limits_of(data)):
            return self._file_for_approval(account, data)
        brands = None
        if "brands" in data:
            requested = self._brands(data["brands"]) or []
            if self.scope.is_partner:
                # A partner changes only its own brands' links and keeps the others'.
                others = [b for b in account.brands.all() if b.pk not in self.scope.brand_ids]
                requested = others + requested
            brands = requested
        moves = "parent" in data and data["parent"] != account.parent_id
        parent = self._payer(data["parent"]) if moves else None
        if moves:
            self._leave_payer(account)
        with transaction.atomic():
            if moves:
                account = account_set_parent(account=account, parent=parent)
            account = account_update(account=account, brands=brands, **limits_of(data))
        return self._out(account)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return self.partial_update(request, *args, **kwargs)

    def _file_for_approval(self, account: Account, data: dict[str, Any]) -> Response:
        if "brands" in data or "parent" in data:
            raise serializers.ValidationError(
                {
                    "credit_limit": [
                        "This raise of the credit limit waits for approval: send it without "
                        "brands or parent, and change those in a request of their own."
                    ]
                }
            )
        filed = account_update_request(
            account=account, changes=limits_of(data), caller=self.scope.caller
        )
        return Response(approval_required_body(filed), status=202)

    def _actor(self) -> Any:
        return None if self.scope.is_partner else self.request.user

    def _status_change(self, account: Account, serializer_class: type) -> dict[str, Any]:
        self._refuse_shared(account.pk, account=account.pk)
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return {
            "account": account,
            "reason": serializer.validated_data["reason"],
            "caller_ref": self.scope.caller.ref,
        }

    @extend_schema(
        request=AccountBlockSerializer, responses={200: AccountSerializer, **ACCOUNT_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def block(self, request: Any, pk: Any = None) -> Response:
        """Block the account: discretionary debits are refused until it is unblocked."""
        change = self._status_change(self.get_object(), AccountBlockSerializer)
        return self._out(account_block(blocked_by=self._actor(), **change))

    @extend_schema(
        request=AccountUnblockSerializer, responses={200: AccountSerializer, **ACCOUNT_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def unblock(self, request: Any, pk: Any = None) -> Response:
        """Lift a block; a partner lifts only a block a partner set (403 ``blocked_by_staff``)."""
        change = self._status_change(self.get_object(), AccountUnblockSerializer)
        return self._out(account_unblock(unblocked_by=self._actor(), **change))
