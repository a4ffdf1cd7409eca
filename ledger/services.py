"""Ledger services: every operation that moves money.

Each posting runs in one database transaction that
1. replays the original result when the caller's idempotency key was seen
   (or refuses with ``idempotency_conflict`` when the request differs);
2. locks every client account it touches *and all their ancestors up to the
   root payer* in one statement, ordered by primary key (``FOR NO KEY UPDATE``),
   so concurrent postings never deadlock and never overspend;
3. checks status, currency, write-off limits and available funds in Python
   on the locked rows, raising a ``DomainError`` with a stable code;
4. writes the transaction, its entries, the idempotency record and the new
   running state of the locked accounts in a single SQL statement.

System accounts (clearing, revenue, refunds, ...) are never locked: entries
are appended to them and their balance is the sum of those entries.

Write-off counters (``spent_day`` / ``spent_month``) live on each account of
the chain and are updated under the same lock. They count discretionary
write-offs (debits, transfers out, hold captures) and active holds; releasing
a hold or reversing a write-off on the same day / month gives the room back.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from decimal import InvalidOperation as DecimalInvalidOperation
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from psycopg.types.numeric import Int8Dumper

from accounts.exceptions import AccountChainLoop
from accounts.models import Account
from accounts.services import account_numbers_allocate
from brands.models import Brand, Service
from core.caller import SYSTEM, Caller
from core.errors import ValidationFailed
from ledger.exceptions import (
    AccountBlocked,
    AccountClosed,
    AlreadyReversed,
    CreditLimitExpired,
    CreditPeriodExpired,
    CurrencyMismatch,
    DomainError,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidOperation,
    PermissionDenied,
    WriteOffLimitExceeded,
)
from ledger.models import Entry, Hold, IdempotencyKey, Transaction, TransactionKind
from ledger.signals import hold_changed, transaction_posted

ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("9999999999999999.99")  # NUMERIC(18,2)
# Minor units per currency where they differ from two.
CURRENCY_DECIMALS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3}
KIND_DISCRETIONARY = {TransactionKind.DEBIT, TransactionKind.TRANSFER, TransactionKind.HOLD_CAPTURE}

T = TypeVar("T")


class AccountStructureChanged(DomainError):
    """A parent link changed between reading an account chain and locking it.

    Services roll back and start again (``run_locked``); only a caller that
    keeps retrying into a structure that keeps changing ever sees it.
    """

    code = "account_structure_changed"
    status = 409
    default_message = "The account structure changed while posting; try again."


class BrandNotLinked(DomainError):
    code = "brand_not_linked"
    default_message = "The account is not linked to this brand."


# --------------------------------------------------------------------------- input helpers


def money(amount: Any, currency: str | None = None) -> Decimal:
    """A positive amount with no more decimals than the currency allows, or ``InvalidAmount``.

    Floats are refused outright: money never passes through binary floating point.
    """
    if isinstance(amount, float | bool):
        raise InvalidAmount("Amounts are decimal strings, never floats.", amount=repr(amount))
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except (DecimalInvalidOperation, ValueError, TypeError):
        raise InvalidAmount(amount=str(amount)) from None
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise InvalidAmount(amount=str(amount))
    # Amounts are stored as NUMERIC(18,2): a third decimal is refused, never rounded away.
    places = min(CURRENCY_DECIMALS.get(currency or "", 2), 2)
    quantum = Decimal(1).scaleb(-places)
    if value != value.quantize(quantum):
        raise InvalidAmount(
            f"At most {places} decimal places are allowed.", amount=str(amount), places=places
        )
    return value.quantize(Decimal("0.01"))


def _pk(obj: Any) -> int | None:
    if obj is None:
        return None
    return obj if isinstance(obj, int) else obj.pk


def _request_hash(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, cls=DjangoJSONEncoder, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def business_date(moment: datetime) -> date:
    """The operator's calendar date of a moment (limits per day and month are counted in it)."""
    return timezone.localtime(moment).date()


# --------------------------------------------------------------------------- system accounts

_system_account_ids: dict[str, int] = {}


