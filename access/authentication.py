"""``Authorization: Api-Key <key>``: partners authenticate with keys made by ``create_api_key``."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from access.services import api_key_authenticate
from core.api.principal import ApiPrincipal

KEYWORD = "Api-Key"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Sets ``request.user`` and ``request.auth`` to an ``ApiPrincipal``.

    No ``Authorization: Api-Key`` header: not this scheme (session auth may
    apply). A header with an unknown, revoked or malformed key: 401.
    """

    def authenticate(self, request: Any) -> tuple[ApiPrincipal, ApiPrincipal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != KEYWORD.lower():
            return None
        raw_key = raw_key.strip()
        if not raw_key or " " in raw_key or not raw_key.isascii():
            raise exceptions.AuthenticationFailed("Malformed API key header.")
        principal = api_key_authenticate(raw_key)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return principal, principal

    def authenticate_header(self, request: Any) -> str:
        return KEYWORD
