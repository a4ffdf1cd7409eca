"""Payment intake: agents and their registry files, the payments they carry, and suspense.

Design overview
---------------
A **payment agent** (a bank, the post office, a terminal network) sends daily
**registries**: files listing the payments it took, in one of the built-in
formats (``sber-txt``, ``csv-total``) or in a layout staff describe without code
(``RegistryLayout``). A registry is first *previewed* (parsed, checked against
its control line, every row matched to an account) and then *applied* whole in
one database transaction, or not at all.

Each payment line the agent sends is claimed once in ``AgentPayment``, whose
unique constraint on ``(agent, payment_id)`` is what guarantees that the same or
an overlapping file never posts a payment twice, even when two applies run at
the same moment: the second one waits on the first one's index entries and then
finds them taken.

A claimed payment either posts to the client account with that number (a
``payment`` through ``ledger.services.post_bulk``, allocated to the account's
invoices like any payment), or, when the number is unknown, closed or fails
its check digit, goes to **suspense**: the money is credited to the suspense
system account and a ``SuspenseItem`` keeps the raw row until staff assign it
to an account (a transfer from suspense) or return it (a refund).

The ledger stays the one writer of money: these tables only say which ledger
transaction carried which line of which file.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from accounts.models import Account

MONEY = {"max_digits": 18, "decimal_places": 2}
code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,19}$",
    "Letters, digits, '_', '.', '-'; at most 20 characters.",
    code="invalid_code",
)


class RegistryFormat(models.TextChoices):
    SBER_TXT = "sber-txt", "sber-txt (cp1251, ';', control footer)"
    CSV_TOTAL = "csv-total", "csv-total (UTF-8 CSV, control line first)"
    CUSTOM = "custom", "A layout described by staff"


class RegistryLayout(models.Model):
    """A registry layout described by staff, without code.

    ``columns`` maps what a payment line carries to its 0-based position:
    ``payment_id``, ``account`` and ``amount`` are required; ``paid_at``,
    ``paid_time`` (joined to ``paid_at`` with a space before ``date_format``
    reads it), ``payer``, ``address``, ``period`` and ``commission`` are optional.
    ``control_columns`` does the same for the control line (``count``, ``total``,
    optionally ``commission``), which sits first, last, or nowhere.
    """

    class ControlLine(models.TextChoices):
        NONE = "none", "No control line"
        FIRST = "first", "First line (before any header)"
        LAST = "last", "Last line (after any footer)"

    name = models.CharField(max_length=100, unique=True)
    encoding = models.CharField(
        max_length=20, default="utf-8", help_text="A Python codec name: utf-8, cp1251, koi8-r."
    )
    delimiter = models.CharField(max_length=1, default=";")
    quoted = models.BooleanField(
        default=False, help_text="Fields may be quoted with '\"' (CSV style)."
    )
    decimal_separator = models.CharField(
        max_length=1, default=".", choices=[(".", "dot"), (",", "comma")]
    )
    date_format = models.CharField(
        max_length=40, default="%d.%m.%Y", help_text="strftime codes, e.g. %d-%m-%Y %H:%M:%S."
    )
    columns = models.JSONField(
        default=dict, help_text='{"payment_id": 0, "account": 1, "amount": 2, ...}'
    )
    header_lines = models.PositiveSmallIntegerField(
        default=0, help_text="Lines to skip after the control line (if first) at the top."
    )
    footer_lines = models.PositiveSmallIntegerField(
        default=0, help_text="Lines to skip before the control line (if last) at the bottom."
    )
    control_line = models.CharField(
        max_length=8, choices=ControlLine.choices, default=ControlLine.NONE
    )
    control_prefix = models.CharField(
        max_length=20,
        blank=True,
        help_text="Text the control line starts with, e.g. '=' or '#TOTAL'.",
    )
    control_columns = models.JSONField(
        default=dict, blank=True, help_text='{"count": 0, "total": 1, "commission": 3}'
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PaymentAgent(models.Model):
    """A bank, post office or terminal network that takes payments and sends registries."""

    code = models.CharField(max_length=20, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=16, choices=RegistryFormat.choices)
    layout = models.ForeignKey(
        RegistryLayout, on_delete=models.PROTECT, null=True, blank=True, related_name="agents"
    )
    commission_rate = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0.00"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Percent of each payment the agent keeps (when its file does not say).",
    )
    currency = models.CharField(max_length=3, default="RUB")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(format="custom", layout__isnull=False)
                | (~Q(format="custom") & Q(layout__isnull=True)),
                name="%(app_label)s_%(class)s_layout_iff_custom",
                violation_error_message="A custom format needs a layout; a built-in one has none.",
            ),
            models.CheckConstraint(
                condition=Q(commission_rate__gte=0) & Q(commission_rate__lte=100),
                name="%(app_label)s_%(class)s_commission_rate_percent",
                violation_error_message="The commission rate is a percentage from 0 to 100.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class Registry(models.Model):
    """One registry file of an agent: previewed, then applied whole (or refused)."""

    class Status(models.TextChoices):
        PREVIEWED = "previewed", "Previewed"
        APPLIED = "applied", "Applied"

    agent = models.ForeignKey(PaymentAgent, on_delete=models.PROTECT, related_name="registries")
    file_name = models.CharField(max_length=255)
    content = models.BinaryField(help_text="The file exactly as received.")
    sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PREVIEWED)
    # What the file says (its control line; computed when it has none).
    control_count = models.PositiveIntegerField(default=0)
    control_total = models.DecimalField(**MONEY, default=Decimal("0"))
    # What the preview found / the apply did.
    rows = models.PositiveIntegerField(default=0)
    total_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    posted = models.PositiveIntegerField(default=0)
    posted_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    suspense = models.PositiveIntegerField(default=0)
    suspense_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    duplicates = models.PositiveIntegerField(default=0)
    duplicates_amount = models.DecimalField(**MONEY, default=Decimal("0"))
    commission = models.DecimalField(**MONEY, default=Decimal("0"))
    errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The request's Idempotency-Key (caller ref + key, unique) and what the request was
    # (agent, file name, content, dry run): the same key again replays this registry, a
    # different request with it is an ``idempotency_conflict``.
    idempotency_caller = models.CharField(max_length=64, blank=True, default="", db_default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "registries"
        permissions = [("apply_registry", "Can import and apply payment registries")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="previewed", applied_at__isnull=True)
                | Q(status="applied", applied_at__isnull=False),
                name="%(app_label)s_%(class)s_applied_has_time",
                violation_error_message="An applied registry has its time of application.",
            ),
            models.UniqueConstraint(
                fields=["idempotency_caller", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_unique_idempotency_key",
                violation_error_message="This idempotency key was already used by this caller.",
            ),
        ]
        indexes = [models.Index(fields=["agent", "created_at"], name="payments_registry_agent_idx")]

    def __str__(self) -> str:
        return f"{self.agent.code} {self.file_name} #{self.pk}"


class AgentPayment(models.Model):
    """One payment an agent reported, claimed once per ``(agent, payment_id)``.

    Written only when a registry is applied, in the same transaction as the
    ledger posting (or the suspense receipt) that carries it.
    """

    class Outcome(models.TextChoices):
        POSTED = "posted", "Posted to the account"
        SUSPENSE = "suspense", "Sent to suspense"

    # No index of their own: the unique (agent, payment_id) and (registry, row) indexes lead
    # with them (a registry import writes hundreds of thousands of claims).
    agent = models.ForeignKey(
        PaymentAgent, on_delete=models.PROTECT, related_name="payments", db_index=False
    )
    payment_id = models.CharField(max_length=64)
    registry = models.ForeignKey(
        Registry, on_delete=models.PROTECT, related_name="payments", db_index=False
    )
    row = models.PositiveIntegerField(help_text="Line number in the file (1-based).")
    account_number = models.CharField(max_length=40)
    amount = models.DecimalField(**MONEY)
    commission = models.DecimalField(**MONEY, default=Decimal("0"))
    paid_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    transaction = models.ForeignKey(
        "ledger.Transaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "payment_id"],
                name="%(app_label)s_%(class)s_agent_payment_unique",
                violation_error_message="This agent's payment was already received.",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="A payment amount is positive.",
            ),
        ]
        indexes = [models.Index(fields=["registry", "row"], name="payments_agentpay_reg_idx")]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.payment_id}"


class SuspenseItem(models.Model):
    """Money received for an account number that could not be posted: kept until resolved."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ASSIGNED = "assigned", "Assigned to an account"
        RETURNED = "returned", "Returned to the payer"

    class Reason(models.TextChoices):
        UNKNOWN_ACCOUNT = "unknown_account", "No account with this number"
        INVALID_CHECK_DIGIT = "invalid_check_digit", "The number's check digit fails"
        ACCOUNT_CLOSED = "account_closed", "The account is closed"
        CURRENCY_MISMATCH = "currency_mismatch", "The account is in another currency"
        REFUSED_BY_RULE = "refused_by_rule", "A payment rule refused it"
        REFUSED = "refused", "The ledger refused the posting"

    registry = models.ForeignKey(
        Registry, on_delete=models.PROTECT, null=True, blank=True, related_name="suspense_items"
    )
    agent_payment = models.OneToOneField(
        AgentPayment, on_delete=models.PROTECT, null=True, blank=True, related_name="suspense"
    )
    row = models.PositiveIntegerField(null=True, blank=True)
    account_number = models.CharField(max_length=40, blank=True)
    payer = models.CharField(max_length=300, blank=True)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    received_at = models.DateTimeField()
    reason = models.CharField(max_length=24, choices=Reason.choices)
    reason_detail = models.CharField(max_length=500, blank=True)
    raw = models.TextField(help_text="The registry line exactly as received (decoded).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    receipt_transaction = models.ForeignKey(
        "ledger.Transaction", on_delete=models.PROTECT, related_name="+"
    )
    resolution_transaction = models.ForeignKey(
        "ledger.Transaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    assigned_account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    return_reason = models.CharField(max_length=500, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["received_at", "id"]
        permissions = [("resolve_suspenseitem", "Can assign or return suspense items")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="open", resolution_transaction__isnull=True)
                | (~Q(status="open") & Q(resolution_transaction__isnull=False)),
                name="%(app_label)s_%(class)s_resolved_has_transaction",
                violation_error_message="A resolved suspense item names its transaction.",
            ),
            models.CheckConstraint(
                condition=~Q(status="assigned") | Q(assigned_account__isnull=False),
                name="%(app_label)s_%(class)s_assigned_has_account",
                violation_error_message="An assigned suspense item names its account.",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="A suspense amount is positive.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="payments_suspense_open_idx")
        ]

    def __str__(self) -> str:
        return f"suspense #{self.pk} {self.account_number} {self.amount}"


