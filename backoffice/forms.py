from django import forms
from django.utils.translation import gettext_lazy as _

from core.forms import TextGuardedForm


class HistoryFilterForm(TextGuardedForm, forms.Form):
    """The account history's date filter and keyset cursor (the last entry id seen)."""

    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    before = forms.IntegerField(min_value=1, required=False, widget=forms.HiddenInput)
