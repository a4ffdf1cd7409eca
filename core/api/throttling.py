"""Fixed-window rate limits per API key (staff: per user), rates from settings/env."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from core.api.principal import ApiPrincipal

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0].lower()]


class ApiKeyRateThrottle(BaseThrottle):
    """At most N requests per key per window: one cache ``incr`` per request (and an
    ``add`` for the window's first).

    With Redis (``REDIS_URL``) the count is shared by all workers; with the
    local-memory cache each worker process counts on its own.
    """

    def allow_request(self, request: Any, view: Any) -> bool:
        principal = request.auth
        if isinstance(principal, ApiPrincipal):
            scope, ident = "api_key", principal.key_id
        elif request.user is not None and request.user.is_authenticated:
            scope, ident = "staff", request.user.pk
        else:
            return True
        rate = settings.BILLING_API_THROTTLE_RATES.get(scope)
        if not rate:
            return True
        limit, window = parse_rate(rate)
        now = time.time()
        window_start = int(now // window) * window
        key = f"throttle:{scope}:{ident}:{window_start}"
        try:
            # Every request but the window's first finds the key: one incr, no add first.
            count = cache.incr(key)
        except ValueError:  # the window's first request (or the key expired)
            if cache.add(key, 1, timeout=window + 1):
                count = 1
            else:  # another request of the window added it meanwhile
                try:
                    count = cache.incr(key)
                except ValueError:  # and it expired at once
                    cache.add(key, 1, timeout=window + 1)
                    count = 1
        self._wait = window_start + window - now
        return count <= limit

    def wait(self) -> float:
        return max(self._wait, 1.0)
