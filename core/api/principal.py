"""Who a request authenticated with an API key is (built by ``access``, read everywhere)."""

from __future__ import annotations

from dataclasses import dataclass

# What an API key may do; every endpoint needs exactly one of these (``core.api.permissions``).
CAPABILITIES: tuple[str, ...] = (
    "read",
    "payments",
    "debits",
    "accruals",
    "holds",
    "refunds",
    "transfers",
    "reversals",
    "billing",
    "usage",
    "reports",
)
ALL_CAPABILITIES: frozenset[str] = frozenset(CAPABILITIES)


@dataclass(frozen=True)
class ApiPrincipal:
    """A partner acting for some brands through one of its API keys.

    DRF sets it as both ``request.user`` and ``request.auth``, so it answers
    the questions Django asks of a user. ``capabilities`` are what the key
    may do (a subset of ``CAPABILITIES``).
    """

    key_id: int
    partner_id: int
    partner_name: str
    brand_ids: frozenset[int]
    capabilities: frozenset[str]

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __str__(self) -> str:
        return f"partner:{self.partner_id} ({self.partner_name})"

    def can(self, capability: str) -> bool:
        return capability in self.capabilities
