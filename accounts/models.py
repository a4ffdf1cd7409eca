"""Clients, their personal accounts and sub-accounts, and the system accounts.

A client account carries its running ``balance`` and ``held`` amount, updated
only by the ledger services under a row lock. A sub-account (``parent`` set)
holds no funds of its own: postings on it move the root payer's balance and
count against the sub-account's own write-off limits. System accounts
(clearing, revenue, suspense, refunds, ...) keep no running balance at all;
their balance is the sum of their ledger entries.
"""

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from brands.models import Brand, Service
from core.audit.models import audit_event_model
from core.validators import validate_inn, validate_kpp

MONEY = {"max_digits": 18, "decimal_places": 2}
currency_validator = RegexValidator(
    r"^[A-Z]{3}$", "Use an ISO 4217 code such as RUB.", code="invalid_currency"
)
POSITIVE = [MinValueValidator(Decimal("0.01"))]


class Client(models.Model):
    class Kind(models.TextChoices):
        INDIVIDUAL = "individual", _("Individual")
        LEGAL_ENTITY = "legal_entity", _("Legal entity")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")
        ARCHIVED = "archived", _("Archived")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=300, help_text="Full name of a person or short name.")
    legal_name = models.CharField(max_length=300, blank=True)
    tax_id = models.CharField("INN", max_length=12, blank=True, validators=[validate_inn])
    kpp = models.CharField("KPP", max_length=9, blank=True, validators=[validate_kpp])
    ogrn = models.CharField("OGRN / OGRNIP", max_length=15, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    address = models.CharField(max_length=500, blank=True)
    external_ref = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["tax_id"], name="accounts_client_tax_id_idx"),
            models.Index(fields=["external_ref"], name="accounts_client_ext_ref_idx"),
            models.Index(fields=["phone"], name="accounts_client_phone_idx"),
            GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="accounts_client_name_trgm"),
            # The staff UI's search as you type: tax ids by prefix, phones by any digits,
            # e-mails by prefix (case-insensitive).
            models.Index(
                fields=["tax_id"],
                name="accounts_client_tax_id_like",
                opclasses=["varchar_pattern_ops"],
            ),
            GinIndex(OpClass("phone", name="gin_trgm_ops"), name="accounts_client_phone_trgm"),
            GinIndex(
                OpClass(Upper("email"), name="gin_trgm_ops"), name="accounts_client_email_trgm"
            ),
            # The staff UI's clients list, sorted by name a page at a time.
            models.Index(fields=["name", "id"], name="accounts_client_name_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(tax_id="")
                | Q(kind="legal_entity", tax_id__regex=r"^\d{10}$")
                | Q(kind="individual", tax_id__regex=r"^\d{12}$"),
                name="%(app_label)s_%(class)s_tax_id_matches_kind",
                violation_error_message=(
                    "An organisation's INN has 10 digits, an individual's has 12."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    """A personal account of a client, or a system account of the operator.

    A client account has a human-readable ``number`` with a Luhn check digit
    (typed by payers at bank terminals), one ``currency``, a ``status``
    (open / blocked / closed, with the reason and who changed it) and links to
    the ``brands`` that bill it. It may hang under a ``parent`` (its payer):
    a sub-account holds no funds of its own, its debits are taken from the
    root payer's balance and counted against its own write-off limits.

    ``balance`` and ``held`` are the running state of a root payer, written
    only by the ledger services under this row's lock, in the same database
    transaction as the entries that change them; ``negative_since`` and the
    ``spent_day``/``spent_month`` counters live beside them. Limits: credit
    (``credit_limit``, ``credit_period_days``, ``credit_expires_at``) on a
    payer, write-off limits per transaction, day and month on any account.

    System accounts (``kind`` other than ``client``: clearing per channel,
    revenue per brand and service, suspense, refunds, penalties, adjustments)
    are hot: they are never locked and keep no running balance; their balance
    is the sum of their entries.
    """

    class Kind(models.TextChoices):
        CLIENT = "client", _("Client account")
        CLEARING = "clearing", _("Clearing (payment channel)")
        REVENUE = "revenue", _("Revenue")
        SUSPENSE = "suspense", _("Suspense (unidentified payments)")
        REFUNDS = "refunds", _("Refunds payable")
        PENALTIES = "penalties", _("Penalty revenue")
        ADJUSTMENTS = "adjustments", _("Manual adjustments")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        BLOCKED = "blocked", _("Blocked")
        CLOSED = "closed", _("Closed")

    class Channel(models.TextChoices):
        BANK = "bank", _("Bank")
        CARD = "card", _("Card")
        CASH = "cash", _("Cash")
        AGENT = "agent", _("Payment agent")
        GATEWAY = "gateway", _("Payment gateway")
        OTHER = "other", _("Other")

    number = models.CharField(max_length=20, unique=True, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CLIENT)
    client = models.ForeignKey(
        Client, on_delete=models.PROTECT, null=True, blank=True, related_name="accounts"
    )
    currency = models.CharField(max_length=3, validators=[currency_validator])
    name = models.CharField(max_length=200, blank=True, help_text="Optional label.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status_changed_by_caller = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",  # bulk loaders (COPY) that do not name the column
        help_text="Who made the last status change: user:<id>, partner:<id> or system:<name>.",
    )
    brands = models.ManyToManyField(Brand, blank=True, related_name="accounts")
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        help_text="Payer account whose funds this sub-account draws on.",
    )

    credit_limit = models.DecimalField(**MONEY, default=Decimal("0.00"))
    credit_period_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="How many days the balance may stay below zero."
    )
    credit_expires_at = models.DateField(null=True, blank=True)
    write_off_limit_transaction = models.DecimalField(
        **MONEY, null=True, blank=True, validators=POSITIVE
    )
    write_off_limit_day = models.DecimalField(**MONEY, null=True, blank=True, validators=POSITIVE)
    write_off_limit_month = models.DecimalField(**MONEY, null=True, blank=True, validators=POSITIVE)

    # Running state, written only by the ledger services under a row lock.
    balance = models.DecimalField(**MONEY, default=Decimal("0.00"), editable=False)
    held = models.DecimalField(**MONEY, default=Decimal("0.00"), editable=False)
    negative_since = models.DateTimeField(null=True, blank=True, editable=False)
    spent_day = models.DecimalField(**MONEY, default=Decimal("0.00"), editable=False)
    spent_day_on = models.DateField(null=True, blank=True, editable=False)
    spent_month = models.DecimalField(**MONEY, default=Decimal("0.00"), editable=False)
    spent_month_on = models.DateField(null=True, blank=True, editable=False)

    # System accounts: which ledger role they play.
    system_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    brand = models.ForeignKey(
        Brand, on_delete=models.PROTECT, null=True, blank=True, related_name="system_accounts"
    )
    service = models.ForeignKey(
        Service, on_delete=models.PROTECT, null=True, blank=True, related_name="system_accounts"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        permissions = [
            ("block_account", "Can block and unblock accounts"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="client", client__isnull=False, system_key__isnull=True))
                | (~Q(kind="client") & Q(client__isnull=True, system_key__isnull=False)),
                name="%(app_label)s_%(class)s_client_xor_system",
                violation_error_message="A client account has a client; a system account has none.",
            ),
            models.CheckConstraint(
                condition=Q(kind="client")
                | Q(balance=0, held=0, parent__isnull=True, credit_limit=0),
                name="%(app_label)s_%(class)s_system_no_running_balance",
                violation_error_message="System accounts keep no running balance.",
            ),
            models.CheckConstraint(
                condition=Q(held__gte=0),
                name="%(app_label)s_%(class)s_held_not_negative",
                violation_error_message="Held amount cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(credit_limit__gte=0),
                name="%(app_label)s_%(class)s_credit_limit_not_negative",
                violation_error_message="Credit limit cannot be negative.",
            ),
            models.CheckConstraint(
                condition=(
                    (
                        Q(write_off_limit_transaction__isnull=True)
                        | Q(write_off_limit_transaction__gt=0)
                    )
                    & (Q(write_off_limit_day__isnull=True) | Q(write_off_limit_day__gt=0))
                    & (Q(write_off_limit_month__isnull=True) | Q(write_off_limit_month__gt=0))
                ),
                name="%(app_label)s_%(class)s_write_off_limits_positive",
                violation_error_message="Write-off limits must be positive (or empty for none).",
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=True) | ~Q(parent=models.F("id")),
                name="%(app_label)s_%(class)s_not_own_parent",
                violation_error_message="An account cannot be its own parent.",
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=True) | Q(balance=0, held=0),
                name="%(app_label)s_%(class)s_subaccount_holds_no_funds",
                violation_error_message="A sub-account holds no funds of its own.",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"),
                name="%(app_label)s_%(class)s_currency_iso",
                violation_error_message="Currency must be an ISO 4217 code.",
            ),
        ]
        indexes = [
            models.Index(fields=["client", "id"], name="accounts_account_client_idx"),
            models.Index(
                fields=["negative_since"],
                name="accounts_account_negative_idx",
                condition=Q(negative_since__isnull=False),
            ),
            # The dashboard's count of blocked accounts (few rows: those not open).
            models.Index(
                fields=["status"],
                name="accounts_account_not_open_idx",
                condition=~Q(status="open"),
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_system(self) -> bool:
        return self.kind != self.Kind.CLIENT

    @property
    def is_subaccount(self) -> bool:
        return self.parent_id is not None


# --------------------------------------------------------------------------- audit trail
# Database triggers record every change of these fields (core.audit): old and new values,
# who acted and when. An account's running state (balance, held, spent_*, negative_since,
# updated_at), written by every posting, is not among them: those updates fire nothing.

CLIENT_AUDITED_FIELDS = [
    "kind",
    "name",
    "legal_name",
    "tax_id",
    "kpp",
    "ogrn",
    "email",
    "phone",
    "address",
    "external_ref",
    "status",
]
ACCOUNT_AUDITED_FIELDS = [
    "name",
    "parent",
    "status",
    "status_reason",
    "credit_limit",
    "credit_period_days",
    "credit_expires_at",
    "write_off_limit_transaction",
    "write_off_limit_day",
    "write_off_limit_month",
]


class ClientEvent(
    audit_event_model(Client, fields=CLIENT_AUDITED_FIELDS, verbose_name="client audit event")
):
    """A client was created or its identity, contacts or status changed (a database trigger)."""


class AccountEvent(
    audit_event_model(Account, fields=ACCOUNT_AUDITED_FIELDS, verbose_name="account audit event")
):
    """An account was opened or its limits, status (with reason) or payer changed."""


class PartnerClient(models.Model):
    """A client created through the API by a partner, visible to it before it has accounts."""

    partner = models.ForeignKey(
        "access.Partner", on_delete=models.CASCADE, related_name="client_links"
    )
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="partner_links")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "client"],
                name="%(app_label)s_%(class)s_unique_link",
                violation_error_message="This client is already linked to the partner.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.partner_id} -> {self.client_id}"
