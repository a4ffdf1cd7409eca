"""Who is acting: the scope of idempotency keys and the audit trail of every posting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Caller:
    """Who is posting: ``ref`` is ``user:<id>``, ``partner:<id>`` or ``system:<name>``.

    Idempotency keys are unique per ``ref``; the ledger stores ``ref``, the
    user (when there is one) and the request id on every transaction.
    """

    ref: str = "system"
    user: Any = None
    request_id: str = ""

    @classmethod
    def for_user(cls, user: Any, request_id: str = "") -> Caller:
        return cls(ref=f"user:{user.pk}", user=user, request_id=request_id)

    @classmethod
    def for_partner(cls, partner_id: int, request_id: str = "", user: Any = None) -> Caller:
        return cls(ref=f"partner:{partner_id}", user=user, request_id=request_id)

    @classmethod
    def system(cls, name: str) -> Caller:
        return cls(ref=f"system:{name}")

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "pk", None)

    @property
    def partner_id(self) -> int | None:
        kind, _, ident = self.ref.partition(":")
        return int(ident) if kind == "partner" and ident.isdigit() else None


SYSTEM = Caller()
