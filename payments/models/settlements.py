"""Settlements with brands: what was collected for a brand in a month, and its payout.

``SettlementTerms`` holds the operator's commission rate per brand. A
``Settlement`` is prepared for a brand and a month (``YYYY-MM``, once it has
ended) from what is not settled yet: the money allocated to the brand's invoices
that month (``InvoiceAllocation``: payments, advances applied at issue, transfers
in; not credit notes) and the brand's own write-offs (debits and hold captures,
less their reversals). Each of those is a ``SettlementItem``, unique across all
settlements, so no amount is ever settled twice; the settlement's totals are
their sums. Paying it out (``paid``, with the payment reference) happens once.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from payments.models.intake import MONEY


class SettlementTerms(models.Model):
    brand = models.OneToOneField("brands.Brand", on_delete=models.CASCADE, related_name="+")
    operator_commission_rate = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Percent of what was collected that the operator keeps.",
    )

    class Meta:
        verbose_name_plural = "settlement terms"
        constraints = [
            models.CheckConstraint(
                condition=Q(operator_commission_rate__gte=0) & Q(operator_commission_rate__lte=100),
                name="%(app_label)s_%(class)s_rate_percent",
                violation_error_message="The commission rate is a percentage from 0 to 100.",
            ),
        ]

    def __str__(self) -> str:
        return f"terms of brand {self.brand_id}: {self.operator_commission_rate}%"


class Settlement(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Prepared"
        PAID = "paid", "Paid out"

    brand = models.ForeignKey("brands.Brand", on_delete=models.PROTECT, related_name="+")
    period = models.CharField(max_length=7, help_text="YYYY-MM")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    invoice_payments = models.DecimalField(**MONEY, default=Decimal("0"))
    debits = models.DecimalField(**MONEY, default=Decimal("0"))
    collected = models.DecimalField(**MONEY, default=Decimal("0"))
    agent_commission = models.DecimalField(**MONEY, default=Decimal("0"))
    operator_commission_rate = models.DecimalField(max_digits=5, decimal_places=2)
    operator_commission = models.DecimalField(**MONEY, default=Decimal("0"))
    payable = models.DecimalField(**MONEY, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="RUB")
    prepared_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    payout_reference = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-period", "brand"]
        permissions = [("pay_settlement", "Can mark settlements as paid out")]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "period", "currency"],
                name="%(app_label)s_%(class)s_one_per_brand_period",
                violation_error_message="A brand has one settlement per period.",
            ),
            models.CheckConstraint(
                condition=Q(status="draft", paid_at__isnull=True)
                | Q(status="paid", paid_at__isnull=False),
                name="%(app_label)s_%(class)s_paid_has_time",
                violation_error_message="A paid settlement has its payout time.",
            ),
            models.CheckConstraint(
                condition=Q(collected=models.F("invoice_payments") + models.F("debits"))
                & Q(
                    payable=models.F("collected")
                    - models.F("agent_commission")
                    - models.F("operator_commission")
                ),
                name="%(app_label)s_%(class)s_totals_add_up",
                violation_error_message="collected = invoice payments + debits; payable = "
                "collected - commissions.",
            ),
        ]

    def __str__(self) -> str:
        return f"settlement {self.period} brand {self.brand_id} ({self.status})"


class SettlementItem(models.Model):
    """One amount a settlement counts: an allocation to an invoice, or a write-off."""

    class Kind(models.TextChoices):
        INVOICE_PAYMENT = "invoice_payment", "Paid to an invoice"
        DEBIT = "debit", "Write-off for the brand"

    settlement = models.ForeignKey(Settlement, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    allocation = models.OneToOneField(
        "invoicing.InvoiceAllocation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    transaction = models.OneToOneField(
        "ledger.Transaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    amount = models.DecimalField(**MONEY)
    agent_commission = models.DecimalField(**MONEY, default=Decimal("0"))
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    kind="invoice_payment", allocation__isnull=False, transaction__isnull=True
                )
                | Q(kind="debit", allocation__isnull=True, transaction__isnull=False),
                name="%(app_label)s_%(class)s_one_source",
                violation_error_message="An item is an allocation or a write-off.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"
