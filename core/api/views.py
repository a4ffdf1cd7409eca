"""Base classes for the per-app API views, the API's JSON 404 and the benchmark view."""

from __future__ import annotations

from typing import Any

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
from rest_framework.response import Response

from core.api.scope import Scope, request_id_of, request_scope
from core.audit.context import annotate_api_request
from core.errors import NotFoundInScope
from core.text import printable, text_problem

__all__ = [
    "NotFoundInScope",
    "ScopedViewMixin",
    "ScopedViewSet",
    "check_query_params",
    "idempotency_key_of",
    "in_scope",
    "rendered_now",
]

# The longest value a query parameter may have: longer than any filtered column (and any
# cursor), so a longer one is a mistake or an attack, refused before it reaches a query.
QUERY_VALUE_MAX_LENGTH = 1000


def check_query_params(request: Any) -> None:
    """Refuse query parameters no column could hold: NUL characters, over-long values.

    ``400 validation_error`` naming the parameter. (Django decodes the query string
    with replacement characters, so no unpaired surrogate reaches here.)
    """
    errors: dict[str, list[str]] = {}
    for name, values in request.query_params.lists():
        for value in [name, *values]:
            problem = text_problem(value)
            if problem is not None:
                errors[printable(name)] = [problem[1]]
            elif len(value) > QUERY_VALUE_MAX_LENGTH:
                errors[printable(name)] = [
                    f"At most {QUERY_VALUE_MAX_LENGTH} characters ({len(value)} given)."
                ]
    if errors:
        raise ValidationError(errors)


class ScopedViewMixin:
    """Gives views ``self.scope`` and echoes the request id in ``X-Request-ID``."""

    request: Any
    metadata_class = None  # OPTIONS answers 405: the OpenAPI schema describes the API

    @property
    def scope(self) -> Scope:
        return request_scope(self.request)

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Authenticated now (DRF does it lazily, in the view): name the partner and key, or
        # the user, in the request's audit context before anything is written.
        annotate_api_request(request)
        check_query_params(request)

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


def rendered_now(request: Any, data: Any, status: int = 200) -> HttpResponse:
    """``Response(data, status=status)``, rendered here rather than after the view.

    The same bytes and headers as DRF's deferred rendering makes of it (the renderer
    content negotiation chose, with the accepted media type's parameters, and its media
    type as the ``Content-Type``), without the ``TemplateResponse`` machinery that costs
    a hot read a tenth of its time. Any renderer but the plain ``JSONRenderer`` gets the
    ``Response``.
    """
    renderer = getattr(request, "accepted_renderer", None)
    if type(renderer) is not JSONRenderer:
        return Response(data, status=status)
    return HttpResponse(
        renderer.render(data, request.accepted_media_type),
        status=status,
        content_type=renderer.media_type,
    )


def idempotency_key_of(request: Any) -> str | None:
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not (0 < len(key) <= 255) or not key.isascii() or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["Use 1 to 255 printable ASCII characters."]})
    return key


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
