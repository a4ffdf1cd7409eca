"""Admin for invoicing. Invoices are written by the services (runs, recalculation,
allocation): here they are read, and their PDF downloaded."""

from django.contrib import admin, messages
from django.http import HttpRequest

from core.audit.admin import AuditHistoryMixin
from core.audit.history import RelatedEvents
from core.errors import DomainError
from core.sheets import SheetAdminMixin
from invoicing import services
from invoicing.admin_pdf import InvoicePdfAdminMixin
from invoicing.models import (
    BillingPeriod,
    Invoice,
    InvoiceLine,
    InvoiceRun,
    InvoiceRunFailure,
    Meter,
    MeterReading,
    PenaltyPolicy,
    Subscription,
    Tariff,
    TariffTier,
    TariffTierEvent,
    UsageRecord,
)
from invoicing.resources import MeterReadingResource, SubscriptionResource, TariffResource


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


# --------------------------------------------------------------------------- rating inputs,
# runs and configuration. Everything that bills is read-only here: writes go through the
# services (the API, the management commands, the actions below call the same ones).


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class TariffTierInline(admin.TabularInline):
    model = TariffTier
    fields = ["position", "from_quantity", "up_to", "price"]
    readonly_fields = fields
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Tariff)
class TariffAdmin(AuditHistoryMixin, SheetAdminMixin, ReadOnlyAdmin):
    resource_classes = [TariffResource]
    import_permissions = ("invoicing.add_tariff",)
    list_display = [
        "id",
        "service",
        "plan",
        "kind",
        "price",
        "minimum_charge",
        "valid_from",
        "valid_to",
    ]
    list_filter = ["kind", "service__brand"]
    search_fields = ["plan", "service__code", "service__name"]
    list_select_related = ["service__brand"]
    inlines = [TariffTierInline]
    audit_related = (
        RelatedEvents(TariffTierEvent, "tariff", subject=lambda event: f"tier {event.position}"),
    )


@admin.register(Subscription)
class SubscriptionAdmin(SheetAdminMixin, ReadOnlyAdmin):
    resource_classes = [SubscriptionResource]
    import_permissions = ("invoicing.add_subscription", "invoicing.change_subscription")
    list_display = ["id", "account", "service", "tariff", "starts_on", "ends_on"]
    list_filter = ["service__brand"]
    search_fields = ["=account__number"]
    list_select_related = ["account", "service", "tariff"]
    raw_id_fields = ["account", "service", "tariff"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "account", "service", "quantity", "occurred_at", "source"]
    search_fields = ["=external_id", "=account__number"]
    list_select_related = ["account", "service"]
    raw_id_fields = ["account", "service"]


@admin.register(Meter)
class MeterAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "service", "serial", "digits", "installed_at", "removed_at"]
    search_fields = ["=serial", "=account__number"]
    list_select_related = ["account", "service"]
    raw_id_fields = ["account", "service"]


@admin.register(MeterReading)
class MeterReadingAdmin(SheetAdminMixin, ReadOnlyAdmin):
    resource_classes = [MeterReadingResource]
    import_permissions = ("invoicing.add_meterreading",)
    list_display = ["external_id", "meter", "account", "reading", "consumption", "taken_at"]
    search_fields = ["=external_id", "=account__number"]
    list_select_related = ["account", "meter"]
    raw_id_fields = ["account", "meter", "service"]


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyAdmin):
    list_display = ["code", "starts_on", "ends_on", "status", "closed_at"]
    list_filter = ["status"]
    actions = ["close_periods"]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("invoicing.change_billingperiod")

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("invoicing.close_billingperiod")

    @admin.action(
        description="Close the selected periods (billed days keep their prices)",
        permissions=["close"],
    )
    def close_periods(self, request: HttpRequest, queryset) -> None:
        for period in queryset:
            services.billing_period_close(period=period)
        self.message_user(request, f"{queryset.count()} period(s) closed.")


class InvoiceRunFailureInline(admin.TabularInline):
    model = InvoiceRunFailure
    fields = ["account", "brand", "code", "message", "created_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


@admin.register(InvoiceRun)
class InvoiceRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "period",
        "brand",
        "mode",
        "status",
        "progress",
        "failed",
        "invoices_issued",
        "adjustments_issued",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "mode", "brand"]
    list_select_related = ["period", "brand"]
    readonly_fields = [f.name for f in InvoiceRun._meta.fields] + ["progress"]
    inlines = [InvoiceRunFailureInline]
    actions = ["approve_runs", "resume_runs"]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and request.user.has_perm("invoicing.approve_invoicerun")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("invoicing.approve_invoicerun")

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("invoicing.add_invoicerun")

    @admin.display(description="progress")
    def progress(self, run: InvoiceRun) -> str:
        if not run.total:
            return "–"
        return f"{run.processed}/{run.total} ({100 * run.processed // run.total}%)"

    @admin.action(
        description="Approve the selected draft runs (issue their invoices)",
        permissions=["approve"],
    )
    def approve_runs(self, request: HttpRequest, queryset) -> None:
        for run in queryset:
            try:
                services.invoice_run_approve(run=run, approved_by=request.user)
            except DomainError as exc:
                self.message_user(request, f"Run {run.pk}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"Run {run.pk}: approved; issuing in the background.")

    @admin.action(
        description="Resume the selected runs (enqueue their unfinished chunks again)",
        permissions=["resume"],
    )
    def resume_runs(self, request: HttpRequest, queryset) -> None:
        for run in queryset:
            count = services.invoice_run_resume(run=run)
            self.message_user(request, f"Run {run.pk}: {count} task(s) enqueued.")


@admin.register(PenaltyPolicy)
class PenaltyPolicyAdmin(admin.ModelAdmin):
    list_display = ["brand", "daily_rate_percent", "grace_days", "cap_percent", "is_active"]

    def save_model(self, request: HttpRequest, obj: PenaltyPolicy, form, change: bool) -> None:
        policy = services.penalty_policy_set(
            brand=obj.brand_id,
            daily_rate_percent=obj.daily_rate_percent,
            grace_days=obj.grace_days,
            cap_percent=obj.cap_percent,
            is_active=obj.is_active,
        )
        obj.pk = policy.pk
