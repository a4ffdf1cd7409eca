"""Staff UI forms of invoicing: start an invoice run, upload usage or meter readings."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from brands.models import Brand
from core.forms import TextGuardedForm
from invoicing.models import InvoiceRun

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class RunStartForm(TextGuardedForm, forms.Form):
    period = forms.RegexField(
        label=_("Period (YYYY-MM)"), regex=r"^\d{4}-(0[1-9]|1[0-2])$", max_length=7
    )
    brand = forms.ModelChoiceField(
        label=_("Brand"),
        queryset=Brand.objects.none(),
        required=False,
        empty_label=_("All brands"),
    )
    mode = forms.ChoiceField(
        label=_("Mode"),
        choices=[
            (InvoiceRun.Mode.ISSUE, _("Issue the invoices")),
            (InvoiceRun.Mode.DRAFT, _("Draft: approve before issuing")),
        ],
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["brand"].queryset = Brand.objects.filter(is_active=True).order_by("name")


class UploadForm(TextGuardedForm, forms.Form):
    KINDS = [("usage", _("Usage records")), ("readings", _("Meter readings"))]
    kind = forms.ChoiceField(label=_("File of"), choices=KINDS)
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "Usage: account, service, quantity, occurred_at, external_id[, source]. "
            "Readings: account, service, reading, taken_at, external_id[, meter, source]."
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 50 MB."))
        return upload
