from rest_framework import mixins

from brands.api.serializers import BrandSerializer, ServiceSerializer
from brands.filtersets import BrandFilterSet, ServiceFilterSet
from brands.models import Brand, Service
from brands.selectors import brands_in_scope, services_in_scope
from core.api.permissions import reads
from core.api.views import ScopedViewSet


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


class ServiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """The service catalogue of the caller's brands (filter with ``?brand=<id>``)."""

    queryset = Service.objects.none()
    serializer_class = ServiceSerializer
    filterset_class = ServiceFilterSet
    ordering_fields = ["id", "code", "name"]
    ordering = ["id"]
    required = reads("brands.view_service")

    def get_queryset(self):
        return services_in_scope(self.scope)
