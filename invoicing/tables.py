import django_tables2 as tables
from django.utils.translation import gettext_lazy as _

from core.ui import format_money
from invoicing.models import Invoice, InvoiceRun

PDF_LINK = (
    '<a href="{% url \'invoicing:invoice_pdf\' record.pk %}" data-pdf="{{ record.pk }}">PDF</a>'
)


class InvoiceTable(tables.Table):
    number = tables.LinkColumn(
        "invoicing:invoice", args=[tables.A("pk")], verbose_name=_("Number"), empty_values=()
    )
    account = tables.Column(verbose_name=_("Account"), accessor="account__number")
    brand = tables.Column(verbose_name=_("Brand"), accessor="brand__name")
    period = tables.Column(verbose_name=_("Period"), accessor="period__code")
    kind = tables.Column(verbose_name=_("Kind"))
    status = tables.Column(verbose_name=_("Status"))
    total = tables.Column(verbose_name=_("Total"), attrs={"td": {"class": "money"}})
    paid_amount = tables.Column(verbose_name=_("Paid"), attrs={"td": {"class": "money"}})
    due_date = tables.DateColumn(verbose_name=_("Due"), short=True)
    pdf = tables.TemplateColumn(
        PDF_LINK,
        verbose_name="",
        orderable=False,
    )

    class Meta:
        model = Invoice
        fields = ("number", "account", "brand", "period", "kind", "status", "total")
        sequence = (
            "number",
            "account",
            "brand",
            "period",
            "kind",
            "status",
            "total",
            "paid_amount",
            "due_date",
            "pdf",
        )
        attrs = {"class": "table table-sm table-hover", "id": "invoices-table"}
        order_by = ("-id",)

    def render_number(self, value, record):
        return value or f"#{record.pk}"

    def render_total(self, value, record):
        return format_money(value, record.currency)

    def render_paid_amount(self, value, record):
        return format_money(value, record.currency)


class InvoiceRunTable(tables.Table):
    id = tables.LinkColumn("invoicing:run", args=[tables.A("pk")], verbose_name="#")
    period = tables.Column(verbose_name=_("Period"), accessor="period__code")
    brand = tables.Column(verbose_name=_("Brand"), accessor="brand__name", default=_("all"))
    mode = tables.Column(verbose_name=_("Mode"))
    status = tables.Column(verbose_name=_("Status"))
    processed = tables.TemplateColumn(
        "{{ record.processed }} / {{ record.total }}", verbose_name=_("Accounts")
    )
    failed = tables.Column(verbose_name=_("Failed"))
    invoices_issued = tables.Column(verbose_name=_("Invoices"))
    created_at = tables.DateTimeColumn(verbose_name=_("Started"), short=True)

    class Meta:
        model = InvoiceRun
        fields = (
            "id",
            "period",
            "brand",
            "mode",
            "status",
            "processed",
            "failed",
            "invoices_issued",
            "created_at",
        )
        attrs = {"class": "table table-sm table-hover", "id": "runs-table"}
        order_by = ("-id",)
