"""Clients and accounts: reads through selectors and scoped querysets, writes through services."""

from __future__ import annotations

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
from accounts.filtersets import AccountFilterSet, ClientFilterSet
from accounts.models import Account, Client
from accounts.selectors import accounts_in_scope, clients_in_scope
from accounts.services import (
    account_block,
    account_create,
    account_set_parent,
    account_unblock,
    account_update,
    client_create,
    client_update,
)
from brands.models import Brand
from brands.selectors import brands_in_scope
from core.api.permissions import reads
from core.api.schema import ERRORS
from core.api.views import ScopedViewSet, in_scope


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
        serializer = self.get_serializer(client, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        client = client_update(client=client, **serializer.validated_data)
        return Response(self.get_serializer(client).data)


ACCOUNT_ERRORS = {409: ERRORS[409]}


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
        client = in_scope(clients_in_scope(self.scope), data["client"], "client")
        parent = data.get("parent")
        if parent is not None:
            parent = in_scope(accounts_in_scope(self.scope), parent, "parent")
        account = account_create(
            client=client,
            currency=data.get("currency"),
            parent=parent,
            brands=self._brands(data.get("brands")) or (),
            **limits_of(data),
        )
        return self._out(account, status=201)

    @extend_schema(request=AccountUpdateSerializer, responses={200: AccountSerializer})
    def partial_update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        account = self.get_object()
        serializer = AccountUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        brands = None
        if "brands" in data:
            requested = self._brands(data["brands"]) or []
            if self.scope.is_partner:
                # A partner changes only its own brands' links and keeps the others'.
                others = [b for b in account.brands.all() if b.pk not in self.scope.brand_ids]
                requested = others + requested
            brands = requested
        parent = account.parent
        if "parent" in data:
            parent_id = data["parent"]
            parent = (
                None
                if parent_id is None
                else in_scope(accounts_in_scope(self.scope), parent_id, "parent")
            )
        with transaction.atomic():
            if "parent" in data and getattr(parent, "pk", None) != account.parent_id:
                account = account_set_parent(account=account, parent=parent)
            account = account_update(account=account, brands=brands, **limits_of(data))
        return self._out(account)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return self.partial_update(request, *args, **kwargs)

    def _actor(self) -> Any:
        return None if self.scope.is_partner else self.request.user

    @extend_schema(
        request=AccountBlockSerializer, responses={200: AccountSerializer, **ACCOUNT_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def block(self, request: Any, pk: Any = None) -> Response:
        """Block the account: discretionary debits are refused until it is unblocked."""
        account = self.get_object()
        serializer = AccountBlockSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = account_block(
            account=account, reason=serializer.validated_data["reason"], blocked_by=self._actor()
        )
        return self._out(account)

    @extend_schema(
        request=AccountUnblockSerializer, responses={200: AccountSerializer, **ACCOUNT_ERRORS}
    )
    @action(detail=True, methods=["post"])
    def unblock(self, request: Any, pk: Any = None) -> Response:
        account = self.get_object()
        serializer = AccountUnblockSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = account_unblock(
            account=account,
            unblocked_by=self._actor(),
            reason=serializer.validated_data["reason"],
        )
        return self._out(account)
