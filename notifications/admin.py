"""The email outbox in the admin: read-only rows, a resend action."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.models import EmailMessage
from notifications.services import email_resend


@admin.register(EmailMessage)
class EmailMessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "to",
        "subject",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "created_at",
    ]
    list_filter = ["status", "subject_type"]
    search_fields = ["to", "subject", "key", "=subject_id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in EmailMessage._meta.fields]
    actions = ["resend"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.resend_emailmessage")

    @admin.action(description="Send again now", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[EmailMessage]) -> None:
        count = 0
        for message in queryset.order_by("pk"):
            email_resend(message=message)
            count += 1
        self.message_user(request, f"{count} message(s) queued to send again.", messages.SUCCESS)