class PaymentRule(models.Model):
    """What money a brand or a client accepts, checked at every intake.

    A rule belongs to a brand (it applies to every account linked to the brand)
    or to a client (it applies to the client's accounts and replaces the brands'
    rules for them). Empty lists allow everything; ``min_amount`` and
    ``max_amount`` bound one payment. ``overpayment`` says what happens to the
    part of a payment that leaves the payer's balance above zero: kept as an
    advance, or refunded at once.
    """

    class Overpayment(models.TextChoices):
        ADVANCE = "advance", "Kept as an advance"
        REFUND = "refund", "Refunded"

    brand = models.ForeignKey(
        "brands.Brand", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    client = models.ForeignKey(
        "accounts.Client", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    min_amount = models.DecimalField(**MONEY, null=True, blank=True)
    max_amount = models.DecimalField(**MONEY, null=True, blank=True)
    allowed_channels = ArrayField(
        models.CharField(max_length=16, choices=Account.Channel.choices),
        default=list,
        blank=True,
        help_text="Empty: every channel.",
    )
    allowed_statuses = ArrayField(
        models.CharField(max_length=8, choices=[("open", "Open"), ("blocked", "Blocked")]),
        default=list,
        blank=True,
        help_text="Account statuses that may receive payments; empty: open and blocked.",
    )
    overpayment = models.CharField(
        max_length=8, choices=Overpayment.choices, default=Overpayment.ADVANCE
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(brand__isnull=False, client__isnull=True)
                | Q(brand__isnull=True, client__isnull=False),
                name="%(app_label)s_%(class)s_brand_xor_client",
                violation_error_message="A rule belongs to a brand or to a client.",
            ),
            models.CheckConstraint(
                condition=Q(min_amount__isnull=True)
                | Q(max_amount__isnull=True)
                | Q(min_amount__lte=F("max_amount")),
                name="%(app_label)s_%(class)s_min_below_max",
                violation_error_message="The minimum amount is at most the maximum.",
            ),
            models.CheckConstraint(
                condition=(Q(min_amount__isnull=True) | Q(min_amount__gt=0))
                & (Q(max_amount__isnull=True) | Q(max_amount__gt=0)),
                name="%(app_label)s_%(class)s_bounds_positive",
                violation_error_message="Amount bounds are positive.",
            ),
            models.UniqueConstraint(
                fields=["brand"],
                condition=Q(active=True, brand__isnull=False),
                name="%(app_label)s_%(class)s_one_active_per_brand",
                violation_error_message="A brand has one active payment rule.",
            ),
            models.UniqueConstraint(
                fields=["client"],
                condition=Q(active=True, client__isnull=False),
                name="%(app_label)s_%(class)s_one_active_per_client",
                violation_error_message="A client has one active payment rule.",
            ),
        ]

    def __str__(self) -> str:
        owner = f"brand {self.brand_id}" if self.brand_id else f"client {self.client_id}"
        return f"payment rule of {owner}"
