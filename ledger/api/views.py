"""Money endpoints and the transaction and hold reads.

Every write calls a ledger service with the caller's ``Caller`` and the
request's ``Idempotency-Key`` (``access.idempotency.money_post``). The
view resolves every referenced id within the caller's scope first (404 when
outside it) and passes the account's currency, so the ledger checks the
currency's minor unit. What each action needs (a key capability, a staff
permission) is its view's ``required`` map (``core.api.permissions``); which
postings a partner reads and acts on is ``ledger.selectors``'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from access.idempotency import money_post
from accounts.models import Account
from accounts.selectors import account_funds_in_scope, account_ref_in_scope, accounts_in_scope
from approvals.api.serializers import ApprovalRequiredSerializer, approval_required_body
from brands.models import Brand
from brands.selectors import services_in_scope
from core.api.pagination import CursorPagination
from core.api.permissions import reads
from core.api.schema import ERRORS, IDEMPOTENCY_KEY
from core.api.scope import Scope
from core.api.views import NotFoundInScope, ScopedViewSet, in_scope, rendered_now
from ledger import maker_checker, services
from ledger.api.serializers import (
    BalanceQuerySerializer,
    BalanceSerializer,
    ChargeCreateSerializer,
    EntrySerializer,
    HoldCaptureSerializer,
    HoldCreateSerializer,
    HoldSerializer,
    PaymentCreateSerializer,
    RefundCreateSerializer,
    ReverseSerializer,
    TransactionSerializer,
    TransferCreateSerializer,
    redact_transfer_sides,
)
from ledger.filtersets import EntryFilterSet, HoldFilterSet, TransactionFilterSet
from ledger.models import Entry, Hold, Transaction
from ledger.selectors import (
    account_balance,
    entries_in_scope,
    holds_in_scope,
    holds_settleable_by,
    transactions_in_scope,
    transactions_reversible_by,
    transfer_hidden_accounts,
)

POST_ERRORS = {409: ERRORS[409], 422: ERRORS[422]}


def transactions_with_details(qs: QuerySet[Transaction]) -> QuerySet[Transaction]:
    reversal = Transaction.objects.filter(reversal_of_id=OuterRef("pk")).values("id")[:1]
    return qs.annotate(reversed_by_id=Subquery(reversal)).prefetch_related(
        Prefetch("entries", queryset=Entry.objects.order_by("id"))
    )


def serialize_transaction(txn: Transaction) -> dict[str, Any]:
    """The API body of a transaction; one just posted carries its entries (no query needed)."""
    if "entries" not in getattr(txn, "_prefetched_objects_cache", {}):
        txn = transactions_with_details(Transaction.objects.filter(pk=txn.pk)).get()
    return TransactionSerializer(txn).data


def serialize_hold(hold: Hold) -> dict[str, Any]:
    return HoldSerializer(Hold.objects.get(pk=hold.pk)).data


@dataclass(frozen=True)
class _AccountRef:
    pk: int
    currency: str


def _account(scope: Scope, account_id: int, field: str = "account") -> _AccountRef:
    ref = account_ref_in_scope(scope, account_id) if account_id is not None else None
    if ref is None:
        raise NotFoundInScope(f"{field}: not found.", **{field: ["Not found."]})
    return _AccountRef(*ref)


def _brand_id(scope: Scope, brand_id: int) -> int:
    if not scope.allows_brand(brand_id) or (
        not scope.is_partner and not Brand.objects.filter(pk=brand_id).exists()
    ):
        raise NotFoundInScope("brand: not found.", brand=["Not found."])
    return brand_id


def _service(scope: Scope, service_id: int | None) -> Any:
    if service_id is None:
        return None
    return in_scope(services_in_scope(scope).only("id", "brand_id"), service_id, "service")


class _MoneyView(ScopedViewSet):
    """A POST-only endpoint that moves money."""

    pagination_class = None
    filter_backends: list = []

    def _valid(self, serializer_class: type, request: Any) -> dict[str, Any]:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class PaymentViewSet(_MoneyView):
    required = {"create": ("payments", "ledger.post_payment")}

    @extend_schema(
        request=PaymentCreateSerializer,
        responses={201: TransactionSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any) -> Response:
        """Money received for an account (a top-up, a bank payment): credits the account.

        Accepted for blocked accounts, refused for closed ones.
        """
        data = self._valid(PaymentCreateSerializer, request)
        account = _account(self.scope, data["account"])
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.payment_post(
                account=account.pk,
                amount=data["amount"],
                channel=data["channel"],
                external_id=data["external_id"],
                memo=data["memo"],
                currency=account.currency,
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=serialize_transaction,
        )


class _ChargeViewSet(_MoneyView):
    service_function: Any = None

    def create(self, request: Any) -> Response:
        data = self._valid(ChargeCreateSerializer, request)
        account = _account(self.scope, data["account"])
        brand_id = _brand_id(self.scope, data["brand"])
        service = _service(self.scope, data.get("service"))
        post = type(self).service_function
        return money_post(
            request,
            hands_over=True,
            post=lambda key: post(
                account=account.pk,
                amount=data["amount"],
                brand=brand_id,
                service=service,
                subject_type=data["subject_type"],
                subject_id=data["subject_id"],
                metadata=data["metadata"],
                memo=data["memo"],
                currency=account.currency,
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=serialize_transaction,
        )


class DebitViewSet(_ChargeViewSet):
    service_function = staticmethod(services.debit_post)
    required = {"create": ("debits", "ledger.post_debit")}

    @extend_schema(
        request=ChargeCreateSerializer,
        responses={201: TransactionSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any) -> Response:
        """A discretionary write-off for one of the caller's brands (a food order, a fee).

        Refused with 422 when the account or a payer above it is blocked or
        closed, a write-off limit would be exceeded, the credit period or
        credit limit has expired, or the available funds do not cover it.
        """
        return super().create(request)


class AccrualViewSet(_ChargeViewSet):
    service_function = staticmethod(services.accrual_post)
    required = {"create": ("accruals", "ledger.post_accrual")}

    @extend_schema(
        request=ChargeCreateSerializer,
        responses={201: TransactionSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any) -> Response:
        """A charge that creates debt: never refused for funds or limits, allowed on
        blocked accounts, refused only for closed ones."""
        return super().create(request)


class TransferViewSet(_MoneyView):
    required = {"create": ("transfers", "ledger.post_transfer")}

    @extend_schema(
        request=TransferCreateSerializer,
        responses={201: TransactionSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any) -> Response:
        """Move funds between two accounts of the same currency (checked like a debit)."""
        data = self._valid(TransferCreateSerializer, request)
        source = _account(self.scope, data["from_account"], "from_account")
        target = _account(self.scope, data["to_account"], "to_account")
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.transfer_post(
                from_account=source.pk,
                to_account=target.pk,
                amount=data["amount"],
                memo=data["memo"],
                currency=source.currency,
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=serialize_transaction,
        )


class RefundViewSet(_MoneyView):
    required = {"create": ("refunds", "ledger.post_refund")}

    @extend_schema(
        request=RefundCreateSerializer,
        responses={201: TransactionSerializer, 202: ApprovalRequiredSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any) -> Response:
        """Pay back the client's own funds (never credit) from a payer account.

        A refund above ``BILLING_APPROVAL_REFUND_ABOVE`` is not posted: it answers
        ``202 approval_required`` with the request that staff approve or reject.
        """
        data = self._valid(RefundCreateSerializer, request)
        account = _account(self.scope, data["account"])
        if maker_checker.refund_needs_approval(data["amount"]):
            return money_post(
                request,
                post=lambda key: maker_checker.refund_request(
                    account=account.pk,
                    amount=data["amount"],
                    channel=data["channel"],
                    memo=data["memo"],
                    currency=account.currency,
                    caller=self.scope.caller,
                    idempotency_key=key,
                ),
                serialize=approval_required_body,
                status=202,
            )
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.refund_post(
                account=account.pk,
                amount=data["amount"],
                channel=data["channel"],
                memo=data["memo"],
                currency=account.currency,
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=serialize_transaction,
        )


class TransactionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Transactions on the caller's accounts, newest first by default.

    On an account shared with brands outside the caller's scope, only the
    postings that carry one of its brands or that its own keys posted; a
    transfer's side outside the scope shows no payer and no ``balance_after``.
    """

    queryset = Transaction.objects.none()  # for the schema; get_queryset() scopes
    serializer_class = TransactionSerializer
    filterset_class = TransactionFilterSet
    ordering_fields = ["id", "created_at", "amount"]
    ordering = ["-id"]
    required = {
        **reads("ledger.view_transaction"),
        "reverse": ("reversals", "ledger.reverse_transaction"),
    }

    def get_queryset(self):
        if self.action == "reverse":
            return transactions_reversible_by(self.scope)
        return transactions_with_details(transactions_in_scope(self.scope))

    def _represent(self, transactions: list[Transaction]) -> list[dict[str, Any]]:
        hidden = transfer_hidden_accounts(self.scope, transactions)
        return [
            redact_transfer_sides(TransactionSerializer(txn).data, hidden.get(txn.pk))
            for txn in transactions
        ]

    def list(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._represent(list(page)))

    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return Response(self._represent([self.get_object()])[0])

    @extend_schema(
        request=ReverseSerializer,
        responses={201: TransactionSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def reverse(self, request: Any, pk: Any = None) -> Response:
        """Undo a transaction with its mirror image; a transaction is reversed at most once
        (409 ``already_reversed``). A partner reverses only what its own keys posted."""
        serializer = ReverseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        original = self.get_object()
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.transaction_reverse(
                transaction_obj=original.pk,
                reason=serializer.validated_data["reason"],
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=serialize_transaction,
        )


class HoldViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    """Two-phase debits: reserve funds, then capture (fully or partly) or void."""

    queryset = Hold.objects.none()
    serializer_class = HoldSerializer
    filterset_class = HoldFilterSet
    ordering_fields = ["id", "created_at", "expires_at"]
    ordering = ["-id"]
    required = {
        **reads("ledger.view_hold"),
        "create": ("holds", "ledger.post_hold"),
        "capture": ("holds", "ledger.settle_hold"),
        "void": ("holds", "ledger.settle_hold"),
    }

    def get_queryset(self):
        if self.action in {"capture", "void"}:
            return holds_settleable_by(self.scope)  # a partner settles only its own holds
        return holds_in_scope(self.scope)

    @extend_schema(
        request=HoldCreateSerializer,
        responses={201: HoldSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Reserve funds, checked exactly like a debit."""
        serializer = HoldCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        account = _account(self.scope, data["account"])
        brand_id = _brand_id(self.scope, data["brand"])
        service = _service(self.scope, data.get("service"))
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.hold_create(
                account=account.pk,
                amount=data["amount"],
                brand=brand_id,
                service=service,
                subject_type=data["subject_type"],
                subject_id=data["subject_id"],
                metadata=data["metadata"],
                memo=data["memo"],
                expires_at=data.get("expires_at"),
                currency=account.currency,
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=serialize_hold,
        )

    @extend_schema(
        request=HoldCaptureSerializer,
        responses={201: TransactionSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def capture(self, request: Any, pk: Any = None) -> Response:
        """Charge the hold, fully or partly (``amount``); the rest is released.

        409 ``hold_not_active`` once it is captured, voided or expired.
        """
        serializer = HoldCaptureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hold = self.get_object()
        amount = serializer.validated_data.get("amount")
        if amount is not None:
            services.money(amount, hold.currency)  # the currency's minor unit
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.hold_capture(
                hold=hold.pk, amount=amount, caller=self.scope.caller, idempotency_key=key
            ),
            serialize=serialize_transaction,
        )

    @extend_schema(
        request=None,
        responses={200: HoldSerializer, **POST_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def void(self, request: Any, pk: Any = None) -> Response:
        """Release the hold without charging anything (409 ``hold_not_active`` if it is not)."""
        hold = self.get_object()
        return money_post(
            request,
            hands_over=True,
            post=lambda key: services.hold_void(
                hold=hold.pk, caller=self.scope.caller, idempotency_key=key
            ),
            serialize=serialize_hold,
            status=200,
        )


class NewestFirst(CursorPagination):
    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        return ("-id",)


class AccountLedgerViewSet(ScopedViewSet):
    """An account's balance and history: ``/accounts/{id}/balance/`` and ``/entries/``."""

    queryset = Account.objects.none()
    filterset_class = None
    filter_backends: list = []  # the history has its own date filter (EntryFilterSet)
    required = {
        "balance": ("read", "accounts.view_account"),
        "entries": ("read", "ledger.view_entry"),
    }

    def get_queryset(self):
        return accounts_in_scope(self.scope)

    @extend_schema(parameters=[BalanceQuerySerializer], responses={200: BalanceSerializer})
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def balance(self, request: Any, pk: Any = None) -> Response:
        """Balance, held and available funds now or at a past moment (``?at=``).

        For a sub-account, ``balance`` and ``available`` are its payer's and
        ``write_off_remaining`` is what the sub-account's own limits still allow.
        """
        at = None
        if "at" in request.query_params:  # the serializer ignores every other parameter
            query = BalanceQuerySerializer(data=request.query_params)
            query.is_valid(raise_exception=True)
            at = query.validated_data.get("at")
        ident = str(pk)
        # At most 19 digits: int() of thousands of digits is refused by Python itself.
        account = (
            account_funds_in_scope(self.scope, int(ident))
            if ident.isdigit() and len(ident) < 20
            else None
        )
        if account is None:
            raise NotFound()
        view = account_balance(account, at=at, refresh=False)
        return rendered_now(request, BalanceSerializer().to_representation(view))

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Entries at or after."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Entries at or before."),
        ],
        responses={200: EntrySerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def entries(self, request: Any, pk: Any = None) -> Response:
        """The account's history, newest first (``?from=&to=``, inclusive, ISO 8601).

        On an account shared with brands outside the caller's scope, only the
        entries of postings that carry one of its brands or that it posted.
        """
        account = self.get_object()
        filterset = EntryFilterSet(
            request.query_params, queryset=entries_in_scope(self.scope, account)
        )
        if not filterset.is_valid():
            raise serializers.ValidationError(filterset.errors)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(EntrySerializer(page, many=True).data)
