"""Faults answer honestly: a lost database connection is a 503 to retry, not a 500.

- ``DatabaseUnavailableMiddleware`` (and ``unavailable_response`` for the project's 500
  handler): a request whose database connection was lost (the server restarted, the
  backend was terminated, the network dropped) answers ``503`` with ``Retry-After``: the
  API's error envelope ``{"code": "service_unavailable", ...}`` under ``/api/``, a short
  HTML page elsewhere. The broken connection is closed, so the next request reconnects.
  Nothing was committed by the cut request (its transaction died with the connection), so
  a retry with the same ``Idempotency-Key`` posts once.
- ``retry_on_lost_connection``: a django-q2 task whose connection is lost closes it and
  runs again after a backoff, instead of being recorded as failed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.api.exceptions import error_body

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

UNAVAILABLE_MESSAGE = "The service is temporarily unavailable (database connection lost); retry."


def retry_after_seconds() -> int:
    return int(getattr(settings, "BILLING_RETRY_AFTER_SECONDS", 5))


def _broken(wrapper) -> bool:
    raw = wrapper.connection
    if raw is None:
        # Closed after an error (or the connect itself failed); an alias merely not used
        # yet in this thread has no error.
        return bool(wrapper.errors_occurred)
    return bool(getattr(raw, "closed", False) or getattr(raw, "broken", False))


# SQLSTATEs of a connection that is gone: class 08 (connection exception) and the server
# shutting the backend down (terminated, crashed, starting up).
LOST_SQLSTATES = {"57P01", "57P02", "57P03"}


def database_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost or refused database connection (not any database error:
    a deadlock or a constraint violation is not).

    Decided by the driver's error (psycopg): no SQLSTATE at all (the client found the
    connection closed or could not connect), class 08, or the server terminating the
    backend; without a driver error, by whether a connection of this thread is broken.
    """
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if isinstance(cause, psycopg.Error):
        sqlstate = cause.sqlstate
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in LOST_SQLSTATES
    return any(_broken(wrapper) for wrapper in connections.all(initialized_only=True))


def close_broken_connections() -> None:
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is None or _broken(wrapper):
            try:
                wrapper.close()
            except DatabaseError:
                wrapper.connection = None


def unavailable_response(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            error_body("service_unavailable", UNAVAILABLE_MESSAGE), status=503
        )
    else:
        response = HttpResponse(
            "<!doctype html><title>Service unavailable</title>"
            "<h1>Service unavailable</h1><p>The database connection was lost. "
            "Please try again in a few seconds.</p>",
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(retry_after_seconds())
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_connection_lost(exception):
            return None
        logger.warning("Database connection lost during %s %s", request.method, request.path)
        close_broken_connections()
        return unavailable_response(request)


def retry_on_lost_connection(func: F) -> F:
    """Run a q2 task again (after ``BILLING_TASK_RETRY_BACKOFF`` * 2^n seconds, at most
    ``BILLING_TASK_RETRY_ATTEMPTS`` runs) when its database connection is lost.

    The task's transaction died with the connection, so a rerun starts clean. Called inside
    a transaction (a synchronous run from a request), it does not retry: the caller's
    transaction is gone too, and the error goes up.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        attempts = int(getattr(settings, "BILLING_TASK_RETRY_ATTEMPTS", 5))
        backoff = float(getattr(settings, "BILLING_TASK_RETRY_BACKOFF", 1.0))
        for attempt in range(1, attempts + 1):
            if any(w.in_atomic_block for w in connections.all(initialized_only=True)):
                return func(*args, **kwargs)
            try:
                return func(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if not database_connection_lost(exc):
                    raise
                close_broken_connections()
                if attempt == attempts:
                    raise
                delay = min(backoff * 2 ** (attempt - 1), 60.0)
                logger.warning(
                    "%s: database connection lost (%s); run %d of %d in %.1f s",
                    func.__qualname__,
                    exc,
                    attempt + 1,
                    attempts,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]
