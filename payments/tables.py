"""Tables of payment intake in the staff UI (django-tables2)."""

import django_tables2 as tables
from django.utils.translation import gettext_lazy as _

from payments.models import PaymentAgent, Registry, SuspenseItem

MONEY = {"td": {"class": "money text-end"}}


class PaymentAgentTable(tables.Table):
    code = tables.Column(verbose_name=_("Code"))
    name = tables.Column(verbose_name=_("Name"))
    format = tables.Column(verbose_name=_("Format"))
    commission_rate = tables.Column(verbose_name=_("Commission, %"), attrs=MONEY)
    currency = tables.Column(verbose_name=_("Currency"))
    active = tables.BooleanColumn(verbose_name=_("Active"))

    class Meta:
        model = PaymentAgent
        fields = ("code", "name", "format", "commission_rate", "currency", "active")
        attrs = {"class": "table table-sm table-hover", "id": "agents-table"}


class RegistryTable(tables.Table):
    id = tables.LinkColumn("payments:registry", args=[tables.A("pk")], verbose_name="#")
    agent = tables.Column(verbose_name=_("Agent"), accessor="agent__code")
    file_name = tables.Column(verbose_name=_("File"))
    status = tables.Column(verbose_name=_("Status"))
    rows = tables.Column(verbose_name=_("Rows"))
    total_amount = tables.Column(verbose_name=_("Total"), attrs=MONEY)
    posted_amount = tables.Column(verbose_name=_("Posted"), attrs=MONEY)
    suspense_amount = tables.Column(verbose_name=_("To suspense"), attrs=MONEY)
    created_at = tables.DateTimeColumn(verbose_name=_("Uploaded"), short=True)

    class Meta:
        model = Registry
        fields = (
            "id",
            "agent",
            "file_name",
            "status",
            "rows",
            "total_amount",
            "posted_amount",
            "suspense_amount",
            "created_at",
        )
        attrs = {"class": "table table-sm table-hover", "id": "registries-table"}


AGE = "{% load i18n %}{% with days=record.received_at|timesince %}{{ days }}{% endwith %}"


class SuspenseTable(tables.Table):
    id = tables.LinkColumn("payments:suspense_item", args=[tables.A("pk")], verbose_name="#")
    received_at = tables.DateTimeColumn(verbose_name=_("Received"), short=True)
    age = tables.TemplateColumn(AGE, verbose_name=_("Age"), orderable=False)
    account_number = tables.Column(verbose_name=_("Account number"))
    payer = tables.Column(verbose_name=_("Payer"))
    amount = tables.Column(verbose_name=_("Amount"), attrs=MONEY)
    currency = tables.Column(verbose_name=_("Currency"))
    reason = tables.Column(verbose_name=_("Reason"))
    status = tables.Column(verbose_name=_("Status"))

    class Meta:
        model = SuspenseItem
        fields = (
            "id",
            "received_at",
            "age",
            "account_number",
            "payer",
            "amount",
            "currency",
            "reason",
            "status",
        )
        attrs = {"class": "table table-sm table-hover", "id": "suspense-table"}
