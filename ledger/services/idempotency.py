"""Idempotency keys: a request is carried out once per (caller, key).

A key seen before replays the original result (``.replayed = True``) when the
request is the same (same operation and the same hashed request), and is
refused with ``idempotency_conflict`` when it differs. The key's row is
written by the writer in the same statement / transaction as the posting, so
a key exists exactly when its effect does.

The key decides before any answer: a request refused because its key was seen
(the key's unique index, or the state its first run left: funds spent, hold
captured, already reversed) replays that run when it carries the same body,
and conflicts otherwise. Only a request whose key is unseen (or that has none)
learns it is a duplicate of someone else's posting (``duplicate``: a payment's
external id, ``duplicate_payment``). A fresh key is the common case, so it is
not looked up before posting (a round trip per posting): a seen key's request
runs until the write or a refusal stops it, rolls back, and then replays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import IntegrityError

from core.caller import Caller
from core.errors import ValidationFailed
from core.handover import run_handed_over
from ledger.exceptions import DomainError, IdempotencyConflict
from ledger.models import Hold, Transaction
from ledger.services.locking import PREPARE, hot_cursor, run_locked
from ledger.services.money import request_hash
from ledger.services.sql import PAYMENT_EXTERNAL_ID_CONSTRAINT, REPLAY_MANY_SQL, REPLAY_SQL

T = TypeVar("T")

IDEMPOTENCY_CONSTRAINT = "ledger_idempotencykey_unique_per_caller"
# Unique violations that a concurrent twin of the same request can cause.
TWIN_CONSTRAINTS = {IDEMPOTENCY_CONSTRAINT, PAYMENT_EXTERNAL_ID_CONSTRAINT}


@dataclass(slots=True)
class IdempotencyRecord:
    caller: str
    key: str
    operation: str
    request_hash: str


def constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", "") or ""


def check_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= 255):
        raise ValidationFailed(
            "An idempotency key has 1 to 255 characters.", field="idempotency_key"
        )


def record_for(
    caller: Caller, key: str | None, operation: str, request: dict[str, Any]
) -> IdempotencyRecord | None:
    """The record a key leaves behind (None without a key); checks the key's length."""
    check_key(key)
    if key is None:
        return None
    return IdempotencyRecord(
        caller.ref, key, operation, request_hash({"operation": operation, **request})
    )


def replay(caller_ref: str, key: str, hashed: str) -> Transaction | Hold | None:
    """The result a key already produced (``replayed``), None if unseen, or a conflict."""
    with hot_cursor() as cursor:
        cursor.execute(REPLAY_SQL, [caller_ref, key], prepare=PREPARE)
        record = cursor.fetchone()
    if record is None:
        return None
    stored_hash, operation, transaction_id, hold_id = record
    if stored_hash != hashed:
        raise IdempotencyConflict(
            "This idempotency key was already used for a different request.",
            key=key,
            operation=operation,
        )
    result: Transaction | Hold
    if transaction_id is not None:
        result = Transaction.objects.get(pk=transaction_id)
    else:
        result = Hold.objects.get(pk=hold_id)
    result.replayed = True
    return result


def replay_many(
    records: Iterable[IdempotencyRecord],
) -> dict[tuple[str, str], tuple[str, str, Transaction | Hold]]:
    """What many keys already produced, in three queries:
    ``{(caller, key): (stored request hash, operation, row)}`` for the keys seen before."""
    wanted = {(r.caller, r.key) for r in records}
    if not wanted:
        return {}
    callers, keys = zip(*wanted, strict=True)
    with hot_cursor() as cursor:
        cursor.execute(REPLAY_MANY_SQL, [list(callers), list(keys)])
        rows = cursor.fetchall()
    txn_ids = {row[4] for row in rows if row[4] is not None}
    hold_ids = {row[5] for row in rows if row[4] is None}
    txns = Transaction.objects.in_bulk(txn_ids) if txn_ids else {}
    holds = Hold.objects.in_bulk(hold_ids) if hold_ids else {}
    return {
        (caller_ref, key): (
            stored_hash,
            operation,
            txns[transaction_id] if transaction_id is not None else holds[hold_id],
        )
        for caller_ref, key, stored_hash, operation, transaction_id, hold_id in rows
    }


def _handing_over(result: T) -> T:
    run_handed_over(result)
    return result


def idempotent(
    *,
    caller: Caller,
    key: str | None,
    operation: str,
    request: dict[str, Any],
    run: Callable[[IdempotencyRecord | None], T],
    duplicate: Callable[[], DomainError | None] | None = None,
) -> T:
    """Run ``run`` once per (caller, key): replay on the same request, refuse a different one.

    A seen key is found by the write (the unique (caller, key) index) or asked after a
    refusal, never before (see the module's docstring). Concurrent duplicates race on
    that index: the loser's insert waits for the winner's commit, fails, and then
    replays the winner.
    ``duplicate`` says whether the request repeats a posting already stored under
    another key or none (a payment's external id): asked when the database refused
    the write with a unique violation, or when a domain error refused it (so a
    payment sent again after its account was closed is still ``duplicate_payment``),
    and never before the key had its say.

    Work a caller handed over (``core.handover``: the API's record of its response) runs
    in the posting's transaction, right after the write.
    """
    record = record_for(caller, key, operation, request)
    try:
        result = run_locked(lambda: _handing_over(run(record)))
    except IntegrityError as exc:
        name = constraint_name(exc)
        if record is not None and name in TWIN_CONSTRAINTS:
            existing = replay(record.caller, record.key, record.request_hash)
            if existing is not None:
                return existing  # type: ignore[return-value]
        if duplicate is not None and name == PAYMENT_EXTERNAL_ID_CONSTRAINT:
            refusal = duplicate()
            if refusal is not None:
                raise refusal from None
        raise
    except DomainError:
        # The key's first run (earlier, or a concurrent duplicate that committed while
        # this one waited for its locks) may have left the state that refused this one
        # before it reached the key (funds spent, hold captured, already reversed). The
        # key decides: replay that run for the same request, conflict for another.
        if record is not None:
            existing = replay(record.caller, record.key, record.request_hash)
            if existing is not None:
                return existing  # type: ignore[return-value]
        refusal = duplicate() if duplicate is not None else None
        if refusal is not None:
            raise refusal from None
        raise
    result.replayed = False
    return result
