"""Content negotiation with a shortcut for the common case: no ``Accept`` header, or ``*/*``."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation


class ApiContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that a request accepting anything (no ``Accept`` header or
    exactly ``*/*``) with no ``format`` override gets the view's first renderer at once.

    That is what DRF's own loop answers then (``*/*`` matches the first renderer, whose
    media type is the more specific); it just parses the header and every renderer's media
    type first, on every request. Any other ``Accept`` header, a ``format`` query parameter
    or a format suffix goes through DRF's negotiation unchanged.
    """

    def select_renderer(
        self, request: Any, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        if (
            renderers
            and format_suffix is None
            and request.META.get("HTTP_ACCEPT", "*/*").strip() == "*/*"
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            renderer = renderers[0]
            return renderer, renderer.media_type
        return super().select_renderer(request, renderers, format_suffix)
