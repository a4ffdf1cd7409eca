"""Admin for partners, API keys and webhooks. Keys are created and revoked through services;
a new key is shown once, in the confirmation message."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from access.models import ApiIdempotencyRecord, ApiKey, Partner
from access.services import api_key_create, api_key_revoke, api_key_update
from core.api.principal import CAPABILITIES
from core.audit.admin import AuditHistoryMixin
from core.audit.history import RelatedEvents
from core.errors import DomainError
from partners.destinations import validate_webhook_url
from partners.models import (
    ApiKeyBrandEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from partners.services import webhook_redeliver


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "name", "capabilities", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class WebhookEndpointInline(admin.TabularInline):
    model = WebhookEndpoint
    fields = ["url", "event_types", "is_active"]
    extra = 0
    show_change_link = True


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    filter_horizontal = ["brands"]
    inlines = [ApiKeyInline, WebhookEndpointInline]


class ApiKeyForm(forms.ModelForm):
    capabilities = forms.MultipleChoiceField(
        choices=[(c, c) for c in CAPABILITIES],
        initial=list(CAPABILITIES),
        widget=forms.CheckboxSelectMultiple,
        help_text="What requests made with this key may do; each endpoint needs one.",
    )

    class Meta:
        model = ApiKey
        fields = ["partner", "name", "brands", "capabilities"]

    def clean(self):
        data = super().clean()
        partner, brands = data.get("partner"), data.get("brands")
        if partner and brands:
            allowed = set(partner.brands.values_list("pk", flat=True))
            outside = [b.code for b in brands if b.pk not in allowed]
            if outside:
                raise forms.ValidationError(
                    f"The partner does not act for: {', '.join(outside)}. Add the brands to the "
                    "partner first."
                )
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(AuditHistoryMixin, admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "prefix",
        "partner",
        "name",
        "capability_list",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["partner", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "partner__name"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    filter_horizontal = ["brands"]
    actions = ["revoke"]
    audit_related = (RelatedEvents(ApiKeyBrandEvent, "apikey", subject=lambda event: "brand link"),)

    def get_readonly_fields(self, request, obj=None):
        # An existing key's scope is fixed: revoke it and create a new one instead.
        if obj is not None:
            return [*self.readonly_fields, "partner", "brands"]
        return self.readonly_fields

    @admin.display(description="capabilities")
    def capability_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.capabilities)

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            api_key_update(
                api_key=obj,
                name=form.cleaned_data.get("name", ""),
                capabilities=form.cleaned_data["capabilities"],
            )
            return
        key, raw_key = api_key_create(
            partner=form.cleaned_data["partner"],
            brands=form.cleaned_data["brands"],
            name=form.cleaned_data.get("name", ""),
            capabilities=form.cleaned_data["capabilities"],
        )
        obj.pk = key.pk
        obj._state.adding = False
        self._raw_key = raw_key

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)
        # A new key's brands were set by the service.

    def response_add(self, request, obj, post_url_continue=None):
        raw_key = getattr(self, "_raw_key", None)
        if raw_key:
            messages.warning(
                request,
                f"The new API key is {raw_key} — copy it now, it will not be shown again.",
            )
            self._raw_key = None
        return super().response_add(request, obj, post_url_continue)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("access.revoke_apikey")

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=WebhookEventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["partner", "url", "secret", "event_types", "is_active"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            validate_webhook_url(url)
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "partner", "is_active", "created_at"]
    list_filter = ["is_active", "partner"]
    search_fields = ["url", "partner__name"]


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "attempted_at", "response_status", "error", "duration_ms", "succeeded"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event", "endpoint", "status", "attempts", "next_attempt_at"]
    list_filter = ["status", "event__type"]
    readonly_fields = [
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "delivered_at",
        "created_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("partners.redeliver_webhookdelivery")

    @admin.action(description="Redeliver now", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            webhook_redeliver(delivery=delivery)
        messages.success(request, f"Queued {queryset.count()} deliveries again.")


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["endpoint", "status", "attempts", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["public_id", "type", "created_at"]
    list_filter = ["type"]
    search_fields = ["public_id"]
    readonly_fields = ["public_id", "type", "data", "brand_ids", "created_at"]
    inlines = [WebhookDeliveryInline]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(admin.ModelAdmin):
    list_display = ["delivery", "number", "attempted_at", "response_status", "succeeded"]
    list_filter = ["succeeded"]
    readonly_fields = [f.name for f in WebhookAttempt._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ApiIdempotencyRecord)
class ApiIdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["caller", "key", "method", "path", "status_code", "created_at"]
    search_fields = ["key", "caller"]
    readonly_fields = ["caller", "key", "method", "path", "status_code", "created_at"]
    exclude = ["body"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
