"""One exception handler: every error is ``{"code", "message", "details"}``.

Domain errors (``core.errors.DomainError``) keep their ``code`` and
``status``, except that 400s are ``validation_error`` with details per field,
as the API contract says. DRF's own errors keep their status and headers
(``WWW-Authenticate``, ``Retry-After``, ``Allow``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError

AMOUNT_CODES = {"invalid_amount"}

_DRF_CODES = {
    exceptions.ParseError: "validation_error",
    exceptions.ValidationError: "validation_error",
    exceptions.NotFound: "not_found",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.Throttled: "throttled",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or {}}


def _as_field_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return detail
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [detail]}


def _first_message(details: dict[str, Any]) -> str:
    for field, value in details.items():
        while isinstance(value, list | dict) and value:
            value = value[0] if isinstance(value, list) else next(iter(value.values()))
        if value:
            return f"{value}" if field == "non_field_errors" else f"{field}: {value}"
    return "The request is not valid."


def domain_error_response(exc: DomainError) -> Response:
    if exc.status == status.HTTP_400_BAD_REQUEST:
        field = exc.details.get("field") or ("amount" if exc.code in AMOUNT_CODES else None)
        details = {field or "non_field_errors": [exc.message]}
        return Response(error_body("validation_error", exc.message, details), status=400)
    return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if isinstance(exc, DjangoValidationError):
        details = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return Response(
            error_body("validation_error", _first_message(details), details), status=400
        )
    if isinstance(exc, ObjectDoesNotExist | Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next(
        (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)),
        getattr(exc, "default_code", "error"),
    )
    if response.status_code == status.HTTP_403_FORBIDDEN and isinstance(
        exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed
    ):
        code = "not_authenticated"
    if isinstance(exc, exceptions.ValidationError):
        details = _as_field_details(exc.detail)
        response.data = error_body(code, _first_message(details), details)
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        response.data = error_body(
            code, f"Too many requests; retry in {wait} s.", {"retry_after": wait}
        )
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(code, str(detail))
    return response
