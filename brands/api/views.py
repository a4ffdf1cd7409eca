"""The brands and their service catalogue (``GET /brands/``, ``GET|POST /services/``,
``GET|PATCH /services/{id}/``). A partner works only with its own brands; anything
else is 404, like something that does not exist. Writes go through ``brands.services``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.response import Response

from brands import services
from brands.api.serializers import (
    BrandSerializer,
    ServiceSerializer,
    ServiceUpdateSerializer,
    ServiceWriteSerializer,
)
from brands.filtersets import BrandFilterSet, ServiceFilterSet
from brands.models import Brand, Service
from brands.selectors import brands_in_scope, services_in_scope
from core.api.permissions import reads
from core.api.views import ScopedViewSet, in_scope


class BrandViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """The operator's brands; a partner sees only the brands of its API key."""

    queryset = Brand.objects.none()  # for the schema; get_queryset() scopes
    serializer_class = BrandSerializer
    filterset_class = BrandFilterSet
    ordering_fields = ["id", "code", "name"]
    ordering = ["id"]
    required = reads("brands.view_brand")

    def get_queryset(self):
        return brands_in_scope(self.scope)


class ServiceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    ScopedViewSet,
):
    """The service catalogue of the caller's brands: list, read, add, change."""

    queryset = Service.objects.none()
    serializer_class = ServiceSerializer
    filterset_class = ServiceFilterSet
    ordering_fields = ["id", "code", "name"]
    ordering = ["id"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    required = {
        **reads("brands.view_service"),
        "create": ("billing", "brands.add_service"),
        "partial_update": ("billing", "brands.change_service"),
    }

    def get_queryset(self):
        return services_in_scope(self.scope)

    @extend_schema(request=ServiceWriteSerializer, responses={201: ServiceSerializer})
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        data = _valid(ServiceWriteSerializer, request.data)
        brand = in_scope(brands_in_scope(self.scope), data.pop("brand"), "brand")
        service = services.service_create(brand=brand, **data)
        return Response(ServiceSerializer(service).data, status=201)

    @extend_schema(request=ServiceUpdateSerializer, responses={200: ServiceSerializer})
    def partial_update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        service = self.get_object()
        data = _valid(ServiceUpdateSerializer, request.data, partial=True)
        service = services.service_update(service=service, **data)
        return Response(ServiceSerializer(service).data)

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return self.partial_update(request, *args, **kwargs)


def _valid(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
