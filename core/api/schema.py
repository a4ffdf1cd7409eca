"""OpenAPI generation: the API-key scheme and the error responses every operation can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable reason, e.g. not_found.")
    message = serializers.CharField(help_text="Human-readable explanation.")
    details = serializers.DictField(
        help_text="More about the error; for validation_error, messages per field."
    )

    class Meta:
        ref_name = "Error"


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


ERRORS = {
    400: error("`validation_error`: the request is not valid; `details` lists problems by field."),
    401: error("`not_authenticated` / `authentication_failed`: no valid API key or session."),
    403: error(
        "`permission_denied`: the API key lacks this endpoint's capability, or the staff user "
        "its permission; `shared_object`: a client or account shared with brands outside the "
        "key's scope cannot be changed by a partner; `blocked_by_staff`: the operator's block "
        "is lifted only by the operator."
    ),
    404: error("`not_found`: no such object within the caller's brands."),
    409: error(
        "A conflict: `idempotency_conflict` (the key was used for another request) or a "
        "state conflict such as `hold_not_active`, `already_reversed`."
    ),
    422: error(
        "A business refusal with a reason code: `insufficient_funds`, "
        "`write_off_limit_exceeded`, `credit_period_expired`, `credit_limit_expired`, "
        "`account_blocked`, `account_closed`, `currency_mismatch`, `brand_not_linked`, "
        "`invalid_operation`."
    ),
    429: error("`throttled`: too many requests for this API key; see `Retry-After`."),
}

IDEMPOTENCY_KEY = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description=(
        "Up to 255 printable ASCII characters, unique per request you mean to make once. "
        "Repeating it with the same body answers the original status and body with header "
        "`Idempotent-Replayed: true`; with a different body, 409 `idempotency_conflict`. "
        "Refused requests (4xx) are not remembered: the key stays free for a retry."
    ),
)


class BillingAutoSchema(AutoSchema):
    """Adds the standard error responses to every operation, unless the view lists its own.

    Views name their extra statuses with ``extend_schema(responses=...)``
    (409, 422); 400, 401, 403 and 429 can happen anywhere, 404 wherever an id
    is in the path or the body.
    """

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = [400, 401, 403, 429]
        if "{" in self.path or self.method in {"POST", "PATCH", "PUT"}:
            codes.append(404)
        for code in codes:
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    ERRORS[code], str(code), direction=direction
                )
        return dict(sorted(responses.items()))


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "access.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; create a key with `manage.py create_api_key`.",
        }
