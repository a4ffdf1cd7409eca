"""Forms of the accounts admin: account creation and limits, block reasons."""

from decimal import Decimal

from django import forms
from django.conf import settings

from accounts.maker_checker import credit_limit_needs_approval, credit_limit_refusal_at_creation
from accounts.models import Account
from accounts.services import LIMIT_FIELDS
from core.forms import TextGuardedForm


class AccountAdminForm(forms.ModelForm):
    """What staff may set on a client account; saved through ``accounts.services``."""

    class Meta:
        model = Account
        fields = [
            "client",
            "currency",
            "parent",
            "name",
            "brands",
            "credit_limit",
            "credit_period_days",
            "credit_expires_at",
            "write_off_limit_transaction",
            "write_off_limit_day",
            "write_off_limit_month",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "currency" in self.fields and not self.instance.pk:
            self.fields["currency"].initial = settings.BILLING_DEFAULT_CURRENCY
        if "client" in self.fields:
            self.fields["client"].required = True

    def clean(self):
        cleaned = super().clean()
        parent = cleaned.get("parent")
        if parent is not None and parent.is_system:
            self.add_error("parent", "A system account cannot be a payer.")
        self._clean_credit_limit_raise(cleaned)
        return cleaned

    def _clean_credit_limit_raise(self, cleaned: dict) -> None:
        """A raise that waits for approval is saved on its own; none on a new account."""
        new = cleaned.get("credit_limit")
        if not self.instance.pk:
            if credit_limit_needs_approval(current=Decimal("0.00"), new=new):
                self.add_error("credit_limit", credit_limit_refusal_at_creation())
            return
        if "credit_limit" not in self.changed_data or not credit_limit_needs_approval(
            current=self.instance.credit_limit, new=new
        ):
            return
        mixed = sorted({"parent", "brands"} & set(self.changed_data))
        if mixed:
            self.add_error(
                "credit_limit",
                "This raise of the credit limit waits for a second person's approval: save it "
                f"without changing {' or '.join(mixed)}, and change those separately.",
            )

    def service_changes(self) -> dict:
        """The changed limit fields and label, as keyword arguments for ``account_update``."""
        editable = LIMIT_FIELDS | {"name"}
        return {name: self.cleaned_data[name] for name in self.changed_data if name in editable}


class ReasonForm(TextGuardedForm, forms.Form):
    """The reason an admin action asks for (blocking an account, reversing a transaction)."""

    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 60}))

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason
