"""The service catalogue in and out of spreadsheets (a django-import-export resource).

Rows go through ``brands.services``: ``service_create`` for a row without an ``id``
(the brand named by its code, the VAT rate as written, the brand's rate when empty),
``service_update`` for a row with one (a new VAT rate is announced and may be refused
when it would reach billed days). A service never moves to another brand. New rows are
imported in batches (``service_check``, ``services_create_bulk``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from import_export import fields as ie_fields
from import_export import widgets

from brands.models import Brand, Service
from brands.services import (
    service_check,
    service_create,
    service_update,
    services_create_bulk,
)
from core.sheets import LookupWidget, ServiceBackedResource


class ServiceWidget(LookupWidget):
    """A service by its code within the brand named in the row's ``brand`` column."""

    def __init__(self, brand_column: str = "brand") -> None:
        super().__init__(Service, field="code")
        self.brand_column = brand_column

    def get_queryset(self, value: Any, row: Any, *args: Any, **kwargs: Any):
        brand = str((row or {}).get(self.brand_column) or "").strip()
        return Service.objects.filter(brand__code=brand).select_related("brand")

    def batch_key(self, value: Any, row: Any) -> Any:
        return (str((row or {}).get(self.brand_column) or "").strip(), str(value))

    def batch_objects(self, keys: set[Any]) -> Iterable[tuple[Any, Any]]:
        """The batch's services by (brand code, service code), in one query."""
        query = Service.objects.filter(
            brand__code__in={brand for brand, _code in keys},
            code__in={code for _brand, code in keys},
        ).select_related("brand")
        for service in query:
            key = (service.brand.code, service.code)
            if key in keys:
                yield key, service


class ServiceResource(ServiceBackedResource):
    """A brand's catalogue: brand code, service code, name, unit, VAT rate, active."""

    brand = ie_fields.Field(
        attribute="brand", column_name="brand", widget=LookupWidget(Brand, field="code")
    )
    vat_rate = ie_fields.Field(
        attribute="vat_rate", column_name="vat_rate", widget=widgets.Widget()
    )
    file_unique = (("brand", "code"),)
    required_columns = ("brand", "code", "name")

    class Meta:
        model = Service
        fields = ("id", "brand", "code", "name", "unit", "vat_rate", "is_active")
        export_order = fields

    def get_queryset(self):
        return Service.objects.select_related("brand")

    def service_save(self, instance: Service, is_create: bool, row: dict[str, Any]) -> None:
        vat_rate = str(instance.vat_rate or "").strip() or None
        if is_create:
            created = service_create(
                brand=instance.brand,
                code=instance.code,
                name=instance.name,
                unit=instance.unit or "pcs",
                vat_rate=vat_rate,
            )
            if not instance.is_active:
                service_update(service=created, is_active=False)
            instance.pk = created.pk
            return
        stored = Service.objects.get(pk=instance.pk)
        if instance.brand_id != stored.brand_id:
            raise ValidationError(
                {"brand": ValidationError("A service stays with its brand.", code="immutable")}
            )
        changes = {"code": instance.code, "name": instance.name, "unit": instance.unit or "pcs"}
        changes["is_active"] = bool(instance.is_active)
        if vat_rate is not None:
            changes["vat_rate"] = vat_rate
        service_update(service=stored, **changes)

    # The batched import (core.sheets.import_rows): a batch's brands looked up in one
    # query, new services checked as service_create checks them (service_check), their
    # codes against the catalogue and added in one statement (services_create_bulk).
    batch_size = 1000

    def batch_item(self, instance: Service, row: dict[str, Any]) -> Service:
        return service_check(
            brand=instance.brand,
            code=instance.code,
            name=instance.name,
            unit=instance.unit or "pcs",
            vat_rate=str(instance.vat_rate or "").strip() or None,
            is_active=bool(instance.is_active),
        )

    def batch_create(self, items: list[Service]) -> None:
        services_create_bulk(services=items)
