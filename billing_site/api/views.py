"""Base classes for the per-app API views, idempotent money POSTs, and the benchmark view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer

from billing_site.api.scope import Scope, request_id_of, request_scope
from billing_site.errors import DomainError
from ledger.exceptions import IdempotencyConflict
from partners.services import api_response_record, api_response_replay

REPLAYED_HEADER = "Idempotent-Replayed"


class NotFoundInScope(DomainError):
    """A referenced object does not exist, or not for this caller (which looks the same)."""

    code = "not_found"
    status = 404
    default_message = "Not found."


class ScopedViewMixin:
    """Gives views ``self.scope`` and echoes the request id in ``X-Request-ID``."""

    request: Any
    metadata_class = None  # OPTIONS answers 405: the OpenAPI schema describes the API

    @property
    def scope(self) -> Scope:
        return request_scope(self.request)

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["X-Request-ID"] = request_id_of(request)
        return response


class ScopedViewSet(ScopedViewMixin, viewsets.GenericViewSet):
    pass


def in_scope(queryset: QuerySet, pk: Any, field: str) -> Model:
    """The object with this id among ``queryset`` (already scoped), or 404 naming the field."""
    obj = queryset.filter(pk=pk).first() if pk is not None else None
    if obj is None:
        raise NotFoundInScope(f"{field}: not found.", **{field: ["Not found."]})
    return obj


def idempotency_key_of(request: Any) -> str | None:
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not (0 < len(key) <= 255) or not key.isascii() or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["Use 1 to 255 printable ASCII characters."]})
    return key


def money_post(
    request: Any,
    *,
    post: Callable[[str | None], Any],
    serialize: Callable[[Any], dict[str, Any]],
    status: int = 201,
) -> HttpResponse:
    """Run a ledger service for a money POST and answer it, replaying by ``Idempotency-Key``.

    With a key, the service and the record of this response (its status and
    exact body bytes) are one database transaction: a key exists exactly when
    its posting and its response do. Concurrent duplicates wait on the
    ledger's unique key, then replay the winner's stored response. A refused
    request stores nothing, so the key can be retried once the refusal no
    longer applies.
    """
    key = idempotency_key_of(request)
    if key is None:
        return _json(_render(serialize(post(None))), status)
    caller = request_scope(request).caller.ref
    with transaction.atomic():
        result = post(key)
        if getattr(result, "replayed", False):
            record = api_response_replay(caller=caller, key=key)
            if record is not None and record.path != request.path:
                raise IdempotencyConflict(key=key)
            if record is not None:
                body, code = bytes(record.body), record.status_code
            else:  # posted through another channel by the same caller with the same key
                body, code = _render(serialize(result)), status
            response = _json(body, code)
            response[REPLAYED_HEADER] = "true"
            return response
        body = _render(serialize(result))
        api_response_record(
            caller=caller,
            key=key,
            method=request.method,
            path=request.path,
            status_code=status,
            body=body,
        )
    return _json(body, status)


def _render(data: Any) -> bytes:
    return JSONRenderer().render(data)


def _json(body: bytes, status: int) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
def api_not_found(request: Any, path: str = "") -> HttpResponse:
    """Unknown paths under /api/ answer the API's JSON 404, not the site's HTML page."""
    raise NotFound()


def bench_ping(request: Any) -> JsonResponse:
    """A bare Django view: the framework's own ceiling in bench/api.py."""
    return JsonResponse({"ok": True})
