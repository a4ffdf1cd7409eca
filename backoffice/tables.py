"""django-tables2 tables of the cross-app lists."""

from __future__ import annotations

import django_tables2 as tables
from django.utils.translation import gettext_lazy as _

from accounts.models import Client


class ClientTable(tables.Table):
    name = tables.LinkColumn("backoffice:client", args=[tables.A("pk")], verbose_name=_("Name"))
    kind = tables.Column(verbose_name=_("Kind"))
    tax_id = tables.Column(verbose_name=_("Tax id"))
    phone = tables.Column(verbose_name=_("Phone"))
    email = tables.Column(verbose_name=_("E-mail"))
    status = tables.Column(verbose_name=_("Status"))
    created_at = tables.DateTimeColumn(verbose_name=_("Created"), short=True)

    class Meta:
        model = Client
        fields = ("name", "kind", "tax_id", "phone", "email", "status", "created_at")
        attrs = {"class": "table table-sm table-hover", "id": "clients-table"}
        order_by = ("name",)
