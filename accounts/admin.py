"""Admin for clients and accounts.

Nothing here saves a client or an account directly: creation and edits go
through ``accounts.services`` (full validation, row locks shared with the
ledger), and domain refusals are shown as admin messages. A raise of the credit
limit above ``BILLING_APPROVAL_CREDIT_LIMIT_ABOVE`` is filed for approval
(``accounts.maker_checker``) instead of being saved. Balances and
running state are read-only. The ledger app extends the account page with
its posting form (``ledger.admin``), keeping dependencies pointing one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from import_export.admin import ImportExportMixin, ImportExportModelAdmin

from accounts.forms import AccountAdminForm, ReasonForm
from accounts.maker_checker import account_change_needs_approval, account_update_request
from accounts.models import Account, Client, PartnerClient
from accounts.resources import AccountResource, ClientResource
from accounts.services import (
    CLIENT_FIELDS,
    account_block,
    account_create,
    account_set_parent,
    account_unblock,
    account_update,
    client_create,
    client_update,
)
from approvals.notices import approval_filed_notice
from core.audit.admin import AuditHistoryMixin
from core.caller import Caller
from core.errors import DomainError

MAX_ACTION_OBJECTS = 500

# --------------------------------------------------------------------------- shared helpers


def error_text(exc: DomainError | ValidationError) -> str:
    if isinstance(exc, DomainError):
        return f"{exc.message} ({exc.code})"
    return "; ".join(exc.messages)


class DomainErrorsAsMessages:
    """Show a refusal from a service on the add/change page as a message, never a 500.

    The admin's change view runs in one database transaction; the refusal
    rolls it back, so nothing was changed when the message is shown.
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (DomainError, ValidationError) as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def action_with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    title: str,
    submit: str,
    apply: Callable[[Any, str], Any],
    done: str,
) -> TemplateResponse | None:
    """An admin action that first asks for a reason, then calls a service per object.

    Each call is its own database transaction; a refusal is reported for that
    object and changes nothing, the others go ahead.
    """
    count = queryset.count()
    if count > MAX_ACTION_OBJECTS:
        modeladmin.message_user(
            request,
            f"Select at most {MAX_ACTION_OBJECTS} objects for this action ({count} selected).",
            messages.ERROR,
        )
        return None
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        succeeded = 0
        for obj in queryset:
            try:
                apply(obj, form.cleaned_data["reason"])
                succeeded += 1
            except (DomainError, ValidationError) as exc:
                modeladmin.message_user(request, f"{obj}: {error_text(exc)}", messages.ERROR)
        if succeeded:
            modeladmin.message_user(request, f"{done}: {succeeded}.", messages.SUCCESS)
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "objects": list(queryset),
        "form": form,
        "action": request.POST.get("action", ""),
        "submit": submit,
        "select_across": request.POST.get("select_across", "0"),
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    return TemplateResponse(request, "admin/action_with_reason.html", context)


def normalized_phone(term: str) -> str | None:
    """+7XXXXXXXXXX for a Russian phone typed as 8..., 7..., +7... or 10 digits."""
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) == 11 and digits[0] in "78":
        return "+7" + digits[1:]
    if len(digits) == 10 and digits[0] == "9":
        return "+7" + digits
    return None


def admin_link(obj: Any, text: Any = None) -> str:
    if obj is None:
        return "-"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


# --------------------------------------------------------------------------- clients


class AccountInline(admin.TabularInline):
    """A read-only summary of the client's accounts."""

    model = Account
    fk_name = "client"
    fields = ("number_link", "currency", "status", "balance", "held", "credit_limit", "parent")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "accounts"

    @admin.display(description="number")
    def number_link(self, obj: Account) -> str:
        return admin_link(obj, obj.number)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("parent")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Client)
class ClientAdmin(AuditHistoryMixin, DomainErrorsAsMessages, ImportExportModelAdmin):
    resource_classes = [ClientResource]
    list_display = (
        "name",
        "kind",
        "tax_id",
        "phone",
        "email",
        "external_ref",
        "status",
        "created_at",
    )
    list_filter = ("kind", "status")
    # Free text searches the name (trigram index); numbers, phones and e-mails
    # are matched exactly on indexed columns in get_search_results.
    search_fields = ("name", "=external_ref")
    search_help_text = "Name, INN, phone, e-mail, account number or external reference."
    show_full_result_count = False
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("kind", "name", "legal_name", "status")}),
        ("Registration", {"fields": ("tax_id", "kpp", "ogrn")}),
        ("Contacts", {"fields": ("email", "phone", "address", "external_ref")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )
    inlines = (AccountInline,)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term:
            return queryset.filter(email__iexact=term), False
        digits = term.replace(" ", "").replace("-", "")
        if digits.lstrip("+").isdigit():
            condition = (
                Q(tax_id=digits)
                | Q(external_ref=term)
                | Q(Exists(Account.objects.filter(client=OuterRef("pk"), number=digits)))
            )
            phone = normalized_phone(digits)
            if phone:
                condition |= Q(phone=phone)
            return queryset.filter(condition), False
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request, obj: Client, form, change: bool) -> None:
        if change:
            fields = {name: form.cleaned_data[name] for name in form.changed_data}
            if fields:
                client_update(client=obj, **fields)
        else:
            created = client_create(**{name: getattr(obj, name) for name in CLIENT_FIELDS})
            obj.pk = created.pk
            obj.created_at = created.created_at
            obj.updated_at = created.updated_at
            obj._state.adding = False

    def has_delete_permission(self, request, obj=None):
        return False  # clients are archived through their status, never deleted

    def has_import_permission(self, request):
        return request.user.has_perms(["accounts.add_client", "accounts.change_client"])


# --------------------------------------------------------------------------- accounts


