"""Forms of payment intake in the staff UI: a registry upload, a suspense item's
assignment to an account or its return to the payer."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from core.forms import TextGuardedForm
from payments.models import PaymentAgent


class RegistryUploadForm(TextGuardedForm, forms.Form):
    agent = forms.ModelChoiceField(
        label=_("Payment agent"),
        queryset=PaymentAgent.objects.filter(active=True),
        to_field_name="code",
    )
    file = forms.FileField(label=_("Registry file"))


class _Keyed(TextGuardedForm, forms.Form):
    """A hidden idempotency key drawn when the form is first shown: a double click posts once."""

    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)

    @property
    def key(self) -> str:
        return f"ui:{self.cleaned_data['idempotency_key']}"


class SuspenseAssignForm(_Keyed):
    account_number = forms.CharField(label=_("Account number"), max_length=40)


class SuspenseReturnForm(_Keyed):
    reason = forms.CharField(label=_("Reason"), max_length=500)
