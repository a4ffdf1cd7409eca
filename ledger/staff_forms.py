"""The staff UI's posting forms: one per move, each calling one ledger service (or filing a
maker-checker request for the moves that need a second person) as the signed-in user.

A form carries a hidden idempotency key drawn when it is first shown, so the review
step, the confirmation and any double submit post at most once.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Account
from approvals.models import ApprovalRequest
from brands.models import Brand, Service
from core.caller import Caller
from core.forms import TextGuardedForm
from core.ui import format_money
from ledger import maker_checker, services
from ledger.models import Hold, Transaction

Result = Transaction | Hold | ApprovalRequest


def new_key() -> str:
    return uuid.uuid4().hex


class OperationForm(TextGuardedForm, forms.Form):
    """The amount, a memo and the idempotency key; subclasses add their fields."""

    operation = ""
    title: Any = ""
    permission = ""
    amount = forms.DecimalField(
        label=_("Amount"), max_digits=18, decimal_places=2, min_value=Decimal("0.01")
    )
    memo = forms.CharField(label=_("Memo"), max_length=500, required=False)
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_key())

    @property
    def key(self) -> str:
        return f"ui:{self.cleaned_data['idempotency_key']}"

    def summary(self) -> list[tuple[Any, Any]]:
        """What the confirmation step shows: (label, value) of every filled field."""
        rows = []
        for name, field in self.fields.items():
            if isinstance(field.widget, forms.HiddenInput):
                continue
            value = self.cleaned_data.get(name)
            if value in (None, ""):
                continue
            if isinstance(value, Decimal):
                value = format_money(value, self.account.currency)
            elif isinstance(value, Account):
                value = value.number
            elif isinstance(field, forms.ChoiceField) and not isinstance(
                field, forms.ModelChoiceField
            ):
                value = dict(field.choices).get(value, value)
            rows.append((field.label, value))
        return rows

    def execute(self, caller: Caller) -> Result:
        raise NotImplementedError


class ChannelMixin(forms.Form):
    channel = forms.ChoiceField(
        label=_("Channel"), choices=Account.Channel.choices, initial=Account.Channel.BANK
    )


class PaymentForm(ChannelMixin, OperationForm):
    operation = "payment"
    title = _("Post a payment")
    permission = "ledger.post_payment"

    def execute(self, caller: Caller) -> Result:
        data = self.cleaned_data
        return services.payment_post(
            account=self.account.pk,
            amount=data["amount"],
            channel=data["channel"],
            memo=data["memo"],
            currency=self.account.currency,
            caller=caller,
            idempotency_key=self.key,
        )


class ChargeFields(forms.Form):
    brand = forms.ModelChoiceField(label=_("Brand"), queryset=Brand.objects.none())
    service = forms.ModelChoiceField(
        label=_("Service"), queryset=Service.objects.none(), required=False
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        brands = Brand.objects.filter(is_active=True).order_by("name")
        self.fields["brand"].queryset = brands
        self.fields["service"].queryset = (
            Service.objects.filter(is_active=True, brand__in=brands)
            .select_related("brand")
            .order_by("brand__name", "name")
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        brand, service = cleaned.get("brand"), cleaned.get("service")
        if brand is not None and service is not None and service.brand_id != brand.pk:
            self.add_error("service", _("This service belongs to another brand."))
        return cleaned


class _ChargeForm(ChargeFields, OperationForm):
    """A write-off for a brand (and service) on this account: ``post`` is the ledger service."""

    post: Any = None

    def execute(self, caller: Caller) -> Result:
        data = self.cleaned_data
        return type(self).post(
            account=self.account.pk,
            amount=data["amount"],
            brand=data["brand"],
            service=data["service"],
            memo=data["memo"],
            currency=self.account.currency,
            caller=caller,
            idempotency_key=self.key,
        )


class DebitForm(_ChargeForm):
    operation = "debit"
    title = _("Debit (write-off)")
    permission = "ledger.post_debit"
    post = staticmethod(services.debit_post)


class HoldForm(_ChargeForm):
    operation = "hold"
    title = _("Hold (reserve funds)")
    permission = "ledger.post_hold"
    post = staticmethod(services.hold_create)


class RefundForm(ChannelMixin, OperationForm):
    operation = "refund"
    title = _("Refund")
    permission = "ledger.post_refund"

    def execute(self, caller: Caller) -> Result:
        data = self.cleaned_data
        arguments = {
            "account": self.account.pk,
            "amount": data["amount"],
            "channel": data["channel"],
            "memo": data["memo"],
            "currency": self.account.currency,
            "caller": caller,
            "idempotency_key": self.key,
        }
        if maker_checker.refund_needs_approval(data["amount"]):
            return maker_checker.refund_request(**arguments)
        return services.refund_post(**arguments)


class TransferForm(OperationForm):
    operation = "transfer"
    title = _("Transfer to another account")
    permission = "ledger.post_transfer"
    to_account = forms.CharField(label=_("To account number"), max_length=20)

    field_order = ["to_account", "amount", "memo"]

    def clean_to_account(self) -> Account:
        number = self.cleaned_data["to_account"].strip()
        target = Account.objects.filter(number=number, kind=Account.Kind.CLIENT).first()
        if target is None:
            raise forms.ValidationError(_("No client account has this number."))
        if target.pk == self.account.pk:
            raise forms.ValidationError(_("Choose another account than this one."))
        return target

    def execute(self, caller: Caller) -> Result:
        data = self.cleaned_data
        return services.transfer_post(
            from_account=self.account.pk,
            to_account=data["to_account"].pk,
            amount=data["amount"],
            memo=data["memo"],
            currency=self.account.currency,
            caller=caller,
            idempotency_key=self.key,
        )


class AdjustmentForm(OperationForm):
    """Always filed for a second person's approval (maker-checker)."""

    operation = "adjustment"
    title = _("Adjustment (needs approval)")
    permission = "ledger.post_adjustment"
    DIRECTIONS = [("credit", _("Credit the client (+)")), ("debit", _("Debit the client (−)"))]
    direction = forms.ChoiceField(label=_("Direction"), choices=DIRECTIONS)

    field_order = ["direction", "amount", "memo"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["memo"].required = True
        self.fields["memo"].label = _("Reason")

    def execute(self, caller: Caller) -> Result:
        data = self.cleaned_data
        signed = data["amount"] if data["direction"] == "credit" else -data["amount"]
        return maker_checker.adjustment_request(
            account=self.account.pk,
            amount=signed,
            reason=data["memo"],
            caller=caller,
            idempotency_key=self.key,
        )


OPERATIONS: dict[str, type[OperationForm]] = {
    form.operation: form
    for form in (PaymentForm, DebitForm, HoldForm, RefundForm, TransferForm, AdjustmentForm)
}


class ReverseForm(TextGuardedForm, forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=500)
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_key())

    def execute(self, transaction_obj: Transaction, caller: Caller) -> Transaction:
        return services.transaction_reverse(
            transaction_obj=transaction_obj.pk,
            reason=self.cleaned_data["reason"],
            caller=caller,
            idempotency_key=f"ui:{self.cleaned_data['idempotency_key']}",
        )


class HoldSettleForm(TextGuardedForm, forms.Form):
    """Capture (fully, or ``amount``) or void a hold."""

    amount = forms.DecimalField(
        label=_("Amount to capture (empty: all of it)"),
        max_digits=18,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
    )
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, action: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = action
        if action != "capture":
            del self.fields["amount"]
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_key())

    def execute(self, hold: Hold, caller: Caller) -> Transaction | Hold:
        key = f"ui:{self.cleaned_data['idempotency_key']}"
        if self.action == "capture":
            return services.hold_capture(
                hold=hold.pk,
                amount=self.cleaned_data.get("amount"),
                caller=caller,
                idempotency_key=key,
            )
        return services.hold_void(hold=hold.pk, caller=caller, idempotency_key=key)
