"""What a request may see and do: a partner's brands, or everything for staff.

The ``Scope`` is a value: which brands (``None`` for staff: no restriction),
which partner, and the ``Caller`` that postings are made as. Each app turns it
into querysets in its own ``selectors.py`` (``accounts_in_scope``,
``transactions_in_scope``, ...), so this module knows no app. Anything outside
a scope answers 404, exactly like something that does not exist.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from core.api.principal import ApiPrincipal
from core.caller import Caller

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True)
class Scope:
    brand_ids: frozenset[int] | None  # None: staff, no restriction
    partner_id: int | None
    caller: Caller

    @property
    def is_partner(self) -> bool:
        return self.brand_ids is not None

    def allows_brand(self, brand_id: int) -> bool:
        return self.brand_ids is None or brand_id in self.brand_ids


def request_id_of(request: Any) -> str:
    existing = getattr(request, "_billing_request_id", None)
    if existing:
        return existing
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex
    request._billing_request_id = request_id
    return request_id


def request_scope(request: Any) -> Scope:
    """The scope of an authenticated DRF request (computed once per request)."""
    cached = getattr(request, "_billing_scope", None)
    if cached is not None:
        return cached
    request_id = request_id_of(request)
    principal = request.auth
    if isinstance(principal, ApiPrincipal):
        scope = Scope(
            brand_ids=principal.brand_ids,
            partner_id=principal.partner_id,
            caller=Caller.for_partner(principal.partner_id, request_id=request_id),
        )
    else:
        scope = Scope(
            brand_ids=None,
            partner_id=None,
            caller=Caller.for_user(request.user, request_id=request_id),
        )
    request._billing_scope = scope
    return scope
