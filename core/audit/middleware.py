"""Every write request runs in an audit context naming its user and request id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.api.scope import request_id_of
from core.audit.context import current, user_metadata
from core.audit.runtime import audit_context

# Reads change nothing that is audited; not opening a context for them keeps them as cheap
# as they were (the context adds a set_config to every write statement sent through Django).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def request_metadata(request: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "request_id": request_id_of(request),
        "method": request.method,
        "path": request.path[:500],
    }
    user = getattr(request, "user", None)
    if user is not None:
        metadata.update(user_metadata(user))
    return metadata


class AuditContextMiddleware:
    """Opens an audit context around write requests (placed after ``AuthenticationMiddleware``).

    The site and the admin log users in with sessions, so the user is known
    here. The API authenticates API keys inside the view; there
    ``core.api.views.ScopedViewMixin`` adds the partner and key to this context.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if request.method not in WRITE_METHODS or current() is not None:
            return self.get_response(request)
        with audit_context(**request_metadata(request)):
            return self.get_response(request)
