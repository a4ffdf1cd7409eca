"""Locking the accounts a posting touches, and the cursor the hot path runs on.

``lock_accounts`` locks the named client accounts *and all their ancestors up
to the root payer* in one statement, ordered by primary key (``FOR NO KEY
UPDATE``), so concurrent postings never deadlock and never overspend. The
rows come back as ``LockedAccount``s: the rules (``rules.py``) read and change
them in memory, and the writer (``writer.py``) writes the changed ones back
once. ``run_locked`` starts a posting again when an account chain changed
between reading and locking it.

``hot_cursor`` is the connection's long-lived psycopg cursor with
server-side prepared statements (``BILLING_PREPARED_STATEMENTS``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connection, transaction
from psycopg.types.numeric import Int8Dumper

from accounts.exceptions import AccountChainLoop
from accounts.models import Account
from ledger.exceptions import DomainError, InvalidOperation
from ledger.services.money import ZERO
from ledger.services.sql import LOCK_SQL, LOCKED_FIELDS

T = TypeVar("T")


class AccountStructureChanged(DomainError):
    """A parent link changed between reading an account chain and locking it.

    Services roll back and start again (``run_locked``); only a caller that
    keeps retrying into a structure that keeps changing ever sees it.
    """

    code = "account_structure_changed"
    status = 409
    default_message = "The account structure changed while posting; try again."


# --------------------------------------------------------------------------- hot cursor

# Server-side prepared statements for the posting path: the lock and write
# statements are planned once per connection instead of once per posting.
# Turn off (BILLING_PREPARED_STATEMENTS=0) behind a transaction-pooling proxy.
PREPARE = settings.BILLING_PREPARED_STATEMENTS or None


def hot_cursor() -> _ReusedCursor | _DjangoCursor:
    """A cursor on Django's own connection (and so inside its transaction) for the posting path.

    With prepared statements on, a server-side-binding psycopg cursor (Django's
    default client-side cursor cannot prepare); otherwise Django's cursor.
    """
    if not PREPARE:
        return _DjangoCursor(connection.cursor())
    connection.ensure_connection()
    raw = connection.connection
    cursor = getattr(connection, "_ledger_hot_cursor", None)
    if cursor is None or cursor.connection is not raw or cursor.closed:
        # One cursor per connection, reused: building one (and its adapters) per
        # statement costs more than the statement's own client-side work.
        cursor = psycopg.Cursor(raw)
        cursor.adapters.register_dumper(int, Int8Dumper)
        connection._ledger_hot_cursor = cursor
    return _ReusedCursor(cursor)


class _ReusedCursor:
    """The connection's long-lived cursor; leaving the block does not close it.

    Errors surface as Django's database exceptions (``IntegrityError``, ...), as
    they would through Django's own cursor.
    """

    __slots__ = ("_cursor",)

    def __init__(self, cursor: psycopg.Cursor) -> None:
        self._cursor = cursor

    def __enter__(self) -> _ReusedCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, params: Any = None, prepare: Any = None) -> None:
        with connection.wrap_database_errors:
            self._cursor.execute(sql, params, prepare=prepare)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with connection.wrap_database_errors:
            return self._cursor.fetchall()

    def pipelined(self) -> Any:
        return self._cursor.connection.pipeline()


class _DjangoCursor:
    """Adapts Django's cursor to accept (and ignore) ``prepare=``."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __enter__(self) -> _DjangoCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def execute(self, sql: str, params: Any = None, prepare: Any = None) -> None:
        self._cursor.execute(sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def pipelined(self) -> Any:
        return contextlib.nullcontext()


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
