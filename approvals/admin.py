"""The checkers' queue in the admin: requests are read here and decided by two actions.

Requests are filed by the pages where the moves are made (the posting form of an
account, the account and brand change forms, the API); here they are listed
(pending first, with their age), read (the payload as a table) and approved or
rejected with a reason, each through ``approvals.services`` with
``approvals.approve_request``. The maker's own requests are refused with a
message, as is anything already decided or expired; nothing is ever edited or
deleted here.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Value, When
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from approvals import registry
from approvals.models import ApprovalRequest
from approvals.services import APPROVE_PERMISSION, approval_approve, approval_reject
from core.caller import Caller
from core.errors import DomainError
from core.forms import TextGuardedForm

MAX_DECISIONS = 100


def _link(obj: Any, text: Any = None) -> str:
    if obj is None:
        return "-"
    opts = obj._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(text if text is not None else obj)
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


def _error_text(exc: DomainError) -> str:
    return f"{exc.message} ({exc.code})"


def _value(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class KindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(kind.name, kind.label) for kind in registry.kinds()]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


class RejectForm(TextGuardedForm, forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 60}))

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason


PENDING_FIRST = Case(
    When(status=ApprovalRequest.Status.PENDING, then=Value(0)),
    default=Value(1),
    output_field=IntegerField(),
)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "kind_label",
        "summary",
        "maker_display",
        "status",
        "age",
        "expires_at",
        "checker_display",
        "result_link",
    )
    list_display_links = ("id", "summary")
    list_filter = ("status", KindFilter)
    list_select_related = ("maker", "checker", "target_type", "result_type")
    search_fields = ("summary", "=maker_ref")
    search_help_text = "Words of the summary, or the maker (user:<id>, partner:<id>)."
    ordering = (PENDING_FIRST.asc(), "-id")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ("approve_requests", "reject_requests")
    fieldsets = (
        (None, {"fields": ("kind_label", "summary", "status", "target_link", "amount_display")}),
        ("What will be done", {"fields": ("payload_table",)}),
        (
            "Maker",
            {"fields": ("maker_display", "created_at", "expires_at", "maker_request_id")},
        ),
        (
            "Decision",
            {
                "fields": (
                    "checker_display",
                    "decided_at",
                    "reason",
                    "result_link",
                    "error_code",
                    "error_message",
                )
            },
        ),
    )
    readonly_fields = (
        "kind_label",
        "summary",
        "status",
        "target_link",
        "amount_display",
        "payload_table",
        "maker_display",
        "created_at",
        "expires_at",
        "maker_request_id",
        "checker_display",
        "decided_at",
        "reason",
        "result_link",
        "error_code",
        "error_message",
    )

    # ----------------------------------------------------------------- columns

    @admin.display(description="kind", ordering="kind")
    def kind_label(self, obj: ApprovalRequest) -> str:
        return registry.label_of(obj.kind)

    @admin.display(description="maker", ordering="maker_ref")
    def maker_display(self, obj: ApprovalRequest) -> str:
        return f"{obj.maker} ({obj.maker_ref})" if obj.maker_id else obj.maker_ref

    @admin.display(description="checker")
    def checker_display(self, obj: ApprovalRequest) -> str:
        if not obj.checker_ref:
            return "-"
        return f"{obj.checker} ({obj.checker_ref})" if obj.checker_id else obj.checker_ref

    @admin.display(description="waiting for")
    def age(self, obj: ApprovalRequest) -> str:
        if not obj.is_pending:
            return "-"
        if obj.expires_at <= timezone.now():
            return "expired (not yet marked)"
        return timesince(obj.created_at)

    @admin.display(description="about")
    def target_link(self, obj: ApprovalRequest) -> str:
        return _link(obj.target) if obj.target_id is not None else "-"

    @admin.display(description="result")
    def result_link(self, obj: ApprovalRequest) -> str:
        if obj.result_id is None:
            return obj.error_code or "-"
        return _link(obj.result, f"{obj.result_type.model} #{obj.result_id}")

    @admin.display(description="amount")
    def amount_display(self, obj: ApprovalRequest) -> str:
        return f"{obj.amount} {obj.currency}" if obj.amount is not None else "-"

    @admin.display(description="payload")
    def payload_table(self, obj: ApprovalRequest) -> str:
        """The arguments as a table; a change shows the value before and the value asked for."""
        payload = dict(obj.payload or {})
        previous = payload.pop("previous", None)
        changes = payload.pop("changes", None)
        rows: list[tuple[str, str, str]] = []
        for name, value in payload.items():
            rows.append((name, "", _value(value)))
        if isinstance(changes, dict):
            before = previous if isinstance(previous, dict) else {}
            for name, value in changes.items():
                rows.append((name, _value(before.get(name)), _value(value)))
        body = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td><strong>{}</strong></td></tr>", rows
        )
        return format_html(
            "<table><thead><tr><th>field</th><th>now</th><th>asked for</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            body,
        )

    # ----------------------------------------------------------------- permissions

    def has_add_permission(self, request):
        return False  # requests are filed where the move is made

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or self.has_approve_permission(request)

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    # ----------------------------------------------------------------- actions

    def _too_many(self, request, queryset) -> bool:
        count = queryset.count()
        if count > MAX_DECISIONS:
            self.message_user(
                request,
                f"Decide at most {MAX_DECISIONS} requests at once ({count} selected).",
                messages.ERROR,
            )
            return True
        return False

    @admin.action(description="Approve selected requests (executes them)", permissions=["approve"])
    def approve_requests(self, request, queryset):
        if self._too_many(request, queryset):
            return
        checker = Caller.for_user(
            request.user, request_id=request.META.get("HTTP_X_REQUEST_ID", "")
        )
        approved = 0
        for item in queryset.order_by("id"):
            try:
                approval_approve(request=item.pk, checker=checker)
            except DomainError as exc:
                self.message_user(
                    request, f"Request #{item.pk}: {_error_text(exc)}", messages.ERROR
                )
            else:
                approved += 1
        if approved:
            self.message_user(
                request, f"Requests approved and executed: {approved}.", messages.SUCCESS
            )

    @admin.action(
        description="Reject selected requests (asks for a reason)", permissions=["approve"]
    )
    def reject_requests(self, request, queryset):
        if self._too_many(request, queryset):
            return None
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            checker = Caller.for_user(request.user)
            rejected = 0
            for item in queryset.order_by("id"):
                try:
                    approval_reject(
                        request=item.pk, checker=checker, reason=form.cleaned_data["reason"]
                    )
                except DomainError as exc:
                    self.message_user(
                        request, f"Request #{item.pk}: {_error_text(exc)}", messages.ERROR
                    )
                else:
                    rejected += 1
            if rejected:
                self.message_user(request, f"Requests rejected: {rejected}.", messages.SUCCESS)
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject requests",
            "opts": opts,
            "objects": list(queryset),
            "form": form,
            "action": request.POST.get("action", ""),
            "submit": "Reject",
            "select_across": request.POST.get("select_across", "0"),
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        }
        return TemplateResponse(request, "admin/action_with_reason.html", context)
