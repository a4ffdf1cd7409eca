"""Invoicing: tariffs, subscriptions, usage and meter readings, billing periods, runs, invoices.

Rating inputs (``Tariff``/``TariffTier``, ``Subscription``, ``UsageRecord``,
``MeterReading``) are written by services and bulk ingest; rating outputs
(``Invoice``/``InvoiceLine``) are written set-based by the invoice run. See the
design overview in ``invoicing/services/__init__.py``.

Dates are inclusive ranges of business days (``TIME_ZONE``): a subscription
``starts_on``..``ends_on`` and a tariff ``valid_from``..``valid_to`` include
both ends; ``None`` as the end means open-ended. Quantities and prices carry
six decimals (``NUMERIC(20,6)``), money two (``NUMERIC(18,2)``).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.functions import Now

from accounts.models import MONEY, Account, currency_validator
from brands.models import Brand, Service
from core.audit.models import audit_event_model
from ledger.models import Transaction

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

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="meters")
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="meters")
    serial = models.CharField(max_length=64, blank=True)
    digits = models.PositiveSmallIntegerField(null=True, blank=True)
    installed_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "service", "installed_at"]
        constraints = [
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

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="readings")
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="meter_readings", db_index=False
    )
    service = models.ForeignKey(
        Service, on_delete=models.PROTECT, related_name="meter_readings", db_index=False
    )
    reading = models.DecimalField(**QUANTITY)
    taken_at = models.DateTimeField()
    consumption = models.DecimalField(**QUANTITY, default=ZERO)
    external_id = models.CharField(max_length=100)
    source = models.CharField(max_length=100, blank=True, db_default="")
    created_at = models.DateTimeField(db_default=Now())

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


class InvoiceRun(models.Model):
    """One billing run of a period (optionally one brand), processed in chunks by q2 workers.

    ``invoice_run_start`` records it and queues a plan task that splits the
    accounts into ``InvoiceRunChunk`` rows, each processed exactly once by one
    q2 task. ``issue`` mode issues and posts invoices as chunks finish;
    ``draft`` mode stops at ``draft_ready`` until someone approves the run.
    ``total``/``processed``/``failed`` move in the chunks' transactions (the
    progress bar); accounts it could not bill are ``InvoiceRunFailure`` rows.
    A run can be resumed after a crash; an (account, brand, period) is never
    billed twice, whichever run gets there first.
    """

    class Mode(models.TextChoices):
        ISSUE = "issue", "Issue"
        DRAFT = "draft", "Draft (review, then approve)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DRAFT_READY = "draft_ready", "Draft ready"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class Phase(models.TextChoices):
        RATE = "rate", "Rating"
        ISSUE = "issue", "Issuing approved drafts"

    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="runs")
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, null=True, blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.ISSUE)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    phase = models.CharField(max_length=8, choices=Phase.choices, default=Phase.RATE)
    total = models.PositiveIntegerField(default=0, help_text="Accounts in scope.")
    processed = models.PositiveIntegerField(default=0, help_text="Accounts handled (incl. failed).")
    failed = models.PositiveIntegerField(default=0)
    invoices_issued = models.PositiveIntegerField(default=0)
    adjustments_issued = models.PositiveIntegerField(default=0)
    chunk_size = models.PositiveIntegerField(default=1000)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("approve_invoicerun", "Can approve draft invoice runs")]
        constraints = [
            models.CheckConstraint(
                condition=Q(processed__lte=F("total"), failed__lte=F("processed")),
                name="%(app_label)s_%(class)s_counters_consistent",
                violation_error_message="Processed accounts never exceed the total.",
            ),
        ]

    def __str__(self) -> str:
        return f"run #{self.pk} {self.period_id} {self.mode} ({self.status})"


class InvoiceRunChunk(models.Model):
    """A slice of a run's accounts: the unit of work of one q2 task, done exactly once."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    run = models.ForeignKey(InvoiceRun, on_delete=models.CASCADE, related_name="chunks")
    phase = models.CharField(max_length=8, choices=InvoiceRun.Phase.choices)
    index = models.PositiveIntegerField()
    account_ids = ArrayField(models.BigIntegerField())
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    processed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "phase", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "phase", "index"],
                name="%(app_label)s_%(class)s_unique_index",
                violation_error_message="The run already has this chunk.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.phase}/{self.index}"


