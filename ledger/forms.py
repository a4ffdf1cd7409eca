"""Forms that move money from the admin; each one calls a ledger service and nothing else.

Adjustments and refunds above ``BILLING_APPROVAL_REFUND_ABOVE`` are not posted:
they are filed for a second person's approval (``ledger.maker_checker``).
"""

from __future__ import annotations

from decimal import Decimal

from django import forms

from accounts.models import Account
from approvals.models import ApprovalRequest
from brands.models import Brand, Service
from core.forms import TextGuardedForm
from ledger import maker_checker, services
from ledger.models import Transaction


class PostingForm(TextGuardedForm, forms.Form):
    """Post a payment, debit, refund or manual adjustment on one account.

    The hidden idempotency key is drawn when the form is shown, so submitting
    the same form twice (a double click, a browser retry) posts once.
    """

    OPERATIONS = [
        ("payment", "Payment received (+)"),
        ("debit", "Debit / write-off (-)"),
        ("refund", "Refund to the client (-); a large one is sent for approval"),
        ("adjustment_credit", "Adjustment: credit the client (+), sent for approval"),
        ("adjustment_debit", "Adjustment: debit the client (-), sent for approval"),
    ]
    # The permission each operation needs: the same one the API checks for it.
    PERMISSIONS = {
        "payment": "ledger.post_payment",
        "debit": "ledger.post_debit",
        "refund": "ledger.post_refund",
        "adjustment_credit": "ledger.post_adjustment",
        "adjustment_debit": "ledger.post_adjustment",
    }

    operation = forms.ChoiceField(choices=OPERATIONS)
    amount = forms.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    channel = forms.ChoiceField(
        choices=Account.Channel.choices,
        initial=Account.Channel.BANK,
        required=False,
        help_text="For payments and refunds.",
    )
    brand = forms.ModelChoiceField(
        queryset=Brand.objects.filter(is_active=True), required=False, help_text="For debits."
    )
    service = forms.ModelChoiceField(
        queryset=Service.objects.filter(is_active=True).select_related("brand"),
        required=False,
        help_text="Optional, for debits; must belong to the brand.",
    )
    memo = forms.CharField(
        max_length=500,
        required=False,
        label="Memo / reason",
        help_text="Required for adjustments.",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, user=None, **kwargs):
        """Offers only the operations ``user`` holds the permission for (all without a user)."""
        super().__init__(*args, **kwargs)
        if user is not None:
            self.fields["operation"].choices = [
                (value, label)
                for value, label in self.OPERATIONS
                if user.has_perm(self.PERMISSIONS[value])
            ]

    @classmethod
    def allowed_for(cls, user) -> bool:
        """Whether ``user`` may post at least one of the operations."""
        return any(user.has_perm(perm) for perm in set(cls.PERMISSIONS.values()))

    def clean(self):
        cleaned = super().clean()
        operation = cleaned.get("operation")
        if operation in ("payment", "refund") and not cleaned.get("channel"):
            self.add_error("channel", "Choose the payment channel.")
        if operation == "debit":
            brand, service = cleaned.get("brand"), cleaned.get("service")
            if brand is None:
                self.add_error("brand", "A debit needs the brand that earns it.")
            elif service is not None and service.brand_id != brand.pk:
                self.add_error("service", "This service belongs to another brand.")
        if operation and operation.startswith("adjustment") and not cleaned.get("memo", "").strip():
            self.add_error("memo", "An adjustment needs a reason.")
        return cleaned

    def post(self, *, account: Account, caller: services.Caller) -> Transaction | ApprovalRequest:
        """Post the operation, or file it for approval (adjustments, large refunds)."""
        data = self.cleaned_data
        operation, amount, memo = data["operation"], data["amount"], data["memo"].strip()
        key = f"admin-post:{data['idempotency_key']}"
        if operation == "payment":
            return services.payment_post(
                account=account,
                amount=amount,
                channel=data["channel"],
                memo=memo,
                caller=caller,
                idempotency_key=key,
            )
        if operation == "refund" and maker_checker.refund_needs_approval(amount):
            return maker_checker.refund_request(
                account=account,
                amount=amount,
                channel=data["channel"],
                memo=memo,
                currency=account.currency,
                caller=caller,
                idempotency_key=key,
            )
        if operation == "refund":
            return services.refund_post(
                account=account,
                amount=amount,
                channel=data["channel"],
                memo=memo,
                caller=caller,
                idempotency_key=key,
            )
        if operation == "debit":
            return services.debit_post(
                account=account,
                amount=amount,
                brand=data["brand"],
                service=data["service"],
                memo=memo,
                caller=caller,
                idempotency_key=key,
            )
        signed = amount if operation == "adjustment_credit" else -amount
        return maker_checker.adjustment_request(
            account=account, amount=signed, reason=memo, caller=caller, idempotency_key=key
        )
