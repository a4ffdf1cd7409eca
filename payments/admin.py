"""Admin of payment intake: agents and layouts, registry import (upload, preview, apply),
claimed agent payments, and the suspense queue (age, totals, assign, return).

Every money move calls ``payments.services``; a refusal is a message, never a 500.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.admin import action_with_reason
from accounts.models import Account
from core.caller import Caller
from core.errors import DomainError
from payments import (  # noqa: F401  (the other two register online payments, settlements)
    admin_gateway,
    admin_settlements,
    services,
)
from payments.formats import ISO, Layout, layout_problems
from payments.models import (
    AgentPayment,
    PaymentAgent,
    PaymentRule,
    Registry,
    RegistryLayout,
    SuspenseItem,
)
from payments.reconciliation import agent_day_reconciliation, registry_reconciliation
from payments.selectors import suspense_queue_totals


def _caller(request: HttpRequest) -> Caller:
    return Caller.for_user(request.user, request_id=request.META.get("HTTP_X_REQUEST_ID", ""))


def _error_text(exc: DomainError) -> str:
    details = {k: v for k, v in exc.details.items() if k not in ("errors",)}
    return f"{exc.message} ({exc.code}{': ' + str(details) if details else ''})"


class RegistryLayoutForm(forms.ModelForm):
    class Meta:
        model = RegistryLayout
        fields = [
            "name",
            "encoding",
            "delimiter",
            "quoted",
            "decimal_separator",
            "date_format",
            "columns",
            "header_lines",
            "footer_lines",
            "control_line",
            "control_prefix",
            "control_columns",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        problems = layout_problems(
            Layout(
                name=data.get("name", ""),
                encoding=data.get("encoding", ""),
                delimiter=data.get("delimiter", ""),
                columns=data.get("columns") or {},
                quoted=data.get("quoted", False),
                decimal_separator=data.get("decimal_separator", "."),
                date_format=data.get("date_format") or ISO,
                header_lines=data.get("header_lines") or 0,
                footer_lines=data.get("footer_lines") or 0,
                control_line=data.get("control_line", "none"),
                control_prefix=data.get("control_prefix", ""),
                control_columns=data.get("control_columns") or {},
            )
        )
        for name, problem in problems.items():
            self.add_error(name, problem)
        return data


@admin.register(RegistryLayout)
class RegistryLayoutAdmin(admin.ModelAdmin):
    form = RegistryLayoutForm
    list_display = ["name", "encoding", "delimiter", "decimal_separator", "control_line"]
    search_fields = ["name"]


class PaymentAgentForm(forms.ModelForm):
    class Meta:
        model = PaymentAgent
        fields = ["code", "name", "format", "layout", "commission_rate", "currency", "active"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (data.get("format") == "custom") != (data.get("layout") is not None):
            self.add_error("layout", "Required for the custom format, and only for it.")
        return data


class ReconciliationDayForm(forms.Form):
    date = forms.DateField(help_text="The business day the registries were applied.")


@admin.register(PaymentAgent)
class PaymentAgentAdmin(admin.ModelAdmin):
    form = PaymentAgentForm
    list_display = ["code", "name", "format", "commission_rate", "currency", "active", "day_link"]
    list_filter = ["format", "active"]
    search_fields = ["code", "name"]

    @admin.display(description="")
    def day_link(self, obj: PaymentAgent) -> str:
        url = reverse("admin:payments_paymentagent_reconciliation", args=[obj.pk])
        return format_html('<a href="{}">reconciliation</a>', url)

    def get_urls(self):
        return [
            path(
                "<int:agent_id>/reconciliation/",
                self.admin_site.admin_view(self.reconciliation_view),
                name="payments_paymentagent_reconciliation",
            ),
            *super().get_urls(),
        ]

    def reconciliation_view(self, request: HttpRequest, agent_id: int):
        """The agent's day: its registries applied that business day, added up."""
        agent = PaymentAgent.objects.filter(pk=agent_id).first()
        if agent is None:
            raise Http404("No such agent.")
        if not request.user.has_perm("payments.view_registry"):
            raise PermissionDenied
        form = ReconciliationDayForm(request.GET or {"date": timezone.localdate().isoformat()})
        rec = (
            agent_day_reconciliation(agent, form.cleaned_data["date"]) if form.is_valid() else None
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reconciliation of {agent.code}",
            "opts": self.opts,
            "form": form,
            "rec": rec,
        }
        return TemplateResponse(request, "admin/payments/paymentagent/reconciliation.html", context)


class RegistryImportForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=PaymentAgent.objects.filter(active=True))
    file = forms.FileField()


@admin.register(Registry)
class RegistryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "agent",
        "file_name",
        "status",
        "rows",
        "posted",
        "posted_amount",
        "suspense",
        "suspense_amount",
        "duplicates",
        "commission",
        "error_count",
        "created_at",
    ]
    list_filter = ["status", "agent"]
    search_fields = ["file_name", "sha256"]
    exclude = ["content"]
    readonly_fields = [f.name for f in Registry._meta.fields if f.name != "content"]
    change_list_template = "admin/payments/registry/change_list.html"
    actions = ["apply_selected"]

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).defer("content").select_related("agent")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_apply_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.apply_registry")

    @admin.display(description="errors")
    def error_count(self, obj: Registry) -> int:
        return len(obj.errors)

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="payments_registry_import",
            ),
            path(
                "<int:registry_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="payments_registry_preview",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.has_apply_permission(request)}
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest):
        """Upload a file: it is previewed (stored, nothing posted) and shown for applying."""
        if not self.has_apply_permission(request):
            raise PermissionDenied
        form = RegistryImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                registry = services.registry_preview(
                    agent=form.cleaned_data["agent"],
                    file_name=upload.name,
                    content=upload.read(),
                    caller=_caller(request),
                )
            except DomainError as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
            else:
                return HttpResponseRedirect(
                    reverse("admin:payments_registry_preview", args=[registry.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a registry",
            "opts": self.opts,
            "form": form,
        }
        return TemplateResponse(request, "admin/payments/registry/import.html", context)

    def preview_view(self, request: HttpRequest, registry_id: int):
        """The preview of a registry: its figures and row errors; POST applies it."""
        registry = self.get_queryset(request).filter(pk=registry_id).first()
        if registry is None:
            raise Http404("No such registry.")
        if not self.has_view_permission(request, registry):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_apply_permission(request):
                raise PermissionDenied
            try:
                registry = services.registry_apply(registry=registry.pk, caller=_caller(request))
            except DomainError as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Applied: {registry.posted} posted ({registry.posted_amount}), "
                    f"{registry.suspense} to suspense ({registry.suspense_amount}), "
                    f"{registry.duplicates} duplicates.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Registry {registry.file_name} ({registry.agent.code})",
            "opts": self.opts,
            "registry": registry,
            "errors": registry.errors[:500],
            "reconciliation": registry_reconciliation(registry)
            if registry.status == Registry.Status.APPLIED
            else None,
            "can_apply": self.has_apply_permission(request)
            and registry.status == Registry.Status.PREVIEWED
            and not registry.errors,
        }
        return TemplateResponse(request, "admin/payments/registry/preview.html", context)

    @admin.action(description="Apply the selected previewed registries", permissions=["apply"])
    def apply_selected(self, request: HttpRequest, queryset) -> None:
        for registry in queryset.order_by("pk"):
            try:
                done = services.registry_apply(registry=registry.pk, caller=_caller(request))
            except DomainError as exc:
                self.message_user(request, f"{registry}: {_error_text(exc)}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{done}: {done.posted} posted, {done.suspense} to suspense."
                )


@admin.register(AgentPayment)
class AgentPaymentAdmin(admin.ModelAdmin):
    list_display = ["agent", "payment_id", "registry", "row", "account_number", "amount"]
    list_display += ["outcome", "transaction"]
    list_filter = ["outcome", "agent"]
    search_fields = ["payment_id", "account_number"]
    list_select_related = ["agent", "registry__agent"]
    raw_id_fields = ["registry", "transaction"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class AssignForm(forms.Form):
    account_number = forms.CharField(max_length=20, help_text="The client account to credit.")

    def clean_account_number(self) -> Account:
        number = self.cleaned_data["account_number"].strip()
        account = Account.objects.filter(number=number, kind=Account.Kind.CLIENT).first()
        if account is None:
            raise forms.ValidationError("No client account with this number.")
        return account


@admin.register(SuspenseItem)
class SuspenseItemAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "received_at",
        "age_days",
        "account_number",
        "payer",
        "amount",
        "currency",
        "reason",
        "status",
        "registry",
        "assign_link",
    ]
    list_filter = ["status", "reason", "currency"]
    search_fields = ["account_number", "payer", "raw"]
    readonly_fields = [f.name for f in SuspenseItem._meta.fields]
    change_list_template = "admin/payments/suspenseitem/change_list.html"
    actions = ["return_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.resolve_suspenseitem")

    @admin.display(description="age (days)")
    def age_days(self, obj: SuspenseItem) -> int:
        return (timezone.now() - obj.received_at).days

    @admin.display(description="")
    def assign_link(self, obj: SuspenseItem) -> str:
        if obj.status != SuspenseItem.Status.OPEN:
            return ""
        return format_html(
            '<a href="{}">assign</a>', reverse("admin:payments_suspenseitem_assign", args=[obj.pk])
        )

    def get_urls(self):
        return [
            path(
                "<int:item_id>/assign/",
                self.admin_site.admin_view(self.assign_view),
                name="payments_suspenseitem_assign",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "totals": suspense_queue_totals()}
        return super().changelist_view(request, extra_context)

    def assign_view(self, request: HttpRequest, item_id: int):
        """Assign one suspense item to a client account, by its number."""
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        item = SuspenseItem.objects.filter(pk=item_id).first()
        if item is None:
            raise Http404("No such suspense item.")
        form = AssignForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.suspense_assign(
                    item=item.pk,
                    account=form.cleaned_data["account_number"],
                    caller=_caller(request),
                )
            except DomainError as exc:
                self.message_user(request, _error_text(exc), messages.ERROR)
            else:
                self.message_user(request, f"{item} assigned.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:payments_suspenseitem_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Assign suspense item #{item.pk}",
            "opts": self.opts,
            "item": item,
            "form": form,
        }
        return TemplateResponse(request, "admin/payments/suspenseitem/assign.html", context)

    @admin.action(description="Return the selected items to their payers", permissions=["resolve"])
    def return_selected(self, request: HttpRequest, queryset):
        return action_with_reason(
            self,
            request,
            queryset,
            title="Return suspense items",
            submit="Return",
            apply=lambda item, reason: services.suspense_return(
                item=item.pk, reason=reason, caller=_caller(request)
            ),
            done="Returned",
        )


class PaymentRuleForm(forms.ModelForm):
    allowed_channels = forms.MultipleChoiceField(
        choices=Account.Channel.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    allowed_statuses = forms.MultipleChoiceField(
        choices=[("open", "Open"), ("blocked", "Blocked")],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = PaymentRule
        fields = [
            "brand",
            "client",
            "min_amount",
            "max_amount",
            "allowed_channels",
            "allowed_statuses",
            "overpayment",
        ]


@admin.register(PaymentRule)
class PaymentRuleAdmin(admin.ModelAdmin):
    """Rules are set through ``payment_rule_set``: saving one replaces the owner's active rule
    (kept, inactive, for the record)."""

    form = PaymentRuleForm
    list_display = [
        "__str__",
        "brand",
        "client",
        "min_amount",
        "max_amount",
        "allowed_channels",
        "allowed_statuses",
        "overpayment",
        "active",
    ]
    list_filter = ["active", "overpayment"]
    raw_id_fields = ["client"]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        try:
            saved = services.payment_rule_set(
                brand=data.get("brand"),
                client=data.get("client"),
                min_amount=data.get("min_amount"),
                max_amount=data.get("max_amount"),
                allowed_channels=data.get("allowed_channels") or [],
                allowed_statuses=data.get("allowed_statuses") or [],
                overpayment=data.get("overpayment"),
            )
        except DomainError as exc:
            raise forms.ValidationError(_error_text(exc)) from exc
        obj.pk = saved.pk

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except forms.ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
