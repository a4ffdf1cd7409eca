import django_tables2 as tables
from django.utils.translation import gettext_lazy as _

from approvals.models import ApprovalRequest
from core.ui import format_money


class ApprovalRequestTable(tables.Table):
    id = tables.LinkColumn("approvals:request", args=[tables.A("pk")], verbose_name="#")
    kind = tables.Column(verbose_name=_("Kind"))
    summary = tables.Column(verbose_name=_("What"))
    amount = tables.Column(verbose_name=_("Amount"), attrs={"td": {"class": "money"}})
    maker = tables.Column(verbose_name=_("Asked by"), accessor="maker__username")
    status = tables.Column(verbose_name=_("Status"))
    created_at = tables.DateTimeColumn(verbose_name=_("Asked"), short=True)
    expires_at = tables.DateTimeColumn(verbose_name=_("Expires"), short=True)

    class Meta:
        model = ApprovalRequest
        fields = ("id", "kind", "summary", "amount", "maker", "status", "created_at", "expires_at")
        attrs = {"class": "table table-sm table-hover", "id": "approvals-table"}
        order_by = ("-id",)

    def render_amount(self, value, record):

        return format_money(value, record.currency)
