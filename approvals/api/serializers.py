"""The API's representation of maker-checker requests, and the 202 body of a move that
waits for approval (used by every endpoint whose move may need a second person)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals.models import ApprovalRequest
from core.api.fields import StrictCharField

APPROVAL_REQUIRED = "approval_required"


def _model_name(content_type: Any) -> str | None:
    return content_type.model if content_type is not None else None


class ApprovalRequestSerializer(serializers.ModelSerializer):
    """A request as staff (or the partner that made it) see it."""

    maker = serializers.CharField(source="maker_ref", help_text="user:<id> or partner:<id>.")
    checker = serializers.SerializerMethodField(help_text="user:<id> once decided, else null.")
    target_type = serializers.SerializerMethodField(help_text="account, brand or null.")
    result_type = serializers.SerializerMethodField(
        help_text="What approving created or changed: transaction, account, brand; or null."
    )
    amount = serializers.DecimalField(
        max_digits=18, decimal_places=2, allow_null=True, read_only=True
    )

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "kind",
            "status",
            "summary",
            "payload",
            "amount",
            "currency",
            "target_type",
            "target_id",
            "maker",
            "created_at",
            "expires_at",
            "checker",
            "decided_at",
            "reason",
            "result_type",
            "result_id",
            "error_code",
            "error_message",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_checker(self, obj: ApprovalRequest) -> str | None:
        return obj.checker_ref or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_target_type(self, obj: ApprovalRequest) -> str | None:
        return _model_name(obj.target_type)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_result_type(self, obj: ApprovalRequest) -> str | None:
        return _model_name(obj.result_type)


class ApprovalRequiredSerializer(serializers.Serializer):
    """``202``: the move was not made; it waits for another person's approval."""

    code = serializers.CharField(help_text='Always "approval_required".')
    message = serializers.CharField(help_text="What was filed and until when it may be approved.")
    approval_request = ApprovalRequestSerializer()

    class Meta:
        ref_name = "ApprovalRequired"


class RejectSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500)


def approval_required_body(request: ApprovalRequest) -> dict[str, Any]:
    """The body of ``202 approval_required`` for a move filed as ``request``."""
    return {
        "code": APPROVAL_REQUIRED,
        "message": (
            f"Sent for approval: {request.summary}. Another person with the permission to "
            f"approve must approve it before {request.expires_at.isoformat()}; nothing has "
            "changed yet."
        ),
        "approval_request": ApprovalRequestSerializer(request).data,
    }
