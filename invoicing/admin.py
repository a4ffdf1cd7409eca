"""Admin for invoicing. Invoices are written by the services (runs, recalculation,
allocation): here they are read, and their PDF downloaded."""

from django.contrib import admin
from django.http import HttpRequest

from invoicing.admin_pdf import InvoicePdfAdminMixin
from invoicing.models import Invoice, InvoiceLine


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fields = [
        "position",
        "service",
        "description",
        "quantity",
        "unit_price",
        "amount",
        "vat_rate",
        "vat",
        "estimated",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(InvoicePdfAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "account",
        "brand",
        "period",
        "kind",
        "status",
        "total",
        "paid_amount",
        "due_date",
        "pdf_link",
    ]
    list_filter = ["status", "kind", "brand", "period"]
    search_fields = ["=number", "=account__number"]
    list_select_related = ["account", "brand", "period"]
    readonly_fields = ["pdf_link", *(f.name for f in Invoice._meta.fields)]
    inlines = [InvoiceLineInline]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