class InvoiceRunFailure(models.Model):
    """An account a run could not bill, and why (the run carries on with the others)."""

    run = models.ForeignKey(InvoiceRun, on_delete=models.CASCADE, related_name="failures")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, null=True, blank=True)
    code = models.CharField(max_length=64)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.code}"


class Invoice(models.Model):
    """An invoice (or an adjustment: debit / credit note) for one account, brand and period.

    ``total`` includes VAT (``vat`` is its VAT part, ``subtotal`` the rest). A
    credit note has a negative total. ``paid_amount`` is what payments and
    credits allocated to it cover. Lifecycle: ``draft`` (a draft run) ->
    ``issued`` (numbered gap-free per brand and year, its total posted to the
    ledger as an accrual, its PDF rendered) -> ``partly_paid`` / ``paid`` as
    payments are allocated oldest first, ``overdue`` after ``due_date``
    (penalties accrue), or ``void``. An adjustment (``adjusts`` the original)
    bills the difference found by a recalculation of a billed period.
    """

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        ADJUSTMENT = "adjustment", "Adjustment (debit / credit note)"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ISSUED = "issued", "Issued"
        PARTLY_PAID = "partly_paid", "Partly paid"
        PAID = "paid", "Paid"
        OVERDUE = "overdue", "Overdue"
        VOID = "void", "Void"

    OPEN_STATUSES = ("issued", "partly_paid", "overdue")

    number = models.CharField(max_length=40, null=True, blank=True, unique=True)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="invoices", db_index=False
    )
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="invoices")
    period = models.ForeignKey(BillingPeriod, on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    adjusts = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="adjustments"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(**MONEY)
    vat = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    paid_amount = models.DecimalField(**MONEY, default=Decimal("0.00"))
    balance_brought_forward = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        help_text="The payer's balance right before this invoice was posted (+ credit, - debt).",
    )
    due_date = models.DateField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    rated_at = models.DateTimeField(help_text="Usage and readings known at this moment were rated.")
    inputs_checked_at = models.DateTimeField(
        help_text="Last time a recalculation compared this period with the inputs known then."
    )
    run = models.ForeignKey(
        InvoiceRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="invoices"
    )
    ledger_transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    pdf = models.FileField(upload_to="invoices/%Y/%m/", blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        permissions = [("recalculate_invoice", "Can recalculate billed periods (adjustments)")]
        indexes = [
            models.Index(fields=["account", "period"], name="invoicing_invoice_account_idx"),
            models.Index(fields=["period", "brand", "status"], name="invoicing_invoice_period_idx"),
            models.Index(fields=["run", "account"], name="invoicing_invoice_run_idx"),
            # Allocation asks "does this account have an open invoice?" on every payment.
            models.Index(
                fields=["account", "issued_at"],
                name="invoicing_invoice_open_idx",
                condition=Q(status__in=["issued", "partly_paid", "overdue"], total__gt=0),
            ),
            models.Index(
                fields=["due_date"],
                name="invoicing_invoice_due_idx",
                condition=Q(status__in=["issued", "partly_paid", "overdue"], total__gt=0),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "brand", "period"],
                condition=Q(kind="invoice") & ~Q(status="void"),
                name="%(app_label)s_%(class)s_one_per_account_brand_period",
                violation_error_message="This account is already billed for this brand and period.",
            ),
            models.CheckConstraint(
                condition=(Q(kind="invoice", adjusts__isnull=True, total__gt=0))
                | (Q(kind="adjustment", adjusts__isnull=False) & ~Q(total=0)),
                name="%(app_label)s_%(class)s_kind_consistent",
                violation_error_message=(
                    "An invoice has a positive total; an adjustment points at the invoice "
                    "it adjusts and has a non-zero total."
                ),
            ),
            models.CheckConstraint(
                condition=Q(subtotal=F("total") - F("vat")),
                name="%(app_label)s_%(class)s_totals_add_up",
                violation_error_message="Subtotal plus VAT is the total.",
            ),
            models.CheckConstraint(
                condition=Q(paid_amount__gte=0)
                & (Q(total__lt=0, paid_amount=0) | Q(paid_amount__lte=F("total"))),
                name="%(app_label)s_%(class)s_paid_within_total",
                violation_error_message="An invoice cannot be paid beyond its total.",
            ),
            models.CheckConstraint(
                condition=Q(status="draft", number__isnull=True)
                | (~Q(status="draft") & ~Q(status="void") & Q(number__isnull=False))
                | Q(status="void"),
                name="%(app_label)s_%(class)s_number_when_issued",
                violation_error_message="Issued invoices have a number; drafts do not.",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft #{self.pk}"

    @property
    def outstanding(self) -> Decimal:
        return max(self.total - self.paid_amount, Decimal("0.00"))


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"
        MINIMUM = "minimum", "Minimum charge top-up"
        ADJUSTMENT = "adjustment", "Adjustment"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CHARGE)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    tariff = models.ForeignKey(
        Tariff, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    description = models.CharField(max_length=300, blank=True)
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)
    quantity = models.DecimalField(**QUANTITY)
    unit_price = models.DecimalField(**QUANTITY, null=True, blank=True)
    amount = models.DecimalField(**MONEY, help_text="Including VAT.")
    vat_rate = models.DecimalField(max_digits=5, decimal_places=2)
    vat = models.DecimalField(**MONEY)
    estimated = models.BooleanField(
        default=False, help_text="The quantity is an estimate (no meter reading yet)."
    )

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self) -> str:
        return f"{self.description or self.service_id}: {self.amount}"


