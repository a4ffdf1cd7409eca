"""Settlements with brands over the API: staff prepare and pay them out; a partner reads
its brands' settlements and their statements (PDF, XLSX)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from brands.selectors import brands_in_scope
from core.api.fields import IdField, StrictCharField
from core.api.permissions import STAFF_ONLY, reads
from core.api.schema import error
from core.api.views import NotFoundInScope, ScopedViewSet
from payments.documents import settlement_pdf, settlement_xlsx
from payments.filtersets import SettlementFilterSet
from payments.models import Settlement
from payments.services.settlements import settlement_pay, settlement_prepare

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class SettlementSerializer(serializers.ModelSerializer):
    brand = serializers.CharField(source="brand.code")

    class Meta:
        model = Settlement
        fields = [
            "id",
            "brand",
            "period",
            "currency",
            "status",
            "invoice_payments",
            "debits",
            "collected",
            "agent_commission",
            "operator_commission_rate",
            "operator_commission",
            "payable",
            "prepared_at",
            "paid_at",
            "payout_reference",
        ]
        read_only_fields = fields


class SettlementPrepareSerializer(serializers.Serializer):
    brand = IdField()
    period = serializers.RegexField(r"^\d{4}-\d{2}$", help_text="YYYY-MM, a month that ended.")
    currency = serializers.RegexField(r"^[A-Z]{3}$", default="RUB")


class SettlementPaySerializer(serializers.Serializer):
    reference = StrictCharField(max_length=100, help_text="The payout's bank reference.")


class SettlementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """What was collected for a brand in a month, the commissions, what is payable."""

    queryset = Settlement.objects.none()
    serializer_class = SettlementSerializer
    filterset_class = SettlementFilterSet
    ordering_fields = ["id", "period"]
    ordering = ["-id"]
    required = {
        **reads("payments.view_settlement", "list", "retrieve", "pdf", "xlsx"),
        "create": (STAFF_ONLY, "payments.add_settlement"),
        "pay": (STAFF_ONLY, "payments.pay_settlement"),
    }

    def get_queryset(self):
        qs = Settlement.objects.select_related("brand")
        if self.scope.is_partner:
            qs = qs.filter(brand_id__in=self.scope.brand_ids)
        return qs

    @extend_schema(
        request=SettlementPrepareSerializer,
        responses={201: SettlementSerializer, 409: error("`settlement_already_paid`.")},
    )
    def create(self, request: Any) -> Response:
        """Prepare (or prepare again) a brand's settlement for a month that ended."""
        body = SettlementPrepareSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        brand = brands_in_scope(self.scope).filter(pk=body.validated_data["brand"]).first()
        if brand is None:
            raise NotFoundInScope("brand: not found.", brand=["Not found."])
        settlement = settlement_prepare(
            brand=brand,
            period=body.validated_data["period"],
            currency=body.validated_data["currency"],
            caller=self.scope.caller,
        )
        return Response(SettlementSerializer(settlement).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=SettlementPaySerializer,
        responses={200: SettlementSerializer, 409: error("`settlement_already_paid`.")},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def pay(self, request: Any, pk: Any = None) -> Response:
        """Mark the settlement paid out (once), with the payout's reference."""
        body = SettlementPaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        settlement = self.get_object()
        done = settlement_pay(
            settlement=settlement.pk,
            reference=body.validated_data["reference"],
            caller=self.scope.caller,
        )
        return Response(SettlementSerializer(done).data)

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"], filterset_class=None)
    def pdf(self, request: Any, pk: Any = None) -> HttpResponse:
        """The statement as a PDF."""
        settlement = self.get_object()
        response = HttpResponse(settlement_pdf(settlement), content_type="application/pdf")
        response["Content-Disposition"] = (
            f'attachment; filename="settlement-{settlement.brand.code}-{settlement.period}.pdf"'
        )
        return response

    @extend_schema(responses={(200, XLSX): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"], filterset_class=None)
    def xlsx(self, request: Any, pk: Any = None) -> HttpResponse:
        """The statement and its items as an XLSX workbook."""
        settlement = self.get_object()
        response = HttpResponse(settlement_xlsx(settlement), content_type=XLSX)
        response["Content-Disposition"] = (
            f'attachment; filename="settlement-{settlement.brand.code}-{settlement.period}.xlsx"'
        )
        return response