class AccountAdmin(AuditHistoryMixin, DomainErrorsAsMessages, ImportExportMixin, admin.ModelAdmin):
    form = AccountAdminForm
    resource_classes = [AccountResource]
    list_display = (
        "number",
        "client_link",
        "kind",
        "currency",
        "status",
        "balance",
        "held",
        "credit_limit",
        "parent_link",
        "created_at",
    )
    list_filter = ("kind", "status", "currency", "brands")
    search_fields = ("=number", "client__name")
    search_help_text = "Account number, client name, INN or phone."
    list_select_related = ("client", "parent")
    show_full_result_count = False
    autocomplete_fields = ("client", "parent")
    actions = ("block_accounts", "unblock_accounts")
    state_fields = (
        "balance",
        "held",
        "negative_since",
        "spent_day",
        "spent_day_on",
        "spent_month",
        "spent_month_on",
    )
    status_fields = (
        "status",
        "status_reason",
        "status_changed_at",
        "status_changed_by",
        "status_changed_by_caller",
    )
    system_fields = ("system_key", "brand", "service", "channel")
    limit_fields = (
        "credit_limit",
        "credit_period_days",
        "credit_expires_at",
        "write_off_limit_transaction",
        "write_off_limit_day",
        "write_off_limit_month",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("brands")

    def has_import_permission(self, request):
        return request.user.has_perms(["accounts.add_account", "accounts.change_account"])

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        digits = term.replace(" ", "").replace("-", "")
        if digits.lstrip("+").isdigit():
            condition = Q(number=digits) | Q(client__tax_id=digits)
            phone = normalized_phone(digits)
            if phone:
                condition |= Q(client__phone=phone)
            return queryset.filter(condition), False
        if "@" in term:
            return queryset.filter(client__email__iexact=term), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="client", ordering="client__name")
    def client_link(self, obj: Account) -> str:
        return admin_link(obj.client) if obj.client_id else obj.name

    @admin.display(description="payer")
    def parent_link(self, obj: Account) -> str:
        return admin_link(obj.parent, obj.parent.number) if obj.parent_id else "-"

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return (
                (None, {"fields": ("client", "currency", "parent", "name", "brands")}),
                ("Limits", {"fields": self.limit_fields}),
            )
        if obj.is_system:
            return (
                (None, {"fields": ("number", "kind", "currency", "name", "created_at")}),
                ("System role", {"fields": self.system_fields}),
            )
        return (
            (
                None,
                {"fields": ("number", "kind", "client", "currency", "parent", "name", "brands")},
            ),
            ("Limits", {"fields": self.limit_fields}),
            ("Funds", {"fields": self.state_fields}),
            ("Status", {"fields": self.status_fields}),
            ("Record", {"fields": ("created_at", "updated_at")}),
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        readonly = (
            "number",
            "kind",
            "client",
            "currency",
            *self.state_fields,
            *self.status_fields,
            *self.system_fields,
            "created_at",
            "updated_at",
        )
        if obj.is_system:
            readonly += ("name",)
        return readonly

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "brands":
            kwargs["widget"] = forms.CheckboxSelectMultiple
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_system:
            return False  # system accounts have nothing to edit
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # accounts are closed, never deleted

    def has_block_permission(self, request) -> bool:
        return request.user.has_perm("accounts.block_account")

    def save_model(self, request, obj: Account, form: AccountAdminForm, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = account_create(
                client=data["client"],
                currency=data["currency"],
                brands=data["brands"],
                parent=data["parent"],
                name=data["name"],
                **{name: data[name] for name in self.limit_fields},
            )
            obj.pk = created.pk
            obj.number = created.number
            obj.created_at = created.created_at
            obj.updated_at = created.updated_at
            obj._state.adding = False
            return
        changes = form.service_changes()
        if changes and account_change_needs_approval(obj, changes):
            # The form refused parent and brand changes alongside (AccountAdminForm.clean).
            request._approval_filed = account_update_request(
                account=obj, changes=changes, caller=Caller.for_user(request.user)
            )
            return
        if "parent" in form.changed_data:
            account_set_parent(account=obj, parent=data["parent"])
        brands = data["brands"] if "brands" in form.changed_data else None
        if changes or brands is not None:
            account_update(account=obj, brands=brands, **changes)

    def response_change(self, request, obj):
        filed = getattr(request, "_approval_filed", None)
        if filed is None:
            return super().response_change(request, obj)
        self.message_user(request, approval_filed_notice(filed), messages.WARNING)
        return HttpResponseRedirect(request.path)

    def save_related(self, request, form, formsets, change):
        """Brands were set by the services in ``save_model``; there is nothing else to save."""

    @admin.action(description="Block selected accounts (asks for a reason)", permissions=["block"])
    def block_accounts(self, request, queryset):
        return action_with_reason(
            self,
            request,
            queryset,
            title="Block accounts",
            submit="Block",
            apply=lambda account, reason: account_block(
                account=account, reason=reason, blocked_by=request.user
            ),
            done="Accounts blocked",
        )

    @admin.action(description="Unblock selected accounts", permissions=["block"])
    def unblock_accounts(self, request, queryset):
        succeeded = 0
        for account in queryset:
            try:
                account_unblock(account=account, unblocked_by=request.user)
                succeeded += 1
            except DomainError as exc:
                self.message_user(request, f"{account}: {error_text(exc)}", messages.ERROR)
        if succeeded:
            self.message_user(request, f"Accounts unblocked: {succeeded}.", messages.SUCCESS)


admin.site.register(Account, AccountAdmin)


@admin.register(PartnerClient)
class PartnerClientAdmin(admin.ModelAdmin):
    list_display = ["partner", "client", "created_at"]
    list_filter = ["partner"]
    raw_id_fields = ["client"]
