"""Rating inputs: billing periods, tariffs and tiers, subscriptions, usage, meters and readings."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.functions import Now

from accounts.models import Account, currency_validator
from brands.models import Service
from core.audit.models import audit_event_model
from core.dbfields import TransactionIdField, current_transaction_id

QUANTITY = {"max_digits": 20, "decimal_places": 6}
ZERO = Decimal("0")


class DateRange(Func):
    """``daterange(start, end, '[]')``: an inclusive range of days, open-ended when end is NULL."""

    function = "DATERANGE"
    output_field = DateRangeField()


class BillingPeriod(models.Model):
    """A calendar month of business days ("YYYY-MM"); closed once it has been billed."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    code = models.CharField(max_length=7, unique=True, help_text="YYYY-MM")
    starts_on = models.DateField()
    ends_on = models.DateField(help_text="Last day of the period (inclusive).")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_on"]
        permissions = [("close_billingperiod", "Can close billing periods")]
        constraints = [
            models.CheckConstraint(
                condition=Q(code__regex=r"^\d{4}-(0[1-9]|1[0-2])$"),
                name="%(app_label)s_%(class)s_code_format",
                violation_error_message="A billing period is written YYYY-MM.",
            ),
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")),
                name="%(app_label)s_%(class)s_ends_after_start",
                violation_error_message="A period ends on or after its first day.",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def days(self) -> int:
        return (self.ends_on - self.starts_on).days + 1


class Tariff(models.Model):
    """How a service is priced over a range of days: one version of a tariff plan.

    Versions of the same ``(service, plan)`` never overlap (an exclusion
    constraint); a price change is a new version starting the next day, and a
    period crossing the change is prorated by days.
    """

    class Kind(models.TextChoices):
        FLAT = "flat", "Flat fee per period"
        PER_UNIT = "per_unit", "Per unit"
        TIERED = "tiered", "Tiered (progressive bands)"

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="tariffs")
    plan = models.CharField(
        max_length=64,
        default="standard",
        help_text="Versions with the same plan form one effective-dated timeline.",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    price = models.DecimalField(
        **QUANTITY, null=True, blank=True, help_text="Per period (flat) or per unit (per_unit)."
    )
    minimum_charge = models.DecimalField(
        **QUANTITY,
        null=True,
        blank=True,
        help_text="The least a full period costs (prorated by days like the flat fee).",
    )
    currency = models.CharField(
        max_length=3, default=settings.BILLING_DEFAULT_CURRENCY, validators=[currency_validator]
    )
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Last day (inclusive).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["service", "plan", "valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")),
                name="%(app_label)s_%(class)s_valid_range",
                violation_error_message="A tariff is valid to a day on or after its first day.",
            ),
            models.CheckConstraint(
                condition=(Q(kind__in=["flat", "per_unit"]) & Q(price__isnull=False, price__gte=0))
                | Q(kind="tiered", price__isnull=True),
                name="%(app_label)s_%(class)s_price_matches_kind",
                violation_error_message=(
                    "Flat and per-unit tariffs have a price; tiered ones tiers."
                ),
            ),
            models.CheckConstraint(
                condition=Q(minimum_charge__isnull=True) | Q(minimum_charge__gte=0),
                name="%(app_label)s_%(class)s_minimum_not_negative",
                violation_error_message="A minimum charge cannot be negative.",
            ),
            ExclusionConstraint(
                name="%(app_label)s_%(class)s_no_overlapping_versions",
                expressions=[
                    ("service", RangeOperators.EQUAL),
                    ("plan", RangeOperators.EQUAL),
                    (
                        DateRange("valid_from", "valid_to", models.Value("[]")),
                        RangeOperators.OVERLAPS,
                    ),
                ],
                violation_error_message="Another version of this tariff plan covers these days.",
            ),
        ]

    def __str__(self) -> str:
        end = self.valid_to.isoformat() if self.valid_to else "…"
        return f"{self.service.code}/{self.plan} {self.kind} {self.valid_from}..{end}"


class TariffTier(models.Model):
    """One band of a tiered tariff: quantity above ``from_quantity`` to ``up_to`` costs ``price``.

    Bands are contiguous and ascending; the last one is open-ended (``up_to`` NULL).
    """

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="tiers")
    position = models.PositiveSmallIntegerField()
    from_quantity = models.DecimalField(**QUANTITY)
    up_to = models.DecimalField(**QUANTITY, null=True, blank=True)
    price = models.DecimalField(**QUANTITY)

    class Meta:
        ordering = ["tariff", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["tariff", "position"],
                name="%(app_label)s_%(class)s_unique_position",
                violation_error_message="Two bands share a position.",
            ),
            models.CheckConstraint(
                condition=Q(up_to__isnull=True) | Q(up_to__gt=F("from_quantity")),
                name="%(app_label)s_%(class)s_band_ascending",
                violation_error_message="A band ends above where it starts.",
            ),
            models.CheckConstraint(
                condition=Q(price__gte=0, from_quantity__gte=0),
                name="%(app_label)s_%(class)s_not_negative",
                violation_error_message="Band bounds and prices are not negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_quantity}..{self.up_to or '∞'} @ {self.price}"


# Prices: every tariff version and band created, changed or removed is recorded by a
# database trigger with old and new values and the actor (core.audit).
TARIFF_AUDITED_FIELDS = [
    "service",
    "plan",
    "kind",
    "price",
    "minimum_charge",
    "currency",
    "valid_from",
    "valid_to",
]
TARIFF_TIER_AUDITED_FIELDS = ["tariff", "position", "from_quantity", "up_to", "price"]


class TariffEvent(
    audit_event_model(
        Tariff, fields=TARIFF_AUDITED_FIELDS, delete=True, verbose_name="tariff audit event"
    )
):
    """A tariff version was added, changed (ended by a newer one) or removed."""


class TariffTierEvent(
    audit_event_model(
        TariffTier,
        fields=TARIFF_TIER_AUDITED_FIELDS,
        delete=True,
        verbose_name="tariff tier audit event",
    )
):
    """A band of a tiered tariff was added, changed or removed (shown on its tariff's page)."""


class Subscription(models.Model):
    """An account takes a service on a tariff plan over a range of days."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="subscriptions")
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="subscriptions")
    tariff = models.ForeignKey(
        Tariff,
        on_delete=models.PROTECT,
        related_name="subscriptions",
        help_text="The plan subscribed to; every version of that plan applies on its own days.",
    )
    starts_on = models.DateField()
    ends_on = models.DateField(null=True, blank=True, help_text="Last day (inclusive).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "service", "starts_on"]
        indexes = [models.Index(fields=["account", "starts_on"], name="invoicing_sub_account_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__isnull=True) | Q(ends_on__gte=F("starts_on")),
                name="%(app_label)s_%(class)s_valid_range",
                violation_error_message="A subscription ends on or after its first day.",
            ),
            ExclusionConstraint(
                name="%(app_label)s_%(class)s_no_overlap",
                expressions=[
                    ("account", RangeOperators.EQUAL),
                    ("service", RangeOperators.EQUAL),
                    (
                        DateRange("starts_on", "ends_on", models.Value("[]")),
                        RangeOperators.OVERLAPS,
                    ),
                ],
                violation_error_message="The account already takes this service on these days.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} × {self.service_id} from {self.starts_on}"


class UsageRecord(models.Model):
    """Metered usage (a call, a delivery, a GB). Written by bulk ingest (COPY), never row by row.

    The account and service references carry no database foreign-key constraint:
    the ingest, this table's only writer, resolves both in the same statement
    that inserts the rows (unknown ones are refused per record), and a foreign-key
    check per row (an index probe plus a KEY SHARE lock on the account row) costs
    more than the rest of the insert: it halves bulk-load speed at millions of
    records. Accounts and services are never deleted (closed / deactivated), and
    the ORM still protects them (``on_delete=PROTECT``).
    """

    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
        db_constraint=False,
    )
    service = models.ForeignKey(
        Service,
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
        db_constraint=False,
    )
    quantity = models.DecimalField(**QUANTITY)
    occurred_at = models.DateTimeField()
    external_id = models.CharField(max_length=100)
    source = models.CharField(max_length=100, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())
    xact_id = TransactionIdField(
        null=True,
        editable=False,
        db_default=current_transaction_id(),
        help_text="The writing transaction (NULL for rows stored before it was recorded).",
    )

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["account", "occurred_at"], name="invoicing_usage_account_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "external_id"],
                name="%(app_label)s_%(class)s_unique_external_id",
                violation_error_message="This usage record was already received.",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=0),
                name="%(app_label)s_%(class)s_quantity_not_negative",
                violation_error_message="A quantity cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.quantity}"


class Meter(models.Model):
    """A physical meter of an account's service; replaced meters keep their history.

    ``digits`` is the register's width: a reading below the previous one is a
    rollover when wrapping past ``10**digits`` is the shorter way round.
    """

    # Indexed with the service (``invoicing_meter_series_idx``): meters are looked up by
    # (account, service), and with an index on the account alone the planner, whose
    # statistics lag behind a month-end file, combined it with the service's index, which
    # names every meter of the service.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="meters", db_index=False
    )
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="meters")
    serial = models.CharField(max_length=64, blank=True)
    digits = models.PositiveSmallIntegerField(null=True, blank=True)
    installed_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "service", "installed_at"]
        indexes = [models.Index(fields=["account", "service"], name="invoicing_meter_series_idx")]
        constraints = [
            # What the readings' foreign key references (``MeterReading.meter``).
            models.UniqueConstraint(
                fields=["id", "account", "service"], name="%(app_label)s_%(class)s_series_key"
            ),
            models.UniqueConstraint(
                fields=["account", "service"],
                condition=Q(removed_at__isnull=True),
                name="%(app_label)s_%(class)s_one_active_per_service",
                violation_error_message="The account already has an active meter for this service.",
            ),
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True) | Q(removed_at__gte=F("installed_at")),
                name="%(app_label)s_%(class)s_removed_after_installed",
                violation_error_message="A meter is removed after it was installed.",
            ),
            models.CheckConstraint(
                condition=Q(digits__isnull=True) | Q(digits__gte=1, digits__lte=14),
                name="%(app_label)s_%(class)s_digits_range",
                violation_error_message="A meter register has 1 to 14 digits.",
            ),
        ]

    def __str__(self) -> str:
        return f"meter {self.serial or self.pk} ({self.account_id}/{self.service_id})"

    @property
    def capacity(self) -> Decimal | None:
        return Decimal(10) ** self.digits if self.digits else None


class MeterReading(models.Model):
    """A cumulative register reading. ``consumption`` is the difference from the previous
    reading of the same meter (rollover unwrapped; 0 for a meter's first reading), kept
    up to date by the ingest service when a late reading lands between two others."""

    # One foreign key in the database for the three columns: (meter, account, service)
    # references the meter's (id, account, service) (``invoicing_meterreading_meter_series_fk``,
    # migration 0011), so a reading names its meter's account and service, and each
    # stored reading costs one deferred check at commit instead of three (3,000,000
    # readings of a month-end file: 9,000,000 checks). The (meter, taken_at) index serves
    # the lookups by meter.
    meter = models.ForeignKey(
        Meter,
        on_delete=models.PROTECT,
        related_name="readings",
        db_index=False,
        db_constraint=False,
    )
    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="meter_readings",
        db_index=False,
        db_constraint=False,
    )
    service = models.ForeignKey(
        Service,
        on_delete=models.PROTECT,
        related_name="meter_readings",
        db_index=False,
        db_constraint=False,
    )
    reading = models.DecimalField(**QUANTITY)
    taken_at = models.DateTimeField()
    consumption = models.DecimalField(**QUANTITY, default=ZERO)
    external_id = models.CharField(max_length=100)
    source = models.CharField(max_length=100, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())
    xact_id = TransactionIdField(
        null=True,
        editable=False,
        db_default=current_transaction_id(),
        help_text="The writing transaction (NULL for rows stored before it was recorded).",
    )

    class Meta:
        ordering = ["-taken_at"]
        indexes = [
            models.Index(fields=["account", "taken_at"], name="invoicing_reading_account_idx"),
            models.Index(fields=["meter", "taken_at"], name="invoicing_reading_meter_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "external_id"],
                name="%(app_label)s_%(class)s_unique_external_id",
                violation_error_message="This reading was already received.",
            ),
            models.CheckConstraint(
                condition=Q(reading__gte=0, consumption__gte=0),
                name="%(app_label)s_%(class)s_not_negative",
                violation_error_message="Readings and consumption are not negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id}@{self.taken_at:%Y-%m-%d}: {self.reading}"
