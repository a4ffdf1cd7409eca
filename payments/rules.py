"""Payment rules per brand or client (filled in by the payment-rules step)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from core.errors import DomainError


def registry_refusals(lines: Sequence[tuple[int, Decimal]]) -> list[DomainError | None]:
    """For each ``(account id, amount)`` of a registry, the refusal of a rule, or None."""
    return [None] * len(lines)
