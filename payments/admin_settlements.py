"""Admin of settlements with brands: terms, statements (PDF, XLSX), payouts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.caller import Caller
from core.errors import DomainError
from payments.documents import settlement_pdf, settlement_xlsx
from payments.models import Settlement, SettlementItem, SettlementTerms
from payments.services.settlements import settlement_pay


@admin.register(SettlementTerms)
class SettlementTermsAdmin(admin.ModelAdmin):
    list_display = ["brand", "operator_commission_rate"]


class SettlementItemInline(admin.TabularInline):
    model = SettlementItem
    fields = ["at", "kind", "allocation", "transaction", "amount", "agent_commission"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    show_change_link = False


@admin.register(Settlement)
class SettlementAdmin(admin.ModelAdmin):
    list_display = [
        "period",
        "brand",
        "status",
        "collected",
        "agent_commission",
        "operator_commission",
        "payable",
        "paid_at",
        "documents",
    ]
    list_filter = ["status", "period", "brand"]
    readonly_fields = [f.name for f in Settlement._meta.fields]
    actions = ["mark_paid"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_pay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.pay_settlement")

    @admin.display(description="statement")
    def documents(self, obj: Settlement) -> str:
        return format_html(
            '<a href="{}">PDF</a> · <a href="{}">XLSX</a>',
            reverse("admin:payments_settlement_document", args=[obj.pk, "pdf"]),
            reverse("admin:payments_settlement_document", args=[obj.pk, "xlsx"]),
        )

    def get_urls(self):
        return [
            path(
                "<int:settlement_id>/statement.<str:kind>",
                self.admin_site.admin_view(self.document_view),
                name="payments_settlement_document",
            ),
            *super().get_urls(),
        ]

    def document_view(self, request: HttpRequest, settlement_id: int, kind: str):
        settlement = Settlement.objects.filter(pk=settlement_id).select_related("brand").first()
        if settlement is None or kind not in ("pdf", "xlsx"):
            raise Http404("No such statement.")
        if not self.has_view_permission(request, settlement):
            raise Http404("No such statement.")
        if kind == "pdf":
            return HttpResponse(settlement_pdf(settlement), content_type="application/pdf")
        return HttpResponse(
            settlement_xlsx(settlement),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )

    @admin.action(description="Mark the selected settlements paid out", permissions=["pay"])
    def mark_paid(self, request: HttpRequest, queryset) -> None:
        caller = Caller.for_user(request.user)
        for settlement in queryset:
            try:
                settlement_pay(
                    settlement=settlement, reference=f"admin {request.user.pk}", caller=caller
                )
            except DomainError as exc:
                self.message_user(request, f"{settlement}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{settlement}: paid out.")
