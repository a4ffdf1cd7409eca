"""Online payments over the API: payment intents and their refunds.

A partner with the ``payments`` capability (staff: ``payments.add_paymentintent``)
creates an intent for an account of its brands; the payer is sent to its
``redirect_url`` once the gateway has answered (``status`` ``pending``). The
gateway's signed callback (``/payments/gateway/callback/``, not part of this
API) or the status poll settles it. ``POST /payment-intents/{id}/refund/``
starts a refund saga (capability ``refunds``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.selectors import accounts_in_scope
from core.api.fields import IdField, MoneyField, StrictCharField
from core.api.permissions import reads
from core.api.schema import error
from core.api.views import NotFoundInScope, ScopedViewSet
from payments.filtersets import PaymentIntentFilterSet
from payments.models import PaymentIntent, RefundSaga
from payments.selectors import payment_intents_in_scope
from payments.services.gateway import payment_intent_create
from payments.services.refunds import refund_saga_start


class RefundSagaSerializer(serializers.ModelSerializer):
    class Meta:
        model = RefundSaga
        fields = [
            "id",
            "amount",
            "currency",
            "kind",
            "reason",
            "status",
            "gateway_status",
            "refund_transaction",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class PaymentIntentSerializer(serializers.ModelSerializer):
    refunds = RefundSagaSerializer(many=True, read_only=True)

    class Meta:
        model = PaymentIntent
        fields = [
            "id",
            "account",
            "amount",
            "currency",
            "status",
            "redirect_url",
            "return_url",
            "transaction",
            "failure",
            "created_at",
            "settled_at",
            "refunds",
        ]
        read_only_fields = fields


class PaymentIntentCreateSerializer(serializers.Serializer):
    account = IdField()
    amount = MoneyField()
    return_url = serializers.URLField(max_length=1000, help_text="Where the payer comes back to.")


class IntentRefundSerializer(serializers.Serializer):
    amount = MoneyField()
    reason = StrictCharField(max_length=500)


INTENT_ERRORS = {
    404: error("`not_found`: no such account (or intent) within your brands."),
    409: error("`refund_not_possible`: the payment did not succeed (or went to suspense)."),
    422: error(
        "`account_closed`; a payment rule: `amount_below_minimum`, `amount_above_maximum`, "
        "`channel_not_allowed`, `account_status_not_allowed`; `refund_exceeds_payment`."
    ),
}


class PaymentIntentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    """Online payments through the gateway: create, follow, refund."""

    queryset = PaymentIntent.objects.none()
    serializer_class = PaymentIntentSerializer
    filterset_class = PaymentIntentFilterSet
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    required = {
        **reads("payments.view_paymentintent"),
        "create": ("payments", "payments.add_paymentintent"),
        "refund": ("refunds", "payments.add_refundsaga"),
    }

    def get_queryset(self):
        return payment_intents_in_scope(self.scope)

    def _out(self, intent: PaymentIntent, code: int = 200) -> Response:
        fresh = payment_intents_in_scope(self.scope).get(pk=intent.pk)
        return Response(PaymentIntentSerializer(fresh).data, status=code)

    @extend_schema(
        request=PaymentIntentCreateSerializer,
        responses={201: PaymentIntentSerializer, **INTENT_ERRORS},
    )
    def create(self, request: Any) -> Response:
        """Create an online payment of `amount` to `account`. Answers `201` with status
        `created`; the gateway is called in the background and `redirect_url` (where the
        payer pays) appears with status `pending`. The payment is posted once, when the
        gateway confirms it (`succeeded`), with channel `gateway`."""
        body = PaymentIntentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        account = accounts_in_scope(self.scope).filter(pk=data["account"]).first()
        if account is None:
            raise NotFoundInScope("account: not found.", account=["Not found."])
        brand_id = None
        if self.scope.is_partner:
            brand_id = (
                account.brands.filter(pk__in=self.scope.brand_ids)
                .order_by("pk")
                .values_list("pk", flat=True)
                .first()
            )
        intent = payment_intent_create(
            account=account,
            amount=data["amount"],
            return_url=data["return_url"],
            caller=self.scope.caller,
            brand_id=brand_id,
        )
        return self._out(intent, status.HTTP_201_CREATED)

    @extend_schema(
        request=IntentRefundSerializer,
        responses={202: PaymentIntentSerializer, **INTENT_ERRORS},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def refund(self, request: Any, pk: Any = None) -> Response:
        """Refund (part of) a succeeded online payment to the card: a refund saga holds the
        funds, asks the gateway, then posts the refund (or releases the funds when the
        gateway declines). Answers `202`; follow it in `refunds`."""
        body = IntentRefundSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        intent = self.get_object()
        refund_saga_start(
            intent=intent.pk,
            amount=body.validated_data["amount"],
            reason=body.validated_data["reason"],
            caller=self.scope.caller,
        )
        return self._out(intent, status.HTTP_202_ACCEPTED)
