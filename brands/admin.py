"""Admin for the operator's brands and their service catalogue (reference data)."""

from django.contrib import admin

from brands.models import Brand, Service
from core.audit.admin import AuditHistoryMixin


class ServiceInline(admin.TabularInline):
    model = Service
    fields = ("code", "name", "unit", "vat_rate", "is_active")
    extra = 0
    show_change_link = True

    def has_delete_permission(self, request, obj=None):
        return False  # services are referenced by the ledger: deactivate instead


@admin.register(Brand)
class BrandAdmin(AuditHistoryMixin, admin.ModelAdmin):
    list_display = (
        "code",
        "name",
        "legal_name",
        "tax_id",
        "kpp",
        "invoice_prefix",
        "default_vat_rate",
        "is_active",
    )
    list_filter = ("is_active", "default_vat_rate")
    search_fields = ("code", "name", "legal_name", "=tax_id")
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("code", "name", "legal_name", "is_active", "created_at")}),
        ("Registration", {"fields": ("tax_id", "kpp", "ogrn", "address")}),
        (
            "Bank details",
            {"fields": ("bank_name", "bank_bik", "bank_account", "bank_correspondent_account")},
        ),
        ("Invoicing", {"fields": ("invoice_prefix", "default_vat_rate")}),
    )
    inlines = (ServiceInline,)

    def has_delete_permission(self, request, obj=None):
        return False  # brands own accounts and ledger history: deactivate instead


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "brand", "unit", "vat_rate", "is_active")
    list_filter = ("brand", "vat_rate", "is_active")
    search_fields = ("code", "name", "brand__code", "brand__name")
    list_select_related = ("brand",)
    readonly_fields = ("created_at",)

    def has_delete_permission(self, request, obj=None):
        return False
