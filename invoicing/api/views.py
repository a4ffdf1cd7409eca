"""The billing API (see ``../shared/API.md``, "Billing"): reads through scoped querysets,
writes through ``invoicing.services`` and ``invoicing.ingest``.

A partner works only with its brands: tariffs of its brands' services,
subscriptions and invoices of accounts linked to them, runs of its brands.
Anything else is 404, like something that does not exist.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import accounts_in_scope
from brands.selectors import brands_in_scope, services_in_scope
from core.api.parsers import is_json_float
from core.api.permissions import reads
from core.api.schema import ERRORS
from core.api.views import ScopedViewMixin, ScopedViewSet, in_scope
from invoicing import ingest, services
from invoicing.api.serializers import (
    IngestResultSerializer,
    InvoiceRunSerializer,
    InvoiceRunStartSerializer,
    InvoiceSerializer,
    MeterReadingBatchSerializer,
    RecalculateResultSerializer,
    RecalculateSerializer,
    SubscriptionEndSerializer,
    SubscriptionSerializer,
    TariffCreateSerializer,
    TariffSerializer,
    UsageBatchSerializer,
)
from invoicing.filtersets import (
    InvoiceFilterSet,
    InvoiceRunFilterSet,
    SubscriptionFilterSet,
    TariffFilterSet,
)
from invoicing.models import Invoice, InvoiceRun, Subscription, Tariff
from invoicing.selectors import invoices_in_scope

STATE_ERRORS = {409: ERRORS[409], 422: ERRORS[422]}


def _valid(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class TariffViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    """Tariff versions of the caller's services (``?service=``). A new version of a plan
    ends the open-ended one before it; prices of closed periods cannot change."""

    queryset = Tariff.objects.none()
    serializer_class = TariffSerializer
    filterset_class = TariffFilterSet
    ordering_fields = ["id", "valid_from"]
    ordering = ["id"]
    required = {**reads("invoicing.view_tariff"), "create": ("billing", "invoicing.add_tariff")}

    def get_queryset(self):
        return Tariff.objects.filter(service__in=services_in_scope(self.scope)).prefetch_related(
            "tiers"
        )

    @extend_schema(
        request=TariffCreateSerializer, responses={201: TariffSerializer, **STATE_ERRORS}
    )
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        data = _valid(TariffCreateSerializer, request.data)
        service = in_scope(services_in_scope(self.scope), data.pop("service_id"), "service")
        tariff = services.tariff_create(
            service=service,
            kind=data["kind"],
            valid_from=data["valid_from"],
            valid_to=data.get("valid_to"),
            price=data.get("price"),
            tiers=[dict(t) for t in data.get("tiers") or []] or None,
            minimum_charge=data.get("minimum_charge"),
            plan=data.get("plan") or "standard",
            currency=data.get("currency"),
        )
        return Response(TariffSerializer(self.get_queryset().get(pk=tariff.pk)).data, status=201)


class SubscriptionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ScopedViewSet,
):
    """Subscriptions of the caller's accounts to its services (``?account=``). PATCH with
    ``ends_on`` ends one."""

    queryset = Subscription.objects.none()
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilterSet
    ordering_fields = ["id", "starts_on"]
    ordering = ["id"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    required = {
        **reads("invoicing.view_subscription"),
        "create": ("billing", "invoicing.add_subscription"),
        "partial_update": ("billing", "invoicing.change_subscription"),
    }

    def get_queryset(self):
        return Subscription.objects.filter(
            account__in=accounts_in_scope(self.scope), service__in=services_in_scope(self.scope)
        )

    @extend_schema(
        request=SubscriptionSerializer, responses={201: SubscriptionSerializer, **STATE_ERRORS}
    )
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        data = _valid(SubscriptionSerializer, request.data)
        account = in_scope(accounts_in_scope(self.scope), data["account"], "account")
        tariff = in_scope(
            Tariff.objects.filter(service__in=services_in_scope(self.scope)).select_related(
                "service"
            ),
            data["tariff"],
            "tariff",
        )
        subscription = services.subscription_create(
            account=account,
            tariff=tariff,
            service=data.get("service"),
            starts_on=data["starts_on"],
            ends_on=data.get("ends_on"),
        )
        return Response(SubscriptionSerializer(subscription).data, status=201)

    @extend_schema(
        request=SubscriptionEndSerializer, responses={200: SubscriptionSerializer, **STATE_ERRORS}
    )
    def partial_update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        subscription = self.get_object()
        data = _valid(SubscriptionEndSerializer, request.data)
        subscription = services.subscription_end(subscription=subscription, ends_on=data["ends_on"])
        return Response(SubscriptionSerializer(subscription).data)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return self.partial_update(request, *args, **kwargs)


def _no_json_floats(records: list[Any], field: str) -> list[Any]:
    """A JSON number with a fraction is refused like money (the service sees a float)."""
    cleaned = []
    for record in records:
        if isinstance(record, dict) and is_json_float(record.get(field)):
            record = {**record, field: float(record[field])}
        cleaned.append(record)
    return cleaned


class UsageView(ScopedViewMixin, APIView):
    required = {"post": ("usage", "invoicing.add_usagerecord")}

    @extend_schema(
        request=UsageBatchSerializer,
        responses={200: IngestResultSerializer},
        summary="Usage records: valid ones kept, invalid ones reported, duplicates counted",
    )
    def post(self, request: Any) -> Response:
        data = _valid(UsageBatchSerializer, request.data)
        result = ingest.usage_ingest_records(
            records=_no_json_floats(data["records"], "quantity"),
            source=self.scope.caller.ref,
            brand_ids=self.scope.brand_ids,
        )
        return Response(result.as_dict())


class MeterReadingsView(ScopedViewMixin, APIView):
    required = {"post": ("usage", "invoicing.add_meterreading")}

    @extend_schema(
        request=MeterReadingBatchSerializer,
        responses={200: IngestResultSerializer},
        summary="Cumulative meter readings: valid ones kept, invalid ones reported",
    )
    def post(self, request: Any) -> Response:
        data = _valid(MeterReadingBatchSerializer, request.data)
        result = ingest.meter_readings_ingest_records(
            records=_no_json_floats(data["readings"], "reading"),
            source=self.scope.caller.ref,
            brand_ids=self.scope.brand_ids,
        )
        return Response(result.as_dict())


class InvoiceRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Invoice runs: start one in the background (202), follow its progress, approve drafts."""

    queryset = InvoiceRun.objects.none()
    serializer_class = InvoiceRunSerializer
    filterset_class = InvoiceRunFilterSet
    ordering_fields = ["id", "created_at"]
    ordering = ["id"]
    required = {
        **reads("invoicing.view_invoicerun"),
        "create": ("billing", "invoicing.add_invoicerun"),
        "approve": ("billing", "invoicing.approve_invoicerun"),
    }

    def get_queryset(self):
        runs = InvoiceRun.objects.select_related("period")
        if self.scope.is_partner:
            runs = runs.filter(brand_id__in=self.scope.brand_ids)
        return runs

    @extend_schema(request=InvoiceRunStartSerializer, responses={202: InvoiceRunSerializer})
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        data = _valid(InvoiceRunStartSerializer, request.data)
        brand_id = data.get("brand")
        if brand_id is not None:
            brand_id = in_scope(brands_in_scope(self.scope), brand_id, "brand").pk
        elif self.scope.is_partner:
            if len(self.scope.brand_ids) != 1:
                raise serializers.ValidationError({"brand": ["Name one of your brands."]})
            (brand_id,) = self.scope.brand_ids
        run = services.invoice_run_start(
            period=data["period"],
            brand=brand_id,
            mode=data["mode"],
            created_by=None if self.scope.is_partner else request.user,
        )
        run = self.get_queryset().get(pk=run.pk)
        return Response(InvoiceRunSerializer(run).data, status=202)

    @extend_schema(request=None, responses={202: InvoiceRunSerializer, 409: ERRORS[409]})
    @action(detail=True, methods=["post"])
    def approve(self, request: Any, pk: Any = None) -> Response:
        run = self.get_object()
        services.invoice_run_approve(
            run=run, approved_by=None if self.scope.is_partner else request.user
        )
        return Response(InvoiceRunSerializer(self.get_queryset().get(pk=run.pk)).data, status=202)


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Invoices and adjustments (debit / credit notes) of the caller's accounts and brands,
    with lines; ``paid_amount`` and ``status`` show payment allocation."""

    queryset = Invoice.objects.none()
    serializer_class = InvoiceSerializer
    filterset_class = InvoiceFilterSet
    ordering_fields = ["id", "issued_at", "due_date"]
    ordering = ["id"]
    required = {
        **reads("invoicing.view_invoice"),
        "recalculate": ("billing", "invoicing.recalculate_invoice"),
    }

    def get_queryset(self):
        return invoices_in_scope(self.scope).select_related("period").prefetch_related("lines")

    @extend_schema(
        request=RecalculateSerializer,
        responses={200: RecalculateResultSerializer, 409: ERRORS[409], 422: ERRORS[422]},
        summary="Re-rate a billed period; the difference as an adjustment (null if none)",
    )
    @action(detail=False, methods=["post"])
    def recalculate(self, request: Any) -> Response:
        data = _valid(RecalculateSerializer, request.data)
        account = in_scope(accounts_in_scope(self.scope), data["account"], "account")
        adjustments = services.invoice_recalculate(
            account=account, period=data["period"], brand_ids=self.scope.brand_ids
        )
        rows = list(self.get_queryset().filter(pk__in=[a.pk for a in adjustments]).order_by("pk"))
        payload = InvoiceSerializer(rows, many=True).data
        return Response({"adjustment": payload[0] if payload else None, "adjustments": payload})
