"""Rating outputs: invoice runs, invoices and their lines, numbering, allocations, penalties."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from accounts.models import MONEY, Account
from brands.models import Brand, Service
from invoicing.models.rating import (
    QUANTITY,
    BillingPeriod,
    Subscription,
    Tariff,
    TransactionIdField,
)
from ledger.models import Transaction


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
        ISSUE = "issue", _("Issue")
        DRAFT = "draft", _("Draft (review, then approve)")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        DRAFT_READY = "draft_ready", _("Draft ready")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    class Phase(models.TextChoices):
        RATE = "rate", _("Rating")
        ISSUE = "issue", _("Issuing approved drafts")

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
        PENDING = "pending", _("Pending")
        DONE = "done", _("Done")

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
        INVOICE = "invoice", _("Invoice")
        ADJUSTMENT = "adjustment", _("Adjustment (debit / credit note)")

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ISSUED = "issued", _("Issued")
        PARTLY_PAID = "partly_paid", _("Partly paid")
        PAID = "paid", _("Paid")
        OVERDUE = "overdue", _("Overdue")
        VOID = "void", _("Void")

    OPEN_STATUSES = ("issued", "partly_paid", "overdue")

    number = models.CharField(max_length=40, null=True, blank=True, unique=True)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="invoices", db_index=False
    )
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="invoices")
    # No index of their own for period and run: invoicing_invoice_period_idx and
    # invoicing_invoice_run_idx lead with them (each index costs every insert and every
    # issue, a non-HOT update, one more entry: two of a run chunk's ~28,000).
    period = models.ForeignKey(
        BillingPeriod, on_delete=models.PROTECT, related_name="invoices", db_index=False
    )
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
    inputs_xmin = TransactionIdField(
        null=True,
        blank=True,
        editable=False,
        help_text=(
            "The oldest transaction still running when the inputs were last checked: usage"
            " and readings written by it or later ones are new to that check."
        ),
    )
    run = models.ForeignKey(
        InvoiceRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invoices",
        db_index=False,
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
        CHARGE = "charge", _("Charge")
        MINIMUM = "minimum", _("Minimum charge top-up")
        ADJUSTMENT = "adjustment", _("Adjustment")

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
        PAYMENT = "payment", _("Payment")
        PAYMENT_REVERSAL = "payment_reversal", _("Payment reversal")
        CREDIT_BALANCE = "credit_balance", _("Credit balance at issue")
        CREDIT_NOTE = "credit_note", _("Credit note")
        CREDIT = "credit", _("Other credit (transfer in, adjustment, reversal of a charge)")
        CREDIT_REVERSAL = "credit_reversal", _("Reversal of another credit")

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
