"""What each kind of request executes, registered by the app that owns the move.

The approvals app imports no domain app; each app registers its kinds in its
``AppConfig.ready``::

    from approvals import registry
    registry.register("ledger.refund", execute_refund, label="Refund")

A handler is called with the request (still locked, in the approving database
transaction) and the checker's ``Caller``. It carries the move out through the
app's real service and returns the object it created or changed (the
transaction, the account, the brand), which becomes the request's ``result``;
a ``core.errors.DomainError`` it raises marks the request ``failed`` and moves
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.caller import Caller

if TYPE_CHECKING:
    from approvals.models import ApprovalRequest

Handler = Callable[["ApprovalRequest", Caller], Any]


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    execute: Handler


_kinds: dict[str, Kind] = {}


def register(name: str, execute: Handler, *, label: str) -> None:
    """Make ``name`` a kind of request that ``execute`` carries out (once per kind)."""
    existing = _kinds.get(name)
    if existing is not None and existing.execute is not execute:
        raise ValueError(f"Approval kind {name!r} is already registered.")
    _kinds[name] = Kind(name, label, execute)


def kind(name: str) -> Kind | None:
    return _kinds.get(name)


def kinds() -> list[Kind]:
    """Every registered kind, by name."""
    return sorted(_kinds.values(), key=lambda k: k.name)


def label_of(name: str) -> str:
    found = _kinds.get(name)
    return found.label if found is not None else name