def clear_system_account_cache() -> None:
    """Forget cached system-account ids (tests that truncate tables call this)."""
    _system_account_ids.clear()


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
    key = ":".join(
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


# --------------------------------------------------------------------------- hot path SQL

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


_LOCK_SQL = """
WITH RECURSIVE chain(id, parent_id) AS (
    SELECT id, parent_id FROM accounts_account WHERE id = ANY(%s::bigint[])
  UNION
    SELECT a.id, a.parent_id FROM accounts_account a JOIN chain c ON a.id = c.parent_id
)
SELECT a.id, a.number, a.kind, a.currency, a.status, a.parent_id,
       ARRAY(SELECT b.brand_id FROM accounts_account_brands b WHERE b.account_id = a.id),
       a.credit_limit, a.credit_period_days, a.credit_expires_at,
       a.write_off_limit_transaction, a.write_off_limit_day, a.write_off_limit_month,
       a.balance, a.held, a.negative_since,
       a.spent_day, a.spent_day_on, a.spent_month, a.spent_month_on
FROM accounts_account a
WHERE a.id = ANY(ARRAY(SELECT id FROM chain))
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""


def lock_accounts(account_ids: Iterable[int]) -> dict[int, LockedAccount]:
    """Lock the given client accounts and every ancestor up to their root payers.

    One statement, rows locked in primary-key order. If a parent link changed
    between reading the chain and locking it (an account was just attached
    under a payer), raise ``AccountStructureChanged``: locking the new payer now
    would wait for a lower id while holding a higher one, and deadlock against
    a posting that read the new chain. ``run_locked`` rolls back, releasing
    these locks, and starts again.
    """
    wanted = sorted(set(account_ids))
    with hot_cursor() as cursor, cursor.pipelined():
        # Pipelined: psycopg's implicit BEGIN travels with this statement
        # instead of costing a round trip of its own.
        cursor.execute(_LOCK_SQL, [wanted], prepare=PREPARE)
        locked = {row[0]: LockedAccount(*row) for row in cursor.fetchall()}
    missing = [pk for pk in wanted if pk not in locked]
    if missing:
        raise Account.DoesNotExist(f"No account with id {missing[0]}.")
    if not all(acc.parent_id is None or acc.parent_id in locked for acc in locked.values()):
        raise AccountStructureChanged(accounts=wanted)
    for pk in wanted:
        if locked[pk].kind != Account.Kind.CLIENT:
            raise InvalidOperation(
                "System accounts are not posted to directly.", account=locked[pk].number
            )
    return locked


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


# --------------------------------------------------------------------------- checks


def check_status(chain: list[LockedAccount], *, allow_blocked: bool) -> None:
    for acc in chain:
        if acc.status == Account.Status.CLOSED:
            raise AccountClosed(f"Account {acc.number} is closed.", account=acc.number)
    if not allow_blocked:
        for acc in chain:
            if acc.status == Account.Status.BLOCKED:
                raise AccountBlocked(f"Account {acc.number} is blocked.", account=acc.number)


def check_currency(
    account: LockedAccount, currency: str | None, amount: Decimal | None = None
) -> None:
    """Refuse another currency than the account's, and fractions the account's currency does
    not have (1.50 JPY) even when the caller named no currency."""
    if currency is not None and currency != account.currency:
        raise CurrencyMismatch(
            f"Account {account.number} is in {account.currency}, not {currency}.",
            account=account.number,
            account_currency=account.currency,
            currency=currency,
        )
    if amount is not None and CURRENCY_DECIMALS.get(account.currency, 2) < 2:
        money(amount, account.currency)


def check_write_off_limits(chain: list[LockedAccount], amount: Decimal, today: date) -> None:
    for acc in chain:
        limits = (
            ("transaction", acc.write_off_limit_transaction, ZERO),
            ("day", acc.write_off_limit_day, acc.spent_on_day(today)),
            ("month", acc.write_off_limit_month, acc.spent_in_month(today)),
        )
        for period, limit, spent in limits:
            if limit is not None and spent + amount > limit:
                raise WriteOffLimitExceeded(
                    f"The {period} write-off limit of account {acc.number} would be exceeded.",
                    account=acc.number,
                    period=period,
                    limit=str(limit),
                    remaining=str(max(limit - spent, ZERO)),
                    requested=str(amount),
                )


def credit_refusal(payer: LockedAccount | Account, now: datetime) -> type[DomainError] | None:
    """Why the payer's credit line cannot be used now, or None when it can."""
    if payer.credit_expires_at is not None and payer.credit_expires_at < business_date(now):
        return CreditLimitExpired
    if (
        payer.credit_period_days is not None
        and payer.negative_since is not None
        and now >= payer.negative_since + timedelta(days=payer.credit_period_days)
    ):
        return CreditPeriodExpired
    return None


def check_funds(payer: LockedAccount, amount: Decimal, now: datetime) -> None:
    own = payer.balance - payer.held
    if amount <= own:
        return
    if payer.credit_limit > 0:
        refusal = credit_refusal(payer, now)
        if refusal is not None:
            raise refusal(account=payer.number, balance=str(payer.balance))
        if amount <= own + payer.credit_limit:
            return
        available = own + payer.credit_limit
    else:
        available = own
    raise InsufficientFunds(
        f"Account {payer.number} has {max(available, ZERO)} available.",
        account=payer.number,
        available=str(max(available, ZERO)),
        requested=str(amount),
    )


def check_brand(account: LockedAccount, brand_id: int | None, service: Service | None) -> None:
    if service is not None and service.brand_id != brand_id:
        raise InvalidOperation(
            "The service belongs to another brand.", service=service.pk, brand=brand_id
        )
    if brand_id is not None and brand_id not in account.brand_ids:
        raise BrandNotLinked(
            f"Account {account.number} is not linked to this brand.",
            account=account.number,
            brand=brand_id,
        )


# --------------------------------------------------------------------------- state changes


def apply_to_balance(payer: LockedAccount, amount: Decimal, now: datetime) -> Decimal:
    """Move the payer's running balance, tracking since when it is negative; return it."""
    payer.balance += amount
    if abs(payer.balance) > MAX_AMOUNT:
        raise InvalidAmount(
            "The balance would leave the range the ledger stores.", account=payer.number
        )
    if payer.balance < 0:
        if payer.negative_since is None:
            payer.negative_since = now
    else:
        payer.negative_since = None
    payer.dirty = True
    return payer.balance


def spend(chain: Iterable[LockedAccount], amount: Decimal, today: date) -> None:
    month = today.replace(day=1)
    for acc in chain:
        acc.spent_day = acc.spent_on_day(today) + amount
        acc.spent_day_on = today
        acc.spent_month = acc.spent_in_month(today) + amount
        acc.spent_month_on = month
        acc.dirty = True


def unspend(chain: Iterable[LockedAccount], amount: Decimal, spent_on: date, today: date) -> None:
    """Give back write-off room for an amount counted on ``spent_on`` (only if still current)."""
    if amount <= 0:
        return
    for acc in chain:
        if spent_on == today and acc.spent_day_on == today:
            acc.spent_day = max(acc.spent_day - amount, ZERO)
            acc.dirty = True
        if spent_on.replace(day=1) == acc.spent_month_on == today.replace(day=1):
            acc.spent_month = max(acc.spent_month - amount, ZERO)
            acc.dirty = True


# --------------------------------------------------------------------------- writing

_TXN_COLUMNS = (
    "kind",
    "account_id",
    "counter_account_id",
    "amount",
    "currency",
    "brand_id",
    "service_id",
    "channel",
    "subject_type",
    "subject_id",
    "metadata",
    "memo",
    "external_id",
    "reversal_of_id",
    "hold_id",
    "caller",
    "created_by_id",
    "request_id",
    "created_at",
)


@dataclass(slots=True)
class Leg:
    account_id: int
    amount: Decimal
    subaccount_id: int | None = None
    balance_after: Decimal | None = None


@dataclass(slots=True)
class IdempotencyRecord:
    caller: str
    key: str
    operation: str
    request_hash: str


_ACCOUNT_STATE_ROW = (
    "(%s::bigint, %s::numeric, %s::numeric, %s::timestamptz,"
    " %s::numeric, %s::date, %s::numeric, %s::date)"
)


@functools.cache
def _accounts_update_sql(count: int) -> str:
    """UPDATE of the running state of ``count`` locked accounts (first param: updated_at)."""
    return (
        "UPDATE accounts_account a SET balance = v.balance, held = v.held,"
        " negative_since = v.negative_since, spent_day = v.spent_day,"
        " spent_day_on = v.spent_day_on, spent_month = v.spent_month,"
        " spent_month_on = v.spent_month_on, updated_at = %s"
        f" FROM (VALUES {', '.join([_ACCOUNT_STATE_ROW] * count)}) AS v(id, balance, held,"
        " negative_since, spent_day, spent_day_on, spent_month, spent_month_on)"
        " WHERE a.id = v.id"
    )


def _accounts_update_params(dirty: list[LockedAccount], now: datetime) -> list[Any]:
    params: list[Any] = [now]
    for acc in dirty:
        params += (
            acc.id,
            acc.balance,
            acc.held,
            acc.negative_since,
            acc.spent_day,
            acc.spent_day_on,
            acc.spent_month,
            acc.spent_month_on,
        )
    return params


@functools.cache
def _posting_sql(legs: int, with_idempotency: bool, dirty_accounts: int) -> str:
    """The one-statement write of a posting, by shape (so each shape is prepared once)."""
    placeholders = ", ".join("%s::jsonb" if col == "metadata" else "%s" for col in _TXN_COLUMNS)
    entry_rows = ", ".join(["(%s::bigint, %s::bigint, %s::numeric, %s::numeric)"] * legs)
    sql = [
        f"WITH t AS (INSERT INTO ledger_transaction ({', '.join(_TXN_COLUMNS)})"
        f" VALUES ({placeholders}) RETURNING id),",
        " e AS (INSERT INTO ledger_entry"
        " (transaction_id, account_id, subaccount_id, amount, balance_after, currency, created_at)"
        " SELECT t.id, v.account_id, v.subaccount_id, v.amount, v.balance_after, %s, %s"
        f" FROM t, (VALUES {entry_rows}) AS v(account_id, subaccount_id, amount, balance_after)"
        " RETURNING id)",
    ]
    if with_idempotency:
        sql.append(
            ", i AS (INSERT INTO ledger_idempotencykey"
            " (caller, key, operation, request_hash, transaction_id, hold_id, created_at)"
            " SELECT %s, %s, %s, %s, t.id, NULL, %s FROM t)"
        )
    if dirty_accounts:
        sql.append(f", u AS ({_accounts_update_sql(dirty_accounts)})")
    sql.append(" SELECT t.id, ARRAY(SELECT id FROM e ORDER BY id) FROM t")
    return "".join(sql)


def write_accounts(accounts: Iterable[LockedAccount], now: datetime) -> None:
    """Write the running state of the changed locked accounts (one UPDATE)."""
    dirty = [acc for acc in accounts if acc.dirty]
    if dirty:
        with hot_cursor() as cursor:
            cursor.execute(
                _accounts_update_sql(len(dirty)),
                _accounts_update_params(dirty, now),
                prepare=PREPARE,
            )


def write_posting(
    *,
    header: dict[str, Any],
    legs: list[Leg],
    accounts: Iterable[LockedAccount],
    now: datetime,
    idempotency: IdempotencyRecord | None,
) -> Transaction:
    """Insert the transaction, its entries, the idempotency record and the account state.

    One statement with data-modifying CTEs: one round trip for the whole write.
    """
    if sum(leg.amount for leg in legs) != 0:
        raise AssertionError("A posting's entries must sum to zero.")
    header = {**header, "created_at": now}
    params: list[Any] = [
        json.dumps(header.get(col) or {}, cls=DjangoJSONEncoder)
        if col == "metadata"
        else header.get(col, "" if col in _STRING_COLUMNS else None)
        for col in _TXN_COLUMNS
    ]
    params += (header["currency"], now)
    for leg in legs:
        params += (leg.account_id, leg.subaccount_id, leg.amount, leg.balance_after)
    if idempotency is not None:
        params += (
            idempotency.caller,
            idempotency.key,
            idempotency.operation,
            idempotency.request_hash,
            now,
        )
    dirty = [acc for acc in accounts if acc.dirty]
    if dirty:
        params += _accounts_update_params(dirty, now)
    sql = _posting_sql(len(legs), idempotency is not None, len(dirty))
    with hot_cursor() as cursor:
        cursor.execute(sql, params, prepare=PREPARE)
        txn_id, entry_ids = cursor.fetchone()
    txn = _transaction_from_row(txn_id, header)
    # Entry ids come back in insertion order, which is the order of the legs.
    _attach_entries(txn, entry_ids, legs, now)
    transaction_posted.send(sender=Transaction, transaction=txn)
    return txn


_STRING_COLUMNS = {"channel", "subject_type", "subject_id", "memo", "external_id", "request_id"}

_TXN_FIELD_NAMES = [f.attname for f in Transaction._meta.concrete_fields]
_TXN_STRING_DEFAULTS = {
    f.attname: f.get_default() for f in Transaction._meta.concrete_fields if f.has_default()
} | {column: "" for column in _STRING_COLUMNS}


class _PostedEntries(QuerySet):
    """The entries of a transaction this process just wrote, built only if read.

    Served from the transaction's prefetch cache, so reading them (the API's
    response) costs no query, and not reading them (most callers) costs nothing.
    """

    def _fetch_all(self) -> None:
        if self._result_cache is None:
            txn_id, entry_ids, legs, currency, now = self._posted
            self._result_cache = [
                Entry.from_db(
                    "default",
                    _ENTRY_FIELD_NAMES,
                    (
                        entry_id,
                        txn_id,
                        leg.account_id,
                        leg.subaccount_id,
                        leg.amount,
                        currency,
                        leg.balance_after,
                        now,
                    ),
                )
                for entry_id, leg in zip(entry_ids, legs, strict=True)
            ]
        super()._fetch_all()


_ENTRY_FIELD_NAMES = [
    "id", "transaction_id", "account_id", "subaccount_id", "amount", "currency",
    "balance_after", "created_at",
]  # fmt: skip


def _attach_entries(txn: Transaction, entry_ids: list[int], legs: list[Leg], now: datetime) -> None:
    """Give a just-written transaction its entries as if prefetched."""
    queryset = _PostedEntries(model=Entry)
    queryset._posted = (txn.pk, entry_ids, legs, txn.currency, now)
    queryset._prefetch_done = True
    txn._prefetched_objects_cache = {"entries": queryset}
    txn.reversed_by_id = None  # just posted: nothing reverses it yet


def _transaction_from_row(txn_id: int, header: dict[str, Any]) -> Transaction:
    """The model instance of a row just inserted, built like a fetched row (no query)."""
    values = {**_TXN_STRING_DEFAULTS, **header, "id": txn_id}
    return Transaction.from_db(
        "default", _TXN_FIELD_NAMES, [values.get(n) for n in _TXN_FIELD_NAMES]
    )


def _header(
    *,
    kind: str,
    caller: Caller,
    account_id: int,
    amount: Decimal,
    currency: str,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "account_id": account_id,
        "amount": amount,
        "currency": currency,
        "caller": caller.ref,
        "created_by_id": caller.user_id,
        "request_id": caller.request_id,
        **fields,
    }


# --------------------------------------------------------------------------- idempotency


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", "") or ""


IDEMPOTENCY_CONSTRAINT = "ledger_idempotencykey_unique_per_caller"


_REPLAY_SQL = (
    "SELECT request_hash, operation, transaction_id, hold_id FROM ledger_idempotencykey"
    " WHERE caller = %s AND key = %s"
)


def _replay(caller: Caller, key: str, request_hash: str) -> Transaction | Hold | None:
    with hot_cursor() as cursor:
        cursor.execute(_REPLAY_SQL, [caller.ref, key], prepare=PREPARE)
        record = cursor.fetchone()
    if record is None:
        return None
    stored_hash, operation, transaction_id, hold_id = record
    if stored_hash != request_hash:
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


def idempotent(
    *,
    caller: Caller,
    key: str | None,
    operation: str,
    request: dict[str, Any],
    run: Callable[[IdempotencyRecord | None], T],
) -> T:
    """Run ``run`` once per (caller, key): replay on the same request, refuse a different one.

    Concurrent duplicates race on the unique (caller, key) index: the loser's
    insert waits for the winner's commit, fails, and then replays the winner.
    """
    if key is not None and not (0 < len(key) <= 255):
        raise ValidationFailed(
            "An idempotency key has 1 to 255 characters.", field="idempotency_key"
        )
    record = None
    if key is not None:
        record = IdempotencyRecord(
            caller.ref, key, operation, _request_hash({"operation": operation, **request})
        )
        existing = _replay(caller, key, record.request_hash)
        if existing is not None:
            return existing  # type: ignore[return-value]
    try:
        result = run_locked(lambda: run(record))
    except IntegrityError as exc:
        if record is not None and _constraint_name(exc) == IDEMPOTENCY_CONSTRAINT:
            existing = _replay(caller, record.key, record.request_hash)
            if existing is not None:
                return existing  # type: ignore[return-value]
        raise
    except DomainError:
        # A concurrent duplicate may have committed while this one waited for
        # its locks, and the state it left (funds spent, hold captured, already
        # reversed) refused this one before it reached the key. The key decides:
        # replay the winner for the same request, conflict for a different one.
        if record is not None:
            existing = _replay(caller, record.key, record.request_hash)
            if existing is not None:
                return existing  # type: ignore[return-value]
        raise
    result.replayed = False
    return result


# --------------------------------------------------------------------------- payments


def payment_post(
    *,
    account: Account | int,
    amount: Any,
    channel: str = Account.Channel.OTHER,
    external_id: str = "",
    memo: str = "",
    currency: str | None = None,
    brand: Brand | int | None = None,
    metadata: dict[str, Any] | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Money received for an account: credit the client (+), debit the channel's clearing (-).

    Accepted on blocked accounts (a blocked client may still pay its debt),
    refused on closed ones. A payment to a sub-account goes to its root payer.
    Locks the account's chain.
    """
    account_id = _pk(account)
    amount = money(amount, currency)
    if channel not in Account.Channel.values:
        raise ValidationFailed(f"Unknown payment channel {channel!r}.", field="channel")
    request = {
        "account": account_id,
        "amount": amount,
        "channel": channel,
        "external_id": external_id,
        "memo": memo,
        "brand": _pk(brand),
        "metadata": metadata or {},
    }

    def run(record: IdempotencyRecord | None) -> Transaction:
        locked = lock_accounts([account_id])
        now = timezone.now()
        chain = chain_of(locked, account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, currency, amount)
        check_status(chain, allow_blocked=True)
        clearing = system_account_id(Account.Kind.CLEARING, named.currency, channel=channel)
        after = apply_to_balance(payer, amount, now)
        return write_posting(
            header=_header(
                kind=TransactionKind.PAYMENT,
                caller=caller,
                account_id=account_id,
                amount=amount,
                currency=named.currency,
                channel=channel,
                external_id=external_id,
                memo=memo,
                brand_id=_pk(brand),
                metadata=metadata or {},
            ),
            legs=[
                Leg(payer.id, amount, _sub(named, payer), after),
                Leg(clearing, -amount),
            ],
            accounts=chain,
            now=now,
            idempotency=record,
        )

    return idempotent(
        caller=caller, key=idempotency_key, operation="payment", request=request, run=run
    )


def _sub(named: LockedAccount, payer: LockedAccount) -> int | None:
    return named.id if named.id != payer.id else None


def _charge(
    *,
    kind: str,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None,
    subject_type: str,
    subject_id: str,
    metadata: dict[str, Any] | None,
    memo: str,
    currency: str | None,
    caller: Caller,
    idempotency_key: str | None,
) -> Transaction:
    account_id = _pk(account)
    brand_id = _pk(brand)
    if brand_id is None:
        raise ValidationFailed("A brand is required.", field="brand")
    amount = money(amount, currency)
    service_obj = (
        Service.objects.only("id", "brand_id").get(pk=service)
        if isinstance(service, int)
        else service
    )
    discretionary = kind == TransactionKind.DEBIT
    request = {
        "account": account_id,
        "amount": amount,
        "brand": brand_id,
        "service": _pk(service),
        "subject_type": subject_type,
        "subject_id": subject_id,
        "metadata": metadata or {},
        "memo": memo,
    }

    def run(record: IdempotencyRecord | None) -> Transaction:
        locked = lock_accounts([account_id])
        now = timezone.now()
        today = business_date(now)
        chain = chain_of(locked, account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, currency, amount)
        check_status(chain, allow_blocked=not discretionary)
        check_brand(named, brand_id, service_obj)
        if discretionary:
            check_write_off_limits(chain, amount, today)
            check_funds(payer, amount, now)
            spend(chain, amount, today)
        revenue = system_account_id(
            Account.Kind.REVENUE,
            named.currency,
            brand_id=brand_id,
            service_id=_pk(service_obj),
        )
        # A credit note is an accrual's mirror: it gives the client back part of a charge.
        delta = amount if kind == TransactionKind.CREDIT_NOTE else -amount
        after = apply_to_balance(payer, delta, now)
        return write_posting(
            header=_header(
                kind=kind,
                caller=caller,
                account_id=account_id,
                amount=amount,
                currency=named.currency,
                brand_id=brand_id,
                service_id=_pk(service_obj),
                subject_type=subject_type,
                subject_id=subject_id,
                metadata=metadata or {},
                memo=memo,
            ),
            legs=[Leg(payer.id, delta, _sub(named, payer), after), Leg(revenue, -delta)],
            accounts=chain,
            now=now,
            idempotency=record,
        )

    return idempotent(caller=caller, key=idempotency_key, operation=kind, request=request, run=run)


def debit_post(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """A discretionary write-off (a food order, a partner charge): debit the client, credit revenue.

    Refused, changing nothing, when any account in the chain is blocked or
    closed, when a write-off limit of any account in the chain would be
    exceeded, or when the root payer's available funds (balance - held +
    usable credit) do not cover it. Locks the account's chain in id order.
    """
    return _charge(
        kind=TransactionKind.DEBIT,
        account=account,
        amount=amount,
        brand=brand,
        service=service,
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        currency=currency,
        caller=caller,
        idempotency_key=idempotency_key,
    )


def accrual_post(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """A charge that creates debt (invoice, penalty): never refused for funds or limits.

    Allowed on blocked accounts; refused only when the chain has a closed account.
    """
    return _charge(
        kind=TransactionKind.ACCRUAL,
        account=account,
        amount=amount,
        brand=brand,
        service=service,
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        currency=currency,
        caller=caller,
        idempotency_key=idempotency_key,
    )


def credit_note_post(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Give a client back part of what an accrual charged (an invoice's credit note).

    The mirror of ``accrual_post``: credits the client (+) and debits the
    brand's revenue account for the service (-), so revenue shows what was
    finally billed. Never refused for funds or limits; allowed on blocked
    accounts, refused on closed ones and for a brand the account is not linked
    to. Locks the account's chain.
    """
    return _charge(
        kind=TransactionKind.CREDIT_NOTE,
        account=account,
        amount=amount,
        brand=brand,
        service=service,
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        currency=currency,
        caller=caller,
        idempotency_key=idempotency_key,
    )


def transfer_post(
    *,
    from_account: Account | int,
    to_account: Account | int,
    amount: Any,
    memo: str = "",
    currency: str | None = None,
    metadata: dict[str, Any] | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Move funds between two payers. The sending side is checked like a debit.

    Both chains are locked in one statement in id order, so A->B and B->A in
    parallel never deadlock. The receiving account may be blocked, not closed.
    """
    source_id, target_id = _pk(from_account), _pk(to_account)
    amount = money(amount, currency)
    request = {"from": source_id, "to": target_id, "amount": amount, "memo": memo}

    def run(record: IdempotencyRecord | None) -> Transaction:
        locked = lock_accounts([source_id, target_id])
        now = timezone.now()
        today = business_date(now)
        source = chain_of(locked, source_id)
        target = chain_of(locked, target_id)
        if source[-1].id == target[-1].id:
            raise InvalidOperation(
                "Both accounts draw on the same payer; nothing would move.",
                from_account=source[0].number,
                to_account=target[0].number,
            )
        check_currency(source[0], currency, amount)
        if source[0].currency != target[0].currency:
            raise CurrencyMismatch(from_currency=source[0].currency, to_currency=target[0].currency)
        check_status(source, allow_blocked=False)
        check_status(target, allow_blocked=True)
        check_write_off_limits(source, amount, today)
        check_funds(source[-1], amount, now)
        spend(source, amount, today)
        source_after = apply_to_balance(source[-1], -amount, now)
        target_after = apply_to_balance(target[-1], amount, now)
        return write_posting(
            header=_header(
                kind=TransactionKind.TRANSFER,
                caller=caller,
                account_id=source_id,
                counter_account_id=target_id,
                amount=amount,
                currency=source[0].currency,
                memo=memo,
                metadata=metadata or {},
            ),
            legs=[
                Leg(source[-1].id, -amount, _sub(source[0], source[-1]), source_after),
                Leg(target[-1].id, amount, _sub(target[0], target[-1]), target_after),
            ],
            accounts=locked.values(),
            now=now,
            idempotency=record,
        )

    return idempotent(
        caller=caller, key=idempotency_key, operation="transfer", request=request, run=run
    )


def refund_post(
    *,
    account: Account | int,
    amount: Any,
    channel: str = Account.Channel.OTHER,
    memo: str = "",
    currency: str | None = None,
    metadata: dict[str, Any] | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Pay an overpayment back: debit the client (-), credit refunds payable (+).

    Only the payer's own money can be refunded (balance - held, never credit),
    and only from a payer account. Allowed on blocked accounts.
    """
    account_id = _pk(account)
    amount = money(amount, currency)
    if channel not in Account.Channel.values:
        raise ValidationFailed(f"Unknown payment channel {channel!r}.", field="channel")
    request = {"account": account_id, "amount": amount, "channel": channel, "memo": memo}

    def run(record: IdempotencyRecord | None) -> Transaction:
        locked = lock_accounts([account_id])
        now = timezone.now()
        chain = chain_of(locked, account_id)
        payer = chain[-1]
        if len(chain) > 1:
            raise InvalidOperation(
                "Refunds are made from the payer account, not a sub-account.",
                account=chain[0].number,
                payer=payer.number,
            )
        check_currency(payer, currency, amount)
        check_status(chain, allow_blocked=True)
        own = payer.balance - payer.held
        if amount > own:
            raise InsufficientFunds(
                "Only the client's own funds can be refunded.",
                account=payer.number,
                available=str(max(own, ZERO)),
                requested=str(amount),
            )
        refunds = system_account_id(Account.Kind.REFUNDS, payer.currency, channel=channel)
        after = apply_to_balance(payer, -amount, now)
        return write_posting(
            header=_header(
                kind=TransactionKind.REFUND,
                caller=caller,
                account_id=account_id,
                amount=amount,
                currency=payer.currency,
                channel=channel,
                memo=memo,
                metadata=metadata or {},
            ),
            legs=[Leg(payer.id, -amount, None, after), Leg(refunds, amount)],
            accounts=chain,
            now=now,
            idempotency=record,
        )

    return idempotent(
        caller=caller, key=idempotency_key, operation="refund", request=request, run=run
    )


def adjustment_post(
    *,
    account: Account | int,
    amount: Any,
    reason: str,
    caller: Caller,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Transaction:
    """A manual correction by staff: ``amount`` is signed (+ credits the client, - debits it).

    Needs a staff user with ``ledger.post_adjustment`` and a reason. Never
    refused for funds (it corrects the books); refused on closed accounts.
    """
    user = caller.user
    if user is None or not user.is_staff or not user.has_perm("ledger.post_adjustment"):
        raise PermissionDenied("Only staff with the adjustment permission may adjust balances.")
    if not reason or not reason.strip():
        raise ValidationFailed("An adjustment needs a reason.", field="reason")
    account_id = _pk(account)
    try:
        signed = Decimal(str(amount)) if not isinstance(amount, float | bool) else amount
    except DecimalInvalidOperation:
        raise InvalidAmount(amount=str(amount)) from None
    if isinstance(signed, Decimal) and signed.is_finite() and signed < 0:
        magnitude, sign = money(-signed), -1
    else:
        magnitude, sign = money(amount), 1
    request = {"account": account_id, "amount": magnitude * sign, "reason": reason}

    def run(record: IdempotencyRecord | None) -> Transaction:
        locked = lock_accounts([account_id])
        now = timezone.now()
        chain = chain_of(locked, account_id)
        named, payer = chain[0], chain[-1]
        check_status(chain, allow_blocked=True)
        check_currency(payer, None, magnitude)
        adjustments = system_account_id(Account.Kind.ADJUSTMENTS, payer.currency)
        delta = magnitude * sign
        after = apply_to_balance(payer, delta, now)
        return write_posting(
            header=_header(
                kind=TransactionKind.ADJUSTMENT,
                caller=caller,
                account_id=account_id,
                amount=magnitude,
                currency=payer.currency,
                memo=reason.strip(),
                metadata={**(metadata or {}), "direction": "credit" if sign > 0 else "debit"},
            ),
            legs=[Leg(payer.id, delta, _sub(named, payer), after), Leg(adjustments, -delta)],
            accounts=chain,
            now=now,
            idempotency=record,
        )

    return idempotent(
        caller=caller, key=idempotency_key, operation="adjustment", request=request, run=run
    )


# --------------------------------------------------------------------------- reversals


def transaction_reverse(
    *,
    transaction_obj: Transaction | int,
    reason: str,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Undo a transaction with its mirror image, at most once (a unique constraint guarantees it).

    Never refused for funds: it corrects a mistake and may create debt.
    Refused when a client account involved is closed, for a reversal itself,
    and with ``already_reversed`` the second time. Locks every client account
    of the original (and the named account's chain, whose write-off room is
    given back for a write-off reversed on the same day or month).
    """
    original_id = _pk(transaction_obj)
    if not reason or not reason.strip():
        raise ValidationFailed("A reversal needs a reason.", field="reason")
    request = {"transaction": original_id, "reason": reason}

    def run(record: IdempotencyRecord | None) -> Transaction:
        original = Transaction.objects.get(pk=original_id)
        if original.kind == TransactionKind.REVERSAL:
            raise InvalidOperation("A reversal cannot itself be reversed.", transaction=original.pk)
        if Transaction.objects.filter(reversal_of_id=original.pk).exists():
            raise AlreadyReversed(transaction=original.pk)
        entries = list(Entry.objects.filter(transaction_id=original.pk).order_by("id"))
        client_ids = {e.account_id for e in entries if e.balance_after is not None} | {
            e.subaccount_id for e in entries if e.subaccount_id
        }
        locked = lock_accounts(client_ids | {original.account_id})
        now = timezone.now()
        for entry in entries:
            moved = locked.get(entry.account_id) if entry.balance_after is not None else None
            if moved is not None and moved.parent_id is not None:
                # It paid for itself then and is a funds-free sub-account now: the mirror
                # entry has no balance to land on (and must not hit the new payer's).
                raise InvalidOperation(
                    f"Account {moved.number} has since become a sub-account; correct this"
                    " posting with an adjustment instead.",
                    transaction=original.pk,
                    account=moved.number,
                )
        for acc_id in client_ids:
            check_status(chain_of(locked, acc_id), allow_blocked=True)
        legs = []
        for entry in entries:
            if entry.balance_after is not None:
                after = apply_to_balance(locked[entry.account_id], -entry.amount, now)
                legs.append(Leg(entry.account_id, -entry.amount, entry.subaccount_id, after))
            else:
                legs.append(Leg(entry.account_id, -entry.amount))
        if original.kind in KIND_DISCRETIONARY:
            # A capture counts against the limits of the day its hold reserved the
            # funds, not the day it was captured: give the room back to that day.
            spent_on = (
                Hold.objects.values_list("reserved_on", flat=True).get(pk=original.hold_id)
                if original.kind == TransactionKind.HOLD_CAPTURE
                else business_date(original.created_at)
            )
            unspend(
                chain_of(locked, original.account_id), original.amount, spent_on, business_date(now)
            )
        try:
            with transaction.atomic():
                return write_posting(
                    header=_header(
                        kind=TransactionKind.REVERSAL,
                        caller=caller,
                        account_id=original.account_id,
                        counter_account_id=original.counter_account_id,
                        amount=original.amount,
                        currency=original.currency,
                        brand_id=original.brand_id,
                        service_id=original.service_id,
                        channel=original.channel,
                        subject_type=original.subject_type,
                        subject_id=original.subject_id,
                        memo=reason.strip(),
                        reversal_of_id=original.pk,
                        metadata={"reversed_kind": original.kind},
                    ),
                    legs=legs,
                    accounts=locked.values(),
                    now=now,
                    idempotency=record,
                )
        except IntegrityError as exc:
            if _constraint_name(exc) == "ledger_transaction_reversal_of_id_key":
                raise AlreadyReversed(transaction=original.pk) from None
            raise

    return idempotent(
        caller=caller, key=idempotency_key, operation="reversal", request=request, run=run
    )


# --------------------------------------------------------------------------- holds


def _hold_default_expiry(now: datetime) -> datetime:
    return now + timedelta(minutes=settings.BILLING_HOLD_TTL_MINUTES)


def hold_create(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    expires_at: datetime | None = None,
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Hold:
    """Reserve funds on the root payer for a later capture (a pre-order).

    Checked exactly like a debit; the reserved amount counts against
    ``held`` of the payer and the write-off limits of the whole chain.
    """
    account_id, brand_id = _pk(account), _pk(brand)
    amount = money(amount, currency)
    service_obj = (
        Service.objects.only("id", "brand_id").get(pk=service)
        if isinstance(service, int)
        else service
    )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("A hold must expire in the future.", field="expires_at")
    request = {
        "account": account_id,
        "amount": amount,
        "brand": brand_id,
        "service": _pk(service),
        "subject_type": subject_type,
        "subject_id": subject_id,
        "expires_at": expires_at,
        "metadata": metadata or {},
        "memo": memo,
    }

    def run(record: IdempotencyRecord | None) -> Hold:
        locked = lock_accounts([account_id])
        now = timezone.now()
        today = business_date(now)
        chain = chain_of(locked, account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, currency, amount)
        check_status(chain, allow_blocked=False)
        check_brand(named, brand_id, service_obj)
        check_write_off_limits(chain, amount, today)
        check_funds(payer, amount, now)
        spend(chain, amount, today)
        payer.held += amount
        payer.dirty = True
        hold = Hold.objects.create(
            account_id=account_id,
            payer_id=payer.id,
            amount=amount,
            currency=named.currency,
            brand_id=brand_id,
            service_id=_pk(service_obj),
            subject_type=subject_type,
            subject_id=subject_id,
            metadata=metadata or {},
            memo=memo,
            expires_at=expires_at or _hold_default_expiry(now),
            reserved_on=today,
            caller=caller.ref,
            created_by_id=caller.user_id,
            request_id=caller.request_id,
            created_at=now,
        )
        write_accounts(chain, now)
        if record is not None:
            IdempotencyKey.objects.create(
                caller=record.caller,
                key=record.key,
                operation=record.operation,
                request_hash=record.request_hash,
                hold=hold,
                created_at=now,
            )
        hold_changed.send(sender=Hold, hold=hold, previous_status=None)
        return hold

    return idempotent(
        caller=caller, key=idempotency_key, operation="hold_create", request=request, run=run
    )


def _lock_hold(hold_id: int) -> tuple[dict[int, LockedAccount], Hold, datetime]:
    """Lock the hold's account chain (and its original payer), then the hold itself."""
    ids = Hold.objects.filter(pk=hold_id).values_list("account_id", "payer_id").first()
    if ids is None:
        raise Hold.DoesNotExist(f"No hold with id {hold_id}.")
    locked = lock_accounts(ids)
    hold = Hold.objects.select_for_update().get(pk=hold_id)
    return locked, hold, timezone.now()


def _release(
    locked: dict[int, LockedAccount], hold: Hold, captured: Decimal, now: datetime
) -> None:
    """Take the hold off the payer's ``held``; give back limit room for what was not captured."""
    payer = locked[hold.payer_id]
    payer.held -= hold.amount
    payer.dirty = True
    unspend(
        chain_of(locked, hold.account_id),
        hold.amount - captured,
        hold.reserved_on,
        business_date(now),
    )


def hold_capture(
    *,
    hold: Hold | int,
    amount: Any = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Turn a hold into a write-off, fully or partly; a partial capture releases the rest.

    Not refused for funds or limits (they were checked when reserving), nor
    for a blocked account; refused with ``hold_not_active`` once the hold is
    captured, voided or past its expiry.
    """
    hold_id = _pk(hold)
    capture_amount = None if amount is None else money(amount)
    request = {"hold": hold_id, "amount": capture_amount}

    def run(record: IdempotencyRecord | None) -> Transaction:
        locked, hold_obj, now = _lock_hold(hold_id)
        if hold_obj.status != Hold.Status.ACTIVE or hold_obj.expires_at <= now:
            raise HoldNotActive(hold=hold_obj.pk, status=hold_obj.status)
        captured = (
            hold_obj.amount if capture_amount is None else money(capture_amount, hold_obj.currency)
        )
        if captured > hold_obj.amount:
            raise InvalidAmount(
                "A capture cannot exceed the held amount.",
                held=str(hold_obj.amount),
                requested=str(captured),
            )
        chain = chain_of(locked, hold_obj.account_id)
        check_status(chain, allow_blocked=True)
        payer = locked[hold_obj.payer_id]
        _release(locked, hold_obj, captured, now)
        revenue = system_account_id(
            Account.Kind.REVENUE,
            hold_obj.currency,
            brand_id=hold_obj.brand_id,
            service_id=hold_obj.service_id,
        )
        after = apply_to_balance(payer, -captured, now)
        txn = write_posting(
            header=_header(
                kind=TransactionKind.HOLD_CAPTURE,
                caller=caller,
                account_id=hold_obj.account_id,
                amount=captured,
                currency=hold_obj.currency,
                brand_id=hold_obj.brand_id,
                service_id=hold_obj.service_id,
                subject_type=hold_obj.subject_type,
                subject_id=hold_obj.subject_id,
                metadata=hold_obj.metadata,
                memo=hold_obj.memo,
                hold_id=hold_obj.pk,
            ),
            legs=[
                Leg(
                    payer.id,
                    -captured,
                    hold_obj.account_id if hold_obj.account_id != payer.id else None,
                    after,
                ),
                Leg(revenue, captured),
            ],
            accounts=locked.values(),
            now=now,
            idempotency=record,
        )
        hold_obj.status = Hold.Status.CAPTURED
        hold_obj.captured_amount = captured
        hold_obj.closed_at = now
        hold_obj.save(update_fields=["status", "captured_amount", "closed_at"])
        hold_changed.send(sender=Hold, hold=hold_obj, previous_status=Hold.Status.ACTIVE)
        return txn

    return idempotent(
        caller=caller, key=idempotency_key, operation="hold_capture", request=request, run=run
    )


def _hold_close(hold_id: int, status: str, record: IdempotencyRecord | None) -> Hold:
    locked, hold_obj, now = _lock_hold(hold_id)
    if hold_obj.status != Hold.Status.ACTIVE:
        raise HoldNotActive(hold=hold_obj.pk, status=hold_obj.status)
    if status == Hold.Status.EXPIRED and hold_obj.expires_at > now:
        raise HoldNotActive("The hold has not expired yet.", hold=hold_obj.pk)
    _release(locked, hold_obj, ZERO, now)
    write_accounts(locked.values(), now)
    hold_obj.status = status
    hold_obj.closed_at = now
    hold_obj.save(update_fields=["status", "closed_at"])
    hold_changed.send(sender=Hold, hold=hold_obj, previous_status=Hold.Status.ACTIVE)
    if record is not None:
        IdempotencyKey.objects.create(
            caller=record.caller,
            key=record.key,
            operation=record.operation,
            request_hash=record.request_hash,
            hold=hold_obj,
            created_at=now,
        )
    return hold_obj


def hold_void(
    *, hold: Hold | int, caller: Caller = SYSTEM, idempotency_key: str | None = None
) -> Hold:
    """Release a hold without charging anything. Refused once the hold is no longer active."""
    hold_id = _pk(hold)
    return idempotent(
        caller=caller,
        key=idempotency_key,
        operation="hold_void",
        request={"hold": hold_id},
        run=lambda record: _hold_close(hold_id, Hold.Status.VOIDED, record),
    )


def hold_expire(*, hold: Hold | int) -> Hold:
    """Release a hold whose expiry has passed."""
    hold_id = _pk(hold)
    return run_locked(lambda: _hold_close(hold_id, Hold.Status.EXPIRED, None))


def holds_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Expire every active hold past its expiry, each in its own transaction. Returns how many."""
    now = now or timezone.now()
    expired = 0
    # Keyset over (expires_at, id): a hold that ``hold_expire`` refuses (closed meanwhile,
    # or not yet due by the clock when ``now`` is ahead of it) stays active and must not
    # be fetched again, or the sweep would loop over the same batch forever.
    after: Q = Q()
    while True:
        due = list(
            Hold.objects.filter(after, status=Hold.Status.ACTIVE, expires_at__lte=now)
            .order_by("expires_at", "id")
            .values_list("pk", "expires_at")[:batch_size]
        )
        if not due:
            return expired
        for hold_id, _ in due:
            try:
                hold_expire(hold=hold_id)
                expired += 1
            except HoldNotActive:
                continue
        if len(due) < batch_size:
            return expired
        last_id, last_expiry = due[-1]
        after = Q(expires_at__gt=last_expiry) | Q(expires_at=last_expiry, pk__gt=last_id)


# --------------------------------------------------------------------------- bulk accruals


@dataclass(slots=True)
class AccrualItem:
    """One charge of a batch (an invoice total, a penalty). Same meaning as ``accrual_post``."""

    account_id: int
    amount: Decimal
    brand_id: int
    service_id: int | None = None
    subject_type: str = ""
    subject_id: str = ""
    memo: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        """The same request ``accrual_post`` hashes, so keys are interchangeable between them."""
        return {
            "operation": TransactionKind.ACCRUAL,
            "account": self.account_id,
            "amount": self.amount,
            "brand": self.brand_id,
            "service": self.service_id,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "metadata": self.metadata or {},
            "memo": self.memo,
        }


def _take_ids(sequence_of: str, count: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [sequence_of, count],
        )
        return [row[0] for row in cursor.fetchall()]


def accruals_post_bulk(
    *, items: list[AccrualItem], caller: Caller = SYSTEM
) -> list[Transaction | DomainError]:
    """Post many accruals in one database transaction (the invoice run's posting path).

    Result ``i`` is the transaction for ``items[i]`` (``.replayed`` when its
    idempotency key was already used for the same request), or the domain
    error that refused that item alone (closed account, invalid amount, brand
    not linked, idempotency conflict). Refused items change nothing; the
    others are posted.

    All accounts (and their payer chains) are locked in one statement in
    primary-key order; ids are taken from the sequences up front so entries
    are inserted in the order their ``balance_after`` was computed. Four
    statements in all, whatever the batch size. Runs inside the caller's
    transaction when there is one.
    """
    validated: list[DomainError | None] = [None] * len(items)
    hashes: dict[int, str] = {}
    for index, item in enumerate(items):
        try:
            item.amount = money(item.amount)
        except DomainError as exc:
            validated[index] = exc
            continue
        if item.idempotency_key is not None:
            hashes[index] = _request_hash(item.request())
    # Started again from scratch if an account chain changes under it (run_locked).
    return run_locked(lambda: _accruals_post_bulk(items, caller, list(validated), hashes))


def _accruals_post_bulk(
    items: list[AccrualItem],
    caller: Caller,
    results: list[Transaction | DomainError | None],
    hashes: dict[int, str],
) -> list[Transaction | DomainError]:
    if hashes:
        keys = {items[i].idempotency_key for i in hashes}
        seen = {
            rec.key: rec
            for rec in IdempotencyKey.objects.filter(caller=caller.ref, key__in=keys).only(
                "key", "request_hash", "transaction_id"
            )
        }
        replayed_ids: dict[int, int] = {}
        for index, request_hash in hashes.items():
            record = seen.get(items[index].idempotency_key)
            if record is None:
                continue
            if record.request_hash != request_hash:
                results[index] = IdempotencyConflict(key=record.key, operation="accrual")
            else:
                replayed_ids[index] = record.transaction_id
        if replayed_ids:
            found = Transaction.objects.in_bulk(set(replayed_ids.values()))
            for index, txn_id in replayed_ids.items():
                txn = found[txn_id]
                txn.replayed = True
                results[index] = txn
    pending = [i for i, r in enumerate(results) if r is None]
    if not pending:
        return results  # type: ignore[return-value]
    locked = lock_accounts({items[i].account_id for i in pending})
    now = timezone.now()
    services = {
        s.pk: s
        for s in Service.objects.filter(
            pk__in={items[i].service_id for i in pending if items[i].service_id}
        ).only("id", "brand_id")
    }
    accepted: list[tuple[int, LockedAccount, LockedAccount, int]] = []
    for index in pending:
        item = items[index]
        chain = chain_of(locked, item.account_id)
        try:
            check_status(chain, allow_blocked=True)
            check_brand(chain[0], item.brand_id, services.get(item.service_id))
        except DomainError as exc:
            results[index] = exc
            continue
        revenue = system_account_id(
            Account.Kind.REVENUE,
            chain[0].currency,
            brand_id=item.brand_id,
            service_id=item.service_id,
        )
        accepted.append((index, chain[0], chain[-1], revenue))
    if not accepted:
        return results  # type: ignore[return-value]
    txn_ids = _take_ids("ledger_transaction", len(accepted))
    entry_ids = _take_ids("ledger_entry", 2 * len(accepted))
    txn_rows: dict[str, list[Any]] = {name: [] for name in _BULK_TXN_COLUMNS}
    entry_rows: dict[str, list[Any]] = {name: [] for name in _BULK_ENTRY_COLUMNS}
    key_rows: dict[str, list[Any]] = {name: [] for name in _BULK_KEY_COLUMNS}
    for position, (index, named, payer, revenue) in enumerate(accepted):
        item, txn_id = items[index], txn_ids[position]
        after = apply_to_balance(payer, -item.amount, now)
        header = _header(
            kind=TransactionKind.ACCRUAL,
            caller=caller,
            account_id=item.account_id,
            amount=item.amount,
            currency=named.currency,
            brand_id=item.brand_id,
            service_id=item.service_id,
            subject_type=item.subject_type,
            subject_id=item.subject_id,
            metadata=item.metadata or {},
            memo=item.memo,
            created_at=now,
        )
        for name in _BULK_TXN_COLUMNS:
            value = txn_id if name == "id" else header.get(name, "")
            if name == "metadata":
                value = json.dumps(value, cls=DjangoJSONEncoder)
            txn_rows[name].append(value)
        for offset, (account_id, sub_id, amount, balance_after) in enumerate(
            (
                (payer.id, _sub(named, payer), -item.amount, after),
                (revenue, None, item.amount, None),
            )
        ):
            for name, value in zip(
                _BULK_ENTRY_COLUMNS,
                (
                    entry_ids[2 * position + offset],
                    txn_id,
                    account_id,
                    sub_id,
                    amount,
                    balance_after,
                    named.currency,
                    now,
                ),
                strict=True,
            ):
                entry_rows[name].append(value)
        if index in hashes:
            for name, value in zip(
                _BULK_KEY_COLUMNS,
                (
                    caller.ref,
                    item.idempotency_key,
                    TransactionKind.ACCRUAL,
                    hashes[index],
                    txn_id,
                    now,
                ),
                strict=True,
            ):
                key_rows[name].append(value)
        txn = _transaction_from_row(txn_id, header)
        txn.replayed = False
        results[index] = txn
    with connection.cursor() as cursor:
        cursor.execute(
            _bulk_insert_sql("ledger_transaction", _BULK_TXN_COLUMNS), list(txn_rows.values())
        )
        cursor.execute(
            _bulk_insert_sql("ledger_entry", _BULK_ENTRY_COLUMNS), list(entry_rows.values())
        )
        if key_rows["key"]:
            cursor.execute(
                _bulk_insert_sql("ledger_idempotencykey", _BULK_KEY_COLUMNS),
                list(key_rows.values()),
            )
    write_accounts(locked.values(), now)
    for index, *_ in accepted:
        transaction_posted.send(sender=Transaction, transaction=results[index])
    return results  # type: ignore[return-value]


_BULK_TXN_COLUMNS = {
    "id": "bigint",
    "kind": "text",
    "account_id": "bigint",
    "amount": "numeric",
    "currency": "text",
    "brand_id": "bigint",
    "service_id": "bigint",
    "channel": "text",
    "subject_type": "text",
    "subject_id": "text",
    "metadata": "jsonb",
    "memo": "text",
    "external_id": "text",
    "caller": "text",
    "created_by_id": "integer",
    "request_id": "text",
    "created_at": "timestamptz",
}
_BULK_ENTRY_COLUMNS = {
    "id": "bigint",
    "transaction_id": "bigint",
    "account_id": "bigint",
    "subaccount_id": "bigint",
    "amount": "numeric",
    "balance_after": "numeric",
    "currency": "text",
    "created_at": "timestamptz",
}
_BULK_KEY_COLUMNS = {
    "caller": "text",
    "key": "text",
    "operation": "text",
    "request_hash": "text",
    "transaction_id": "bigint",
    "created_at": "timestamptz",
}


def _bulk_insert_sql(table: str, columns: dict[str, str]) -> str:
    """INSERT ... SELECT FROM unnest(array per column): one statement for any number of rows."""
    arrays = ", ".join(
        f"%s::text[]::{sql_type}[]" if sql_type == "jsonb" else f"%s::{sql_type}[]"
        for sql_type in columns.values()
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
