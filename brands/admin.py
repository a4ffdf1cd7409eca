"""Admin for the operator's brands and their service catalogue (reference data).

A change of an existing brand's bank details (they feed every invoice's payment
QR) is not saved: it is filed for a second person's approval
(``brands.maker_checker``) while the brand's other fields are saved as usual.
"""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect

from approvals.notices import approval_filed_notice
from brands.maker_checker import bank_details_changes, bank_details_request
from brands.models import Brand, Service
from brands.resources import ServiceResource
from brands.services import BANK_FIELDS
from core.audit.admin import AuditHistoryMixin
from core.caller import Caller
from core.sheets import SheetAdminMixin


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

    def save_model(self, request, obj: Brand, form, change: bool) -> None:
        changes = bank_details_changes(obj, form.cleaned_data) if change else {}
        if changes:
            stored = Brand.objects.get(pk=obj.pk)
            for name in BANK_FIELDS:  # the current details stay until the change is approved
                setattr(obj, name, getattr(stored, name))
        super().save_model(request, obj, form, change)
        if changes:
            request._approval_filed = bank_details_request(
                brand=obj, changes=changes, caller=Caller.for_user(request.user)
            )

    def response_change(self, request, obj):
        filed = getattr(request, "_approval_filed", None)
        if filed is None:
            return super().response_change(request, obj)
        self.message_user(request, approval_filed_notice(filed), messages.WARNING)
        return HttpResponseRedirect(request.path)


@admin.register(Service)
class ServiceAdmin(SheetAdminMixin, admin.ModelAdmin):
    resource_classes = [ServiceResource]
    import_permissions = ("brands.add_service", "brands.change_service")
    list_display = ("code", "name", "brand", "unit", "vat_rate", "is_active")
    list_filter = ("brand", "vat_rate", "is_active")
    search_fields = ("code", "name", "brand__code", "brand__name")
    list_select_related = ("brand",)
    readonly_fields = ("created_at",)

    def has_delete_permission(self, request, obj=None):
        return False
