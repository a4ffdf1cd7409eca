"""Locking the accounts a posting touches, and the cursor the hot path runs on.

``lock_accounts`` locks the named client accounts *and all their ancestors up
to the root payer* in one statement, ordered by primary key (``FOR NO KEY
UPDATE``), so concurrent postings never deadlock and never overspend. The
rows come back as ``LockedAccount``s: the rules (``rules.py``) read and change
them in memory, and the writer (``writer.py``) writes the changed ones back
once. ``run_locked`` starts a posting again when an account chain changed
between reading and locking it.

``hot_cursor`` (``core.hot_cursor``) is the connection's long-lived psycopg
cursor with server-side prepared statements (``BILLING_PREPARED_STATEMENTS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TypeVar

from django.db import transaction

from accounts.exceptions import AccountChainLoop
from accounts.models import Account
from core.hot_cursor import PREPARE, hot_cursor
from ledger.exceptions import DomainError, InvalidOperation
from ledger.services.money import ZERO
from ledger.services.sql import LOCK_SQL, LOCKED_FIELDS

T = TypeVar("T")

__all__ = [
    "PREPARE",
    "AccountStructureChanged",
    "LockedAccount",
    "chain_of",
    "check_postable",
    "hot_cursor",
    "lock_accounts",
    "run_locked",
]


class AccountStructureChanged(DomainError):
    """A parent link changed between reading an account chain and locking it.

    Services roll back and start again (``run_locked``); only a caller that
    keeps retrying into a structure that keeps changing ever sees it.
    """

    code = "account_structure_changed"
    status = 409
    default_message = "The account structure changed while posting; try again."


# --------------------------------------------------------------------------- locked state


@dataclass(slots=True)
class LockedAccount:
    """A client account row read under ``FOR NO KEY UPDATE``; changed in memory, written once."""

    id: int
    number: str
    kind: str
    currency: str
    status: str
    parent_id: int | None
    brand_ids: list[int]
    credit_limit: Decimal
    credit_period_days: int | None
    credit_expires_at: date | None
    write_off_limit_transaction: Decimal | None
    write_off_limit_day: Decimal | None
    write_off_limit_month: Decimal | None
    balance: Decimal
    held: Decimal
    negative_since: datetime | None
    spent_day: Decimal
    spent_day_on: date | None
    spent_month: Decimal
    spent_month_on: date | None
    dirty: bool = field(default=False)

    def spent_on_day(self, today: date) -> Decimal:
        return self.spent_day if self.spent_day_on == today else ZERO

    def spent_in_month(self, today: date) -> Decimal:
        return self.spent_month if self.spent_month_on == today.replace(day=1) else ZERO

    def state(self) -> tuple:
        """The running state (what postings change), to put back with ``restore``."""
        return (
            self.balance,
            self.held,
            self.negative_since,
            self.spent_day,
            self.spent_day_on,
            self.spent_month,
            self.spent_month_on,
            self.dirty,
        )

    def restore(self, state: tuple) -> None:
        (
            self.balance,
            self.held,
            self.negative_since,
            self.spent_day,
            self.spent_day_on,
            self.spent_month,
            self.spent_month_on,
            self.dirty,
        ) = state


if tuple(LockedAccount.__dataclass_fields__)[: len(LOCKED_FIELDS)] != LOCKED_FIELDS:
    raise AssertionError("LockedAccount's fields must follow the lock statement's columns.")


def lock_accounts(account_ids: Iterable[int], *, strict: bool = True) -> dict[int, LockedAccount]:
    """Lock the given client accounts and every ancestor up to their root payers.

    One statement, rows locked in primary-key order. If a parent link changed
    between reading the chain and locking it (an account was just attached
    under a payer), raise ``AccountStructureChanged``: locking the new payer now
    would wait for a lower id while holding a higher one, and deadlock against
    a posting that read the new chain. ``run_locked`` rolls back, releasing
    these locks, and starts again.

    ``strict`` (single postings) raises for a missing or system account; a bulk
    posting passes False and refuses the items that name one (``check_postable``).
    """
    wanted = sorted(set(account_ids))
    with hot_cursor() as cursor, cursor.pipelined():
        # Pipelined: psycopg's implicit BEGIN travels with this statement
        # instead of costing a round trip of its own.
        cursor.execute(LOCK_SQL, [wanted], prepare=PREPARE)
        locked = {row[0]: LockedAccount(*row) for row in cursor.fetchall()}
    if strict:
        missing = [pk for pk in wanted if pk not in locked]
        if missing:
            raise Account.DoesNotExist(f"No account with id {missing[0]}.")
    if not all(acc.parent_id is None or acc.parent_id in locked for acc in locked.values()):
        raise AccountStructureChanged(accounts=wanted)
    if strict:
        for pk in wanted:
            check_postable(locked, pk)
    return locked


def check_postable(locked: dict[int, LockedAccount], account_id: int) -> None:
    """Refuse a system account named as the account of a posting."""
    if locked[account_id].kind != Account.Kind.CLIENT:
        raise InvalidOperation(
            "System accounts are not posted to directly.", account=locked[account_id].number
        )


def run_locked(work: Callable[[], T], attempts: int = 5) -> T:
    """Run ``work`` in an atomic block, again from the start if the account structure changed.

    Rolling the block back releases every row it locked, so the next attempt
    takes all its locks in primary-key order from a fresh view of the chains.
    """
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return work()
        except AccountStructureChanged:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def chain_of(locked: dict[int, LockedAccount], account_id: int) -> list[LockedAccount]:
    """The named account first, its root payer last."""
    chain = [locked[account_id]]
    while chain[-1].parent_id is not None:
        if len(chain) >= len(locked):  # more links than locked accounts: a loop
            raise AccountChainLoop(account=chain[0].number)
        chain.append(locked[chain[-1].parent_id])
    return chain
