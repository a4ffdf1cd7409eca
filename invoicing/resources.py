"""Tariffs, subscriptions and meter readings in and out of spreadsheets.

django-import-export resources whose rows go through the invoicing services
(``core.sheets.ServiceBackedResource``): ``tariff_create`` (prices as written, parsed by
the service; tiers as ``up_to:price`` bands separated by ``;``, the last one open,
``:price``), ``subscription_create`` (the account by number, the plan by brand, service
and plan name: the version in force on ``starts_on``, else the plan's first) and
``subscription_end`` (the only change a stored subscription takes), and the readings
ingest (``meter_readings_ingest_records``, one reading at a time: the same checks as
the API and the file upload, meters placed under their locks).

Tariff versions and readings never change once stored: a row naming a stored one by
``id`` is skipped when it says the same, refused (``immutable``) when it differs.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from import_export import fields as ie_fields
from import_export import widgets

from accounts.models import Account
from brands.resources import ServiceWidget
from core.sheets import LookupWidget, PerRow, ServiceBackedResource
from invoicing.ingest import meter_readings_ingest_records
from invoicing.models import MeterReading, Subscription, Tariff
from invoicing.services.subscriptions import (
    subscription_create,
    subscription_end,
    subscriptions_create_bulk,
)
from invoicing.services.tariffs import TariffDraft, tariff_check, tariff_create, tariffs_create_bulk


def _refusal(column: str, code: str, message: str) -> ValidationError:
    return ValidationError({column: ValidationError(message, code=code)})


class ImmutableRowsResource(ServiceBackedResource):
    """Stored rows are never changed by an import: the same row is skipped, another refused."""

    changeable: tuple[str, ...] = ()
    compared: tuple[str, ...] | None = None  # the columns compared (default: all imported)

    def skip_row(self, instance, original, row, import_validation_errors=None):
        if instance.pk is None or instance._state.adding:
            return False
        stored = self._meta.model.objects.get(pk=instance.pk)
        for resource_field in self.get_import_fields():
            name = resource_field.column_name
            if resource_field.readonly or name not in row or name in self.changeable:
                continue
            if self.compared is not None and name not in self.compared:
                continue
            if resource_field.export(stored) != resource_field.export(instance):
                raise _refusal(
                    resource_field.attribute or name,
                    "immutable",
                    f"A stored {self._meta.model._meta.verbose_name} never changes ({name}).",
                )
        return not any(
            self.fields[name].export(stored) != self.fields[name].export(instance)
            for name in self.changeable
        )


def _tiers_text(tariff: Tariff) -> str:
    return ";".join(
        f"{'' if tier.up_to is None else tier.up_to}:{tier.price}"
        for tier in tariff.tiers.order_by("position")
    )


def _tiers(text: str) -> list[dict[str, Any]] | None:
    if not text.strip():
        return None
    tiers = []
    for band in text.split(";"):
        up_to, separator, price = band.partition(":")
        if not separator:
            raise _refusal("tiers", "invalid", "Each band is up_to:price (the last :price).")
        tiers.append({"up_to": up_to.strip() or None, "price": price.strip()})
    return tiers


class TariffResource(ImmutableRowsResource):
    """Versions of a service's tariff plans."""

    brand = ie_fields.Field(attribute="service__brand__code", column_name="brand", readonly=True)
    service = ie_fields.Field(attribute="service", column_name="service", widget=ServiceWidget())
    price = ie_fields.Field(attribute="price", column_name="price", widget=widgets.Widget())
    minimum_charge = ie_fields.Field(
        attribute="minimum_charge", column_name="minimum_charge", widget=widgets.Widget()
    )
    tiers = ie_fields.Field(column_name="tiers", readonly=True)
    file_unique = (("brand", "service", "plan", "valid_from"),)
    required_columns = ("brand", "service", "kind", "valid_from")

    class Meta:
        model = Tariff
        fields = (
            "id", "brand", "service", "plan", "kind", "price", "tiers", "minimum_charge",
            "currency", "valid_from", "valid_to",
        )  # fmt: skip
        export_order = fields

    def get_queryset(self):
        return Tariff.objects.select_related("service__brand").prefetch_related("tiers")

    def dehydrate_tiers(self, tariff: Tariff) -> str:
        return _tiers_text(tariff) if tariff.pk else ""

    def _arguments(self, instance: Tariff, row: dict[str, Any]) -> dict[str, Any]:
        def text(value: Any) -> str | None:
            return None if value is None or str(value).strip() == "" else str(value).strip()

        return {
            "service": instance.service,
            "kind": instance.kind,
            "valid_from": instance.valid_from,
            "valid_to": instance.valid_to,
            "price": text(instance.price),
            "tiers": _tiers(str(row.get("tiers") or "")),
            "minimum_charge": text(instance.minimum_charge),
            "plan": instance.plan or "standard",
            "currency": instance.currency or None,
        }

    def service_save(self, instance: Tariff, is_create: bool, row: dict[str, Any]) -> None:
        instance.pk = tariff_create(**self._arguments(instance, row)).pk

    # The batched import (core.sheets.import_rows): a batch's services looked up in one
    # query, each new version checked as tariff_create checks it (tariff_check), then the
    # batch added by tariffs_create_bulk (the versions it ends updated in one statement).
    batch_size = 1000

    def batch_item(self, instance: Tariff, row: dict[str, Any]) -> TariffDraft:
        if instance.service_id is None:
            raise PerRow
        return tariff_check(**self._arguments(instance, row))

    def batch_create(self, items: list[TariffDraft]) -> None:
        tariffs_create_bulk(drafts=items)


