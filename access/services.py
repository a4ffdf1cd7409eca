"""Writes and reads of the access app: partners, API keys, key authentication, stored responses."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, Q
from django.utils import timezone

from access.models import ApiIdempotencyRecord, ApiKey, Partner
from core.api.principal import CAPABILITIES, ApiPrincipal
from core.errors import DomainError
from core.hot_cursor import PREPARE, hot_cursor

KEY_PREFIX = "bk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


class InvalidPartnerSetting(DomainError):
    code = "validation_error"
    status = 400
    default_message = "An API key is scoped to one or more of its partner's brands."


# --------------------------------------------------------------------------- partners and keys


@transaction.atomic
def partner_get_or_create(*, name: str, brands: Iterable[Model] = ()) -> Partner:
    """The partner with this name (created if needed), with ``brands`` (``Brand`` rows) added."""
    partner, _ = Partner.objects.get_or_create(name=name.strip())
    brands = list(brands)
    if brands:
        partner.brands.add(*brands)
    return partner


def _capabilities(capabilities: Iterable[str] | None) -> list[str]:
    """Known capabilities in their canonical order; None means all of them."""
    if capabilities is None:
        return list(CAPABILITIES)
    wanted = set(capabilities)
    unknown = sorted(wanted - set(CAPABILITIES))
    if unknown or not wanted:
        raise InvalidPartnerSetting(
            f"Choose one or more of: {', '.join(CAPABILITIES)}.",
            field="capabilities",
            unknown=unknown,
        )
    return [c for c in CAPABILITIES if c in wanted]


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    partner: Partner,
    brands: Iterable[Model],
    name: str = "",
    capabilities: Iterable[str] | None = None,
) -> tuple[ApiKey, str]:
    """Create a key scoped to ``brands`` (a subset of the partner's); return it and the raw key.

    ``capabilities`` narrow what it may do (default: everything). The raw key
    (``bk_<prefix>.<secret>``) is never stored and cannot be shown again.
    """
    granted = _capabilities(capabilities)
    brands = list(brands)
    allowed = set(partner.brands.values_list("pk", flat=True))
    if not brands or any(brand.pk not in allowed for brand in brands):
        raise InvalidPartnerSetting(field="brands")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        partner=partner,
        name=name,
        prefix=prefix,
        hashed_secret=_hash_secret(secret),
        capabilities=granted,
    )
    key.brands.set(brands)
    return key, f"{KEY_PREFIX}{prefix}.{secret}"


@transaction.atomic
def api_key_update(
    *, api_key: ApiKey, name: str | None = None, capabilities: Iterable[str] | None = None
) -> ApiKey:
    """Rename a key or change its capabilities (its brands are fixed: make a new key instead).

    Takes effect at once in this process, within BILLING_API_KEY_CACHE_SECONDS elsewhere.
    """
    fields: list[str] = []
    if name is not None:
        api_key.name = name
        fields.append("name")
    if capabilities is not None:
        api_key.capabilities = _capabilities(capabilities)
        fields.append("capabilities")
    if fields:
        api_key.full_clean(exclude=["partner", "prefix", "hashed_secret", "brands"])
        api_key.save(update_fields=fields)
        _authenticated.clear()
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key: at once in this process, within BILLING_API_KEY_CACHE_SECONDS elsewhere.

    Revoking twice keeps the first revocation time.
    """
    _authenticated.clear()
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


_AUTH_SQL = """
SELECT k.id, k.hashed_secret, k.revoked_at, k.last_used_at, p.id, p.name, p.is_active,
       k.capabilities,
       ARRAY(SELECT kb.brand_id FROM access_apikey_brands kb
             JOIN access_partner_brands pb ON pb.brand_id = kb.brand_id AND pb.partner_id = p.id
             WHERE kb.apikey_id = k.id)
FROM access_apikey k JOIN access_partner p ON p.id = k.partner_id
WHERE k.prefix = %s
"""


# Recently authenticated keys per process: {sha256 of the raw key: (valid until, principal)}.
_authenticated: dict[str, tuple[float, ApiPrincipal]] = {}


def api_key_cache_clear(**signal_kwargs: Any) -> None:
    """Forget every verified key in this process (a receiver of the model signals below).

    Connected (``access.apps``) to every change that can narrow what a cached
    principal may do: a key saved or deleted, a partner saved (``is_active``) or
    deleted, and a key's or a partner's brand links added, removed, cleared or
    deleted with their brand. The next request of each key looks it up again.
    """
    _authenticated.clear()


def api_key_authenticate(raw_key: str, *, now: datetime | None = None) -> ApiPrincipal | None:
    """The principal of a valid, unrevoked key of an active partner, or None.

    A key seen valid in the last BILLING_API_KEY_CACHE_SECONDS is trusted
    without a query (a revocation reaches other processes within that time).
    Otherwise one indexed lookup by prefix, then a constant-time comparison of
    the secret's hash; ``last_used_at`` is written at most once a minute per key.
    """
    ttl = settings.BILLING_API_KEY_CACHE_SECONDS
    if ttl <= 0 or now is not None:
        return _api_key_lookup(raw_key, now=now)
    digest = hashlib.sha256(raw_key.encode()).hexdigest()
    cached = _authenticated.get(digest)
    clock = time.monotonic()
    if cached is not None and cached[0] > clock:
        return cached[1]
    principal = _api_key_lookup(raw_key, now=now)
    if principal is None:
        _authenticated.pop(digest, None)
    else:
        if len(_authenticated) > 10_000:
            _authenticated.clear()
        _authenticated[digest] = (clock + ttl, principal)
    return principal


def _api_key_lookup(raw_key: str, *, now: datetime | None) -> ApiPrincipal | None:
    if not raw_key.startswith(KEY_PREFIX) or "." not in raw_key:
        return None
    prefix, _, secret = raw_key[len(KEY_PREFIX) :].partition(".")
    if not prefix or not secret or len(prefix) > 16:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_AUTH_SQL, [prefix])
        row = cursor.fetchone()
    if row is None:
        # Same work as a real comparison, so timing does not tell whether a prefix exists.
        hmac.compare_digest(_hash_secret(secret), "0" * 64)
        return None
    (
        key_id,
        hashed,
        revoked_at,
        last_used_at,
        partner_id,
        partner_name,
        active,
        capabilities,
        brand_ids,
    ) = row
    if not hmac.compare_digest(_hash_secret(secret), hashed):
        return None
    if revoked_at is not None or not active or not brand_ids:
        return None
    now = now or timezone.now()
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        threshold = now - LAST_USED_RESOLUTION
        ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=threshold), pk=key_id
        ).update(last_used_at=now)
    return ApiPrincipal(
        key_id, partner_id, partner_name, frozenset(brand_ids), frozenset(capabilities)
    )


# --------------------------------------------------------------------------- idempotent responses


_RECORD_SQL = (
    "INSERT INTO access_apiidempotencyrecord"
    " (caller, key, method, path, status_code, body, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def api_response_record(
    *, caller: str, key: str, method: str, path: str, status_code: int, body: bytes
) -> None:
    """Keep the response to a money POST; call inside the posting's database transaction.

    A plain INSERT, prepared once per connection on the reused cursor
    (``core.hot_cursor``): it runs on every keyed money POST, and the ORM's save
    path costs several times the statement itself. The table has no audit
    trigger (``tests/api/test_idempotency.py`` checks), so the statement does
    not need the audit context's ``set_config`` that Django's cursor would
    prefix it with inside a write request.
    """
    with hot_cursor() as cursor:
        cursor.execute(
            _RECORD_SQL,
            [caller, key, method, path, status_code, body, timezone.now()],
            prepare=PREPARE,
        )


def api_response_replay(*, caller: str, key: str) -> ApiIdempotencyRecord | None:
    return ApiIdempotencyRecord.objects.filter(caller=caller, key=key).first()
