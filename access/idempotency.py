"""Idempotent money POSTs: the posting and the record of its response are one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from rest_framework.renderers import JSONRenderer

from access.services import api_response_record, api_response_replay
from core.api.scope import request_scope
from core.api.views import idempotency_key_of
from core.errors import IdempotencyConflict
from core.handover import handed_over

REPLAYED_HEADER = "Idempotent-Replayed"
RECORD_CONSTRAINT = "access_apiidempotencyrecord_unique_per_caller"

logger = logging.getLogger(__name__)


def money_post(
    request: Any,
    *,
    post: Callable[[str | None], Any],
    serialize: Callable[[Any], dict[str, Any]],
    status: int = 201,
    hands_over: bool = False,
) -> HttpResponse:
    """Run a ledger service for a money POST and answer it, replaying by ``Idempotency-Key``.

    With a key, the service and the record of this response (its status and
    exact body bytes) are one database transaction: a key exists exactly when
    its posting and its response do. Concurrent duplicates wait on the
    ledger's unique key, then replay the winner's stored response. A refused
    request stores nothing, so the key can be retried once the refusal no
    longer applies.

    ``hands_over``: the service records the response in its own transaction
    (``core.handover``; every ledger posting service does), right after its write;
    otherwise the service runs inside a transaction opened here, its own nested in it.
    """
    key = idempotency_key_of(request)
    if key is None:
        return _json(_render(serialize(post(None))), status)
    caller = request_scope(request).caller.ref
    keyed_post = _handed_over_post if hands_over else _keyed_post
    try:
        return keyed_post(request, key, caller, post, serialize, status)
    except IntegrityError as exc:
        # The key already answered a request that was carried out elsewhere (a refund
        # posted at once, then one filed for approval with the same key): a conflict.
        diag = getattr(exc.__cause__, "diag", None)
        if getattr(diag, "constraint_name", "") == RECORD_CONSTRAINT:
            raise IdempotencyConflict(key=key) from None
        raise


def _keyed_post(
    request: Any,
    key: str,
    caller: str,
    post: Callable[[str | None], Any],
    serialize: Callable[[Any], dict[str, Any]],
    status: int,
) -> HttpResponse:
    with transaction.atomic():
        result = post(key)
        if getattr(result, "replayed", False):
            return _replayed(request, key, caller, result, serialize, status)
        body = _render(serialize(result))
        _record(request, key, caller, status, body)
    return _json(body, status)


def _handed_over_post(
    request: Any,
    key: str,
    caller: str,
    post: Callable[[str | None], Any],
    serialize: Callable[[Any], dict[str, Any]],
    status: int,
) -> HttpResponse:
    bodies: list[bytes] = []

    def record(result: Any) -> None:
        body = _render(serialize(result))
        _record(request, key, caller, status, body)
        bodies.append(body)

    with handed_over(record) as handover:
        result = post(key)
    if getattr(result, "replayed", False):
        return _replayed(request, key, caller, result, serialize, status)
    if not handover.ran:
        # A service that does not hand over was declared as one that does (a mistake
        # in a view): its posting has committed; keep the response now, on its own.
        logger.error("%s %s: the service did not record the response", request.method, request.path)
        body = _render(serialize(result))
        with transaction.atomic():
            _record(request, key, caller, status, body)
        return _json(body, status)
    return _json(bodies[0], status)


def _record(request: Any, key: str, caller: str, status: int, body: bytes) -> None:
    api_response_record(
        caller=caller,
        key=key,
        method=request.method,
        path=request.path,
        status_code=status,
        body=body,
    )


def _replayed(
    request: Any,
    key: str,
    caller: str,
    result: Any,
    serialize: Callable[[Any], dict[str, Any]],
    status: int,
) -> HttpResponse:
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


def _render(data: Any) -> bytes:
    return JSONRenderer().render(data)


def _json(body: bytes, status: int) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")