class SubscriptionResource(ImmutableRowsResource):
    """Accounts' subscriptions to tariff plans; a stored one only takes a new end day."""

    account = ie_fields.Field(
        attribute="account", column_name="account", widget=LookupWidget(Account, field="number")
    )
    brand = ie_fields.Field(attribute="service__brand__code", column_name="brand", readonly=True)
    service = ie_fields.Field(attribute="service", column_name="service", widget=ServiceWidget())
    plan = ie_fields.Field(attribute="tariff__plan", column_name="plan", readonly=True)
    changeable = ("ends_on",)
    file_unique = (("account", "brand", "service", "starts_on"),)
    required_columns = ("account", "brand", "service", "plan", "starts_on")

    class Meta:
        model = Subscription
        fields = ("id", "account", "brand", "service", "plan", "starts_on", "ends_on")
        export_order = fields

    def get_queryset(self):
        return Subscription.objects.select_related("account", "service__brand", "tariff")

    def _tariff(self, instance: Subscription, row: dict[str, Any]) -> Tariff:
        plan = str(row.get("plan") or "").strip() or "standard"
        batch = self.__dict__.get("_batch_tariffs")
        if batch is not None:
            found = _version_on(batch.get((instance.service_id, plan), []), instance.starts_on)
        else:
            versions = Tariff.objects.filter(service=instance.service, plan=plan).select_related(
                "service"
            )
            found = (
                versions.filter(valid_from__lte=instance.starts_on).order_by("-valid_from").first()
                or versions.order_by("valid_from").first()
            )
        if found is None:
            raise _refusal("tariff__plan", "not_found", f"The service has no plan {plan!r}.")
        return found

    def service_save(self, instance: Subscription, is_create: bool, row: dict[str, Any]) -> None:
        if not is_create:
            subscription_end(subscription=instance, ends_on=instance.ends_on)
            return
        created = subscription_create(
            account=instance.account,
            tariff=self._tariff(instance, row),
            starts_on=instance.starts_on,
            ends_on=instance.ends_on,
        )
        instance.pk = created.pk

    # The batched import (core.sheets.import_rows): a batch's accounts, services and their
    # plans' versions looked up in one query each, the new subscriptions checked and
    # written by subscriptions_create_bulk (the accounts locked in id order).
    batch_size = 1000

    def batch_prefetch(self, rows: list[dict[str, Any]]) -> None:
        super().batch_prefetch(rows)
        keys = {
            (str(row.get("brand") or "").strip(), str(row.get("service") or "").strip(),
             str(row.get("plan") or "").strip() or "standard")
            for row in rows
        }  # fmt: skip
        versions: dict[tuple[int, str], list[Tariff]] = {}
        query = Tariff.objects.filter(
            service__brand__code__in={brand for brand, _service, _plan in keys},
            service__code__in={service for _brand, service, _plan in keys},
            plan__in={plan for _brand, _service, plan in keys},
        ).select_related("service")
        for tariff in query:
            versions.setdefault((tariff.service_id, tariff.plan), []).append(tariff)
        self.__dict__["_batch_tariffs"] = versions

    def batch_release(self) -> None:
        super().batch_release()
        self.__dict__.pop("_batch_tariffs", None)

    def batch_item(self, instance: Subscription, row: dict[str, Any]) -> tuple[Any, ...]:
        if instance.account_id is None or instance.service_id is None:
            raise PerRow
        tariff = self._tariff(instance, row)
        return (instance.account_id, tariff, instance.starts_on, instance.ends_on)

    def batch_create(self, items: list[tuple[Any, ...]]) -> None:
        subscriptions_create_bulk(subscriptions=items)

    def skip_row(self, instance, original, row, import_validation_errors=None):
        skip = super().skip_row(instance, original, row, import_validation_errors)
        if not skip and not instance._state.adding and instance.ends_on is None:
            raise _refusal("ends_on", "immutable", "A subscription's end cannot be taken away.")
        return skip


