"""Admin of online payments: intents, the outbox of gateway calls (dead letters can be
retried), the callbacks received (forged ones too), refund sagas with their steps."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from payments.models import GatewayCall, GatewayCallback, PaymentIntent, RefundSaga, RefundSagaStep
from payments.services.gateway import gateway_call_retry
from payments.services.refunds import refund_saga_run


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(PaymentIntent)
class PaymentIntentAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "amount", "currency", "status", "created_at", "settled_at"]
    list_filter = ["status"]
    search_fields = ["order_id", "gateway_payment_id", "account__number"]
    raw_id_fields = ["account", "transaction", "suspense_item"]


@admin.register(GatewayCall)
class GatewayCallAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "intent", "saga", "status", "attempts", "next_attempt_at"]
    list_display += ["last_error"]
    list_filter = ["status", "kind"]
    actions = ["retry_dead"]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.change_gatewaycall")

    @admin.action(description="Retry the selected dead calls", permissions=["retry"])
    def retry_dead(self, request: HttpRequest, queryset) -> None:
        retried = 0
        for call in queryset.filter(status=GatewayCall.Status.DEAD):
            gateway_call_retry(call=call)
            retried += 1
        self.message_user(request, f"Queued again: {retried}.", messages.SUCCESS)


@admin.register(GatewayCallback)
class GatewayCallbackAdmin(ReadOnlyAdmin):
    list_display = ["id", "received_at", "verified", "outcome", "error", "intent", "remote_addr"]
    list_filter = ["verified", "outcome"]


class RefundSagaStepInline(admin.TabularInline):
    model = RefundSagaStep
    fields = ["at", "step", "status_after", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RefundSaga)
class RefundSagaAdmin(ReadOnlyAdmin):
    list_display = ["id", "intent", "amount", "kind", "status", "gateway_status", "updated_at"]
    list_filter = ["status", "kind"]
    inlines = [RefundSagaStepInline]
    actions = ["resume"]

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.change_refundsaga")

    @admin.action(description="Carry on the selected sagas", permissions=["resume"])
    def resume(self, request: HttpRequest, queryset) -> None:
        for saga in queryset.exclude(status__in=RefundSaga.FINAL):
            done = refund_saga_run(saga=saga)
            self.message_user(request, f"{done}: {done.get_status_display()}.")
