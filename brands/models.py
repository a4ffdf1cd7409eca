"""The operator's own legal entities and their catalogue of services."""

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from core.audit.models import audit_event_model
from core.validators import validate_bank_account, validate_bik, validate_inn, validate_kpp

VAT_RATE_VALIDATORS = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]
code_validator = RegexValidator(
    r"^[A-Za-z0-9_.-]+$", "Use letters, digits, '_', '.' and '-' only.", code="invalid_code"
)


class Brand(models.Model):
    """One of the operator's own legal entities: it issues invoices and earns revenue."""

    code = models.CharField(max_length=32, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    legal_name = models.CharField(max_length=300)
    tax_id = models.CharField("INN", max_length=12, validators=[validate_inn])
    kpp = models.CharField("KPP", max_length=9, blank=True, validators=[validate_kpp])
    ogrn = models.CharField("OGRN", max_length=15, blank=True)
    address = models.CharField(max_length=500, blank=True)
    bank_name = models.CharField(max_length=200, blank=True)
    bank_bik = models.CharField("BIK", max_length=9, blank=True, validators=[validate_bik])
    bank_account = models.CharField(
        "settlement account", max_length=20, blank=True, validators=[validate_bank_account]
    )
    bank_correspondent_account = models.CharField(
        "correspondent account", max_length=20, blank=True, validators=[validate_bank_account]
    )
    invoice_prefix = models.CharField(max_length=16, validators=[code_validator])
    default_vat_rate = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("20.00"), validators=VAT_RATE_VALIDATORS
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice_prefix"],
                name="%(app_label)s_%(class)s_unique_invoice_prefix",
                violation_error_message="Another brand already uses this invoice prefix.",
            ),
            models.CheckConstraint(
                condition=models.Q(default_vat_rate__gte=0, default_vat_rate__lte=100),
                name="%(app_label)s_%(class)s_vat_rate_range",
                violation_error_message="VAT rate must be between 0 and 100 percent.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


class Service(models.Model):
    """A billable service in a brand's catalogue (a meal, kWh of power, a data plan)."""

    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="services")
    code = models.CharField(max_length=64, validators=[code_validator])
    name = models.CharField(max_length=200)
    unit = models.CharField(max_length=32, default="pcs")
    vat_rate = models.DecimalField(
        "VAT rate, %", max_digits=5, decimal_places=2, validators=VAT_RATE_VALIDATORS
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["brand__code", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "code"],
                name="%(app_label)s_%(class)s_unique_code_per_brand",
                violation_error_message="This brand already has a service with this code.",
            ),
            models.CheckConstraint(
                condition=models.Q(vat_rate__gte=0, vat_rate__lte=100),
                name="%(app_label)s_%(class)s_vat_rate_range",
                violation_error_message="VAT rate must be between 0 and 100 percent.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand.code}/{self.code} — {self.name}"


# The brand's registration and bank details (they feed invoices and the payment QR): every
# change is recorded by a database trigger with old and new values and the actor (core.audit).
BRAND_AUDITED_FIELDS = [
    "code",
    "name",
    "legal_name",
    "tax_id",
    "kpp",
    "ogrn",
    "address",
    "bank_name",
    "bank_bik",
    "bank_account",
    "bank_correspondent_account",
    "invoice_prefix",
    "default_vat_rate",
    "is_active",
]


class BrandEvent(
    audit_event_model(Brand, fields=BRAND_AUDITED_FIELDS, verbose_name="brand audit event")
):
    """A brand was created or its registration, bank or invoicing details changed."""
