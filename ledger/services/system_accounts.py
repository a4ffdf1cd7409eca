"""System accounts (clearing per channel, revenue per brand and service, refunds,
adjustments): found or created on first use, their ids cached per process.

System accounts are never locked: entries are appended to them and their
balance is the sum of those entries.
"""

from __future__ import annotations

from django.db import transaction

from accounts.models import Account
from accounts.services import account_numbers_allocate

_system_account_ids: dict[str, int] = {}


def clear_system_account_cache() -> None:
    """Forget cached system-account ids (tests that truncate tables call this)."""
    _system_account_ids.clear()


def system_account_key(
    kind: str, currency: str, brand_id: int | None, service_id: int | None, channel: str
) -> str:
    """The ``system_key`` of the system account for this role."""
    return ":".join(
        part
        for part in (
            kind,
            currency,
            f"b{brand_id}" if brand_id else "",
            f"s{service_id}" if service_id else "",
            channel,
        )
        if part
    )


def system_account_id(
    kind: str,
    currency: str,
    *,
    brand_id: int | None = None,
    service_id: int | None = None,
    channel: str = "",
) -> int:
    """The id of the system account for this role, created on first use.

    Cached per process; a row created inside a transaction is cached only once
    that transaction commits, so a rollback cannot leave a dangling id behind.
    """
    key = system_account_key(kind, currency, brand_id, service_id, channel)
    cached = _system_account_ids.get(key)
    if cached is not None:
        return cached
    found = Account.objects.filter(system_key=key).values_list("pk", flat=True).first()
    if found is not None:
        # The row may have been created earlier in a transaction that can still
        # roll back: cache it only on commit (at once outside a transaction).
        transaction.on_commit(lambda: _system_account_ids.__setitem__(key, found))
        return found
    label = f"{Account.Kind(kind).label} {currency}" + (f" / {channel}" if channel else "")
    Account.objects.bulk_create(
        [
            Account(
                number=account_numbers_allocate(1)[0],
                kind=kind,
                currency=currency,
                system_key=key,
                brand_id=brand_id,
                service_id=service_id,
                channel=channel,
                name=label,
            )
        ],
        ignore_conflicts=True,
    )
    created = Account.objects.get(system_key=key).pk
    transaction.on_commit(lambda: _system_account_ids.__setitem__(key, created))
    return created


class SystemAccounts:
    """``system_account_id`` memoised for one database transaction (a bulk posting's).

    The process cache fills only on commit, so without this a batch would look
    the same uncached system account up once per item.
    """

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[tuple, int] = {}

    def __call__(
        self,
        kind: str,
        currency: str,
        *,
        brand_id: int | None = None,
        service_id: int | None = None,
        channel: str = "",
    ) -> int:
        key = (kind, currency, brand_id, service_id, channel)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = system_account_id(
                kind, currency, brand_id=brand_id, service_id=service_id, channel=channel
            )
        return found
