"""Forms of the accounts admin: account creation and limits, block reasons."""

from django import forms
from django.conf import settings

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
        return cleaned

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