class InvoiceNumberCounter(models.Model):
    """The last number issued per brand and year (see ``invoice_numbers_allocate``)."""

    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="+")
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "year"],
                name="%(app_label)s_%(class)s_unique_brand_year",
                violation_error_message="One counter per brand and year.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand_id}/{self.year}: {self.last_number}"


class InvoiceAllocation(models.Model):
    """Money applied to an invoice (negative when a payment reversal takes it back)."""

    class Source(models.TextChoices):
        PAYMENT = "payment", "Payment"
        PAYMENT_REVERSAL = "payment_reversal", "Payment reversal"
        CREDIT_BALANCE = "credit_balance", "Credit balance at issue"
        CREDIT_NOTE = "credit_note", "Credit note"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    source = models.CharField(max_length=20, choices=Source.choices)
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["invoice", "id"]
        indexes = [
            models.Index(
                fields=["transaction"],
                name="invoicing_alloc_txn_idx",
                condition=Q(transaction__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0),
                name="%(app_label)s_%(class)s_amount_not_zero",
                violation_error_message="An allocation moves a non-zero amount.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id} {self.source} {self.amount}"


class PenaltyPolicy(models.Model):
    """How overdue debt accrues a penalty for a brand: a daily rate after a grace period, capped."""

    brand = models.OneToOneField(Brand, on_delete=models.CASCADE, related_name="penalty_policy")
    daily_rate_percent = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        help_text="Percent of the overdue amount per day (1/300 of a 16% key rate = 0.053333).",
    )
    grace_days = models.PositiveIntegerField(default=0, help_text="Days after the due date.")
    cap_percent = models.DecimalField(
        max_digits=7,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Penalties on one invoice never exceed this percent of its total.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "penalty policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(daily_rate_percent__gt=0)
                & (Q(cap_percent__isnull=True) | Q(cap_percent__gt=0)),
                name="%(app_label)s_%(class)s_positive",
                violation_error_message="Rates and caps are positive.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand.code}: {self.daily_rate_percent}%/day"


class PenaltyAccrual(models.Model):
    """One day's penalty on one overdue invoice; the unique key makes the daily job idempotent."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="penalties")
    accrued_on = models.DateField()
    base = models.DecimalField(**MONEY, help_text="The overdue amount the penalty was taken on.")
    amount = models.DecimalField(**MONEY)
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["invoice", "accrued_on"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "accrued_on"],
                name="%(app_label)s_%(class)s_once_per_day",
                violation_error_message="A penalty is accrued once per invoice per day.",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="A penalty is positive.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}@{self.accrued_on}: {self.amount}"
