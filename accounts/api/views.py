"""Clients and accounts: reads through selectors and scoped querysets, writes through services."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts.api.serializers import (
    AccountBlockSerializer,
    AccountCreateSerializer,
    AccountSerializer,
    AccountUnblockSerializer,
    AccountUpdateSerializer,
    BalanceQuerySerializer,
    BalanceSerializer,
    ClientSerializer,
    EntrySerializer,
    limits_of,
)
from accounts.filtersets import AccountFilterSet, ClientFilterSet
from accounts.models import Account, Client
from accounts.services import (
    account_block,
    account_create,
    account_set_parent,
    account_unblock,
    account_update,
    client_update,
)
from billing_site.api.pagination import CursorPagination
from billing_site.api.schema import ERRORS
from billing_site.api.views import ScopedViewSet, in_scope
from brands.models import Brand
from ledger.models import Entry
from ledger.selectors import account_balance, account_entries
from partners.services import partner_client_create


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

    def get_queryset(self):
        return self.scope.clients()

    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        client = partner_client_create(
            partner_id=self.scope.partner_id, **serializer.validated_data
        )
        return Response(self.get_serializer(client).data, status=201)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        client = self.get_object()
        serializer = self.get_serializer(client, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        client = client_update(client=client, **serializer.validated_data)
        return Response(self.get_serializer(client).data)


class EntryFilterSet(django_filters.FilterSet):
    to = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lte", label="Entries made at or before"
    )

    class Meta:
        model = Entry
        fields: list[str] = []


EntryFilterSet.base_filters["from"] = django_filters.IsoDateTimeFilter(
    field_name="created_at", lookup_expr="gte", label="Entries made at or after"
)


class NewestFirst(CursorPagination):
    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        return ("-id",)


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

    def get_queryset(self):
        accounts = self.scope.accounts()
        if self.action in {"balance", "entries", "block", "unblock", "partial_update"}:
            return accounts  # no brand codes to show (block/unblock/patch re-read in _out)
        return accounts.prefetch_related("brands")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "brand_ids": self.scope.brand_ids}

    def _out(self, account: Account, status: int = 200) -> Response:
        fresh = self.scope.accounts().prefetch_related("brands").get(pk=account.pk)
        return Response(self.get_serializer(fresh).data, status=status)

    def _brands(self, codes: list[str] | None) -> list[Brand] | None:
        """Brand codes to brands the caller may link; a partner's default is all its brands."""
        if codes is None:
            return list(self.scope.brands()) if self.scope.is_partner else None
        found = {b.code: b for b in self.scope.brands().filter(code__in=codes)}
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
        client = in_scope(self.scope.clients(), data["client"], "client")
        parent = data.get("parent")
        if parent is not None:
            parent = in_scope(self.scope.accounts(), parent, "parent")
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
                None if parent_id is None else in_scope(self.scope.accounts(), parent_id, "parent")
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

    @extend_schema(parameters=[BalanceQuerySerializer], responses={200: BalanceSerializer})
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def balance(self, request: Any, pk: Any = None) -> Response:
        """Balance, held and available funds now or at a past moment (``?at=``).

        For a sub-account, ``balance`` and ``available`` are its payer's and
        ``write_off_remaining`` is what the sub-account's own limits still allow.
        """
        query = BalanceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        account = self.scope.account(int(pk)) if str(pk).isdigit() else None
        if account is None:
            raise NotFound()
        view = account_balance(account, at=query.validated_data.get("at"), refresh=False)
        return Response(BalanceSerializer(view).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Entries at or after."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Entries at or before."),
        ],
        responses={200: EntrySerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def entries(self, request: Any, pk: Any = None) -> Response:
        """The account's history, newest first (``?from=&to=``, inclusive, ISO 8601)."""
        account = self.get_object()
        filterset = EntryFilterSet(request.query_params, queryset=account_entries(account))
        if not filterset.is_valid():
            raise serializers.ValidationError(filterset.errors)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(EntrySerializer(page, many=True).data)
