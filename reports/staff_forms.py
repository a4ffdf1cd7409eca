"""Filter forms of the standard reports in the staff UI (the API's query parameters)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.forms import TextGuardedForm

CURRENCY = forms.RegexField(regex=r"^[A-Z]{3}$", required=False, label=_("Currency"), max_length=3)


class PeriodForm(TextGuardedForm, forms.Form):
    date_from = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        today = timezone.localdate()
        self.fields["date_from"].initial = today.replace(day=1)
        self.fields["date_to"].initial = today

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", _("The period ends before it starts."))
        if start and end and end - start > timedelta(days=366):
            self.add_error("date_to", _("At most a year at a time."))
        return data


class TurnoverForm(PeriodForm):
    group_by = forms.ChoiceField(
        label=_("Group by"),
        choices=[("account", _("Account")), ("brand", _("Brand")), ("service", _("Service"))],
        initial="account",
    )
    brand = forms.IntegerField(label=_("Brand id"), required=False, min_value=1)
    currency = CURRENCY


class RevenueForm(PeriodForm):
    brand = forms.IntegerField(label=_("Brand id"), required=False, min_value=1)


class SettlementsForm(PeriodForm):
    commission = forms.DecimalField(
        label=_("Commission, %"), required=False, min_value=0, max_value=100, decimal_places=2
    )


class StatementForm(PeriodForm):
    account = forms.CharField(label=_("Account number"), max_length=40)


class DebtAgingForm(TextGuardedForm, forms.Form):
    at = forms.DateField(
        label=_("At the end of"), widget=forms.DateInput(attrs={"type": "date"}), required=False
    )
    currency = CURRENCY