class MeterReadingResource(ImmutableRowsResource):
    """Cumulative meter readings, through the readings ingest."""

    account = ie_fields.Field(
        attribute="account", column_name="account", widget=LookupWidget(Account, field="number")
    )
    brand = ie_fields.Field(attribute="service__brand__code", column_name="brand", readonly=True)
    service = ie_fields.Field(attribute="service", column_name="service", widget=ServiceWidget())
    meter = ie_fields.Field(attribute="meter__serial", column_name="meter", readonly=True)
    reading = ie_fields.Field(attribute="reading", column_name="reading", widget=widgets.Widget())
    taken_at = ie_fields.Field(
        attribute="taken_at", column_name="taken_at", widget=widgets.Widget()
    )
    consumption = ie_fields.Field(attribute="consumption", column_name="consumption", readonly=True)
    compared = ("account", "service", "external_id")
    file_unique = (("brand", "service", "external_id"),)
    required_columns = ("account", "brand", "service", "reading", "taken_at", "external_id")

    class Meta:
        model = MeterReading
        fields = (
            "id", "account", "brand", "service", "meter", "reading", "taken_at", "external_id",
            "source", "consumption",
        )  # fmt: skip
        export_order = fields

    def get_queryset(self):
        return MeterReading.objects.select_related("account", "service__brand", "meter")

    def dehydrate_taken_at(self, reading: MeterReading) -> str:
        value = reading.taken_at
        return value.isoformat() if hasattr(value, "isoformat") else str(value or "")

    def _record(self, instance: MeterReading, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "account": instance.account.pk,
            "service": instance.service.pk,
            "reading": str(instance.reading or "").strip(),
            "taken_at": str(instance.taken_at or "").strip(),
            "external_id": instance.external_id,
            "meter": str(row.get("meter") or "").strip() or None,
        }

    def service_save(self, instance: MeterReading, is_create: bool, row: dict[str, Any]) -> None:
        result = meter_readings_ingest_records(
            records=[self._record(instance, row)],
            source=str(row.get("source") or "").strip() or SOURCE,
            max_records=None,
        )
        if result.errors:
            error = result.errors[0]
            raise _refusal(_READING_COLUMNS.get(error.code, ""), error.code, error.message)
        if result.duplicates:
            raise _refusal("external_id", "duplicate", "This reading was already received.")

    # The batched import (core.sheets.import_rows): a batch's accounts and services looked
    # up in one query each, then the whole batch handed to the readings ingest at once
    # (the API's and the file upload's path: meters locked and readings placed per series
    # in time order, a few statements per batch). When the ingest refuses readings of a
    # batch (or finds some already received), the batch is rolled back, the series holding
    # them go row by row (which names each refused row as before) and the others are
    # placed again in one call.
    batch_size = 1000

    def batch_item(self, instance: MeterReading, row: dict[str, Any]) -> dict[str, Any]:
        if instance.account_id is None or instance.service_id is None:
            raise PerRow
        record = self._record(instance, row)
        record["source"] = str(row.get("source") or "").strip() or None
        return record

    def batch_create(self, items: list[dict[str, Any]]) -> list[int] | None:
        """The batch through the ingest; when it refuses readings, the series (account and
        service) holding them are left to the per-row path and the other series, which do
        not bear on them (a meter is one account's and service's), are placed again."""
        try:
            with transaction.atomic():
                result = _ingest(items)
            return None
        except _Refused as refused:
            result = refused.result
        bad = {_series(items[error.index]) for error in result.errors}
        if result.duplicates:  # readings received before: the ingest counts them only
            stored = set(
                MeterReading.objects.filter(
                    service_id__in={item["service"] for item in items},
                    external_id__in={item["external_id"] for item in items},
                ).values_list("service_id", "external_id")
            )
            bad |= {_series(i) for i in items if (i["service"], i["external_id"]) in stored}
        if not bad:
            raise PerRow
        kept = [n for n, item in enumerate(items) if _series(item) not in bad]
        if kept:
            _ingest([items[n] for n in kept])
        kept_set = set(kept)
        return [n for n in range(len(items)) if n not in kept_set]


class _Refused(PerRow):
    def __init__(self, result: Any) -> None:
        self.result = result


def _series(record: dict[str, Any]) -> tuple[Any, Any]:
    return record["account"], record["service"]


def _ingest(records: list[dict[str, Any]]) -> Any:
    """The readings ingest of a batch; ``_Refused`` (rolled back by the caller's savepoint)
    when it refused or skipped any reading."""
    result = meter_readings_ingest_records(records=records, source=SOURCE, max_records=None)
    if result.errors or result.duplicates or result.accepted != len(records):
        raise _Refused(result)
    return result


SOURCE = "spreadsheet"


def _version_on(versions: list[Tariff], day: Any) -> Tariff | None:
    """The version in force on ``day``, else the plan's first (as ``_tariff`` asks the
    database)."""
    before = [v for v in versions if day is not None and v.valid_from <= day]
    if before:
        return max(before, key=lambda v: v.valid_from)
    return min(versions, key=lambda v: v.valid_from, default=None)


_READING_COLUMNS = {
    "invalid_reading": "reading",
    "negative_reading": "reading",
    "reading_backwards": "reading",
    "reading_backwards_next": "reading",
    "invalid_timestamp": "taken_at",
    "future_timestamp": "taken_at",
    "invalid_external_id": "external_id",
    "no_meter": "meter__serial",
    "invalid_meter": "meter__serial",
    "brand_not_linked": "account",
    "account_closed": "account",
    "invalid_source": "source",
}
