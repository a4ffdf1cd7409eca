"""The one writer of ledger rows: transactions, entries, idempotency keys, holds, and the
running state of the locked accounts.

Every posting, single or bulk, ends in ``write_postings``. It takes what the
planners produced (``Posting``: a transaction header and its legs, plus new or
closed ``Hold`` rows and the idempotency records of hold operations) and the
locked accounts whose state changed, and writes them:

* **one posting** (and at most one hold and one hold key: every single-posting
  service): the transaction, its entries, the idempotency record and the
  accounts' new state in *one* statement (data-modifying CTEs), cached per shape
  and prepared on the server. A hold is written beside it with the ORM, as
  before;
* **many**: ids for transactions, entries and new holds are taken from the
  tables' sequences in one round trip, in item order (so each account's
  ``balance_after`` chain follows the ids, exactly as one-by-one postings would
  leave it); holds, transactions, entries and keys are written with ``COPY``;
  the accounts' state and closed holds with one ``UPDATE ... FROM unnest`` each.
  Seven statements at most, whatever the batch size.

``transaction_posted`` is sent for each posting once it is written (the bulk
service sends it itself, interleaved in item order with ``hold_changed``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.models import QuerySet
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from core.caller import Caller
from ledger.models import Entry, Hold, IdempotencyKey, Transaction
from ledger.services.idempotency import IdempotencyRecord
from ledger.services.locking import PREPARE, LockedAccount, hot_cursor
from ledger.services.sql import (
    ACCOUNT_STATE_COLUMNS,
    ACCOUNTS_UPDATE_MANY_SQL,
    ENTRY_COLUMNS_WITH_ID,
    ENTRY_TABLE,
    HOLD_CLOSE_COLUMNS,
    HOLD_COLUMNS_WITH_ID,
    HOLD_TABLE,
    HOLDS_CLOSE_MANY_SQL,
    KEY_COLUMNS,
    KEY_TABLE,
    TAKE_IDS_SQL,
    TXN_COLUMNS,
    TXN_COLUMNS_WITH_ID,
    TXN_TABLE,
    accounts_update_sql,
    copy_sql,
    posting_sql,
)
from ledger.signals import transaction_posted


@dataclass(slots=True)
class Leg:
    """One entry of a posting. Client legs land on the payer and carry ``balance_after``."""

    account_id: int
    amount: Decimal
    subaccount_id: int | None = None
    balance_after: Decimal | None = None


@dataclass(slots=True, eq=False)
class Posting:
    """A transaction to write: its header (columns by name), legs that sum to zero, its moment.

    ``hold`` (a capture's hold) and ``reversal_of`` (an original posted in the same
    write) may be rows that get their ids in this very write; the writer fills
    ``hold_id`` / ``reversal_of_id`` from them. ``transaction`` is set once written.
    """

    header: dict[str, Any]
    legs: list[Leg]
    at: datetime
    idempotency: IdempotencyRecord | None = None
    hold: Hold | None = None
    reversal_of: Posting | None = None
    transaction: Transaction | None = field(default=None)
    # An id taken beforehand (``take_transaction_ids``), or None: taken at the write.
    transaction_id: int | None = None


def header(
    *,
    kind: str,
    caller: Caller,
    account_id: int,
    amount: Decimal,
    currency: str,
    **fields: Any,
) -> dict[str, Any]:
    """A transaction header: the columns every posting names, and the ones it adds."""
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


# --------------------------------------------------------------------------- rows from _meta


def _defaults(model: type[models.Model]) -> dict[str, Any]:
    """What an unnamed column of a new row holds: the field's default, NULL, or ''."""
    out: dict[str, Any] = {}
    for f in model._meta.concrete_fields:
        if f.primary_key:
            continue
        if f.has_default():
            out[f.attname] = f.get_default()
        elif f.null:
            out[f.attname] = None
        elif f.blank and isinstance(f, models.CharField):
            out[f.attname] = ""
    return out


def _json_columns(model: type[models.Model]) -> frozenset[str]:
    fields = model._meta.concrete_fields
    return frozenset(f.column for f in fields if isinstance(f, models.JSONField))


_TXN_DEFAULTS = _defaults(Transaction)
_TXN_JSON = _json_columns(Transaction)
_TXN_FIELD_NAMES = [f.attname for f in Transaction._meta.concrete_fields]
_ENTRY_FIELD_NAMES = [f.attname for f in Entry._meta.concrete_fields]
_HOLD_ATTNAMES = [Hold._meta.get_field(c).attname for c in HOLD_COLUMNS_WITH_ID]
_HOLD_JSON = _json_columns(Hold)
_HOLD_CLOSE_ATTNAMES = [Hold._meta.get_field(c).attname for c in HOLD_CLOSE_COLUMNS]


_dump_django = DjangoJSONEncoder().encode
# orjson for plain values (str, int, float, bool, None, lists, dicts with str keys): six
# times the standard library's C encoder on a registry payment's metadata. Dates and
# dataclasses pass through to a TypeError, so they, decimals and anything else orjson
# does not know get DjangoJSONEncoder's form, as the JSONField would write them.
_ORJSON_PLAIN = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _dump_json(value: Any) -> str:
    """JSON as Django's JSONField writes it (``DjangoJSONEncoder`` for dates, decimals,
    UUIDs ...); plain values, the common case, go through orjson (the column is jsonb:
    spacing and escapes are not kept)."""
    if not value:
        return "{}"
    try:
        return orjson.dumps(value, option=_ORJSON_PLAIN).decode()
    except TypeError:
        return _dump_django(value)


def _txn_values(values: dict[str, Any], columns: Iterable[str]) -> list[Any]:
    """A transaction row in ``columns`` order; ``values`` already holds every default."""
    return [_dump_json(values[c]) if c in _TXN_JSON else values.get(c) for c in columns]


def _key_values(record: IdempotencyRecord, txn_id: int | None, hold_id: int | None, at: datetime):
    values = {
        "caller": record.caller,
        "key": record.key,
        "operation": record.operation,
        "request_hash": record.request_hash,
        "transaction_id": txn_id,
        "hold_id": hold_id,
        "created_at": at,
    }
    return [values[c] for c in KEY_COLUMNS]


_ENTRY_FILLED = (
    "id", "transaction_id", "account_id", "subaccount_id", "amount", "balance_after",
    "currency", "created_at",
)  # fmt: skip
_ENTRY_ORDER = [_ENTRY_FILLED.index(c) for c in ENTRY_COLUMNS_WITH_ID]
_ENTRY_IN_ORDER = list(range(len(_ENTRY_FILLED))) == _ENTRY_ORDER


def _entry_values(entry_id: int, txn_id: int, leg: Leg, currency: str, at: datetime) -> Sequence:
    """An entry row in ``ENTRY_COLUMNS_WITH_ID`` order."""
    row = (
        entry_id,
        txn_id,
        leg.account_id,
        leg.subaccount_id,
        leg.amount,
        leg.balance_after,
        currency,
        at,
    )
    return row if _ENTRY_IN_ORDER else [row[i] for i in _ENTRY_ORDER]


_account_state = operator.attrgetter(*ACCOUNT_STATE_COLUMNS)  # LockedAccount -> its state row


def transaction_from_row(txn_id: int, values: dict[str, Any]) -> Transaction:
    """The model instance of a row just inserted, built like a fetched row (no query)."""
    return _transaction(_with_defaults(values, txn_id))


def _with_defaults(header: dict[str, Any], txn_id: int | None) -> dict[str, Any]:
    return {**_TXN_DEFAULTS, **header, "id": txn_id}


def _transaction(values: dict[str, Any], direct: bool | None = None) -> Transaction:
    row = [values[n] for n in _TXN_FIELD_NAMES]
    return _from_row(Transaction, _TXN_FIELD_NAMES, row, direct)


def _direct(model: type[models.Model]) -> bool:
    """Whether instances of ``model`` may be built without ``from_db`` (no init receivers).
    Asked once per write: a signal's ``has_listeners`` is not free per row."""
    return not (pre_init.has_listeners(model) or post_init.has_listeners(model))


def _from_row(
    model: type[models.Model], attnames: list[str], row: Sequence, direct: bool | None = None
) -> Any:
    """``model.from_db("default", attnames, row)`` for a row of every concrete field.

    ``Model.__init__`` assigns field by field through the descriptors (about half the
    cost of a bulk posting's Python side at 200,000 payments); with no ``pre_init`` /
    ``post_init`` receiver for the model (``direct``, asked here when not given) the
    instance is built directly, exactly as ``from_db`` leaves it (attribute values,
    ``_state.adding`` False, ``_state.db``).
    """
    if not (_direct(model) if direct is None else direct):
        return model.from_db("default", attnames, row)
    obj = model.__new__(model)
    obj.__dict__.update(zip(attnames, row, strict=True))
    state = obj._state = ModelState()
    state.adding = False
    state.db = "default"
    return obj


class _PostedEntries(QuerySet):
    """The entries of a transaction this process just wrote, built only if read.

    Served from the transaction's prefetch cache, so reading them (the API's
    response) costs no query, and not reading them (most callers) costs nothing.
    """

    def _chain(self) -> QuerySet:
        # Anything chained on it (values_list, filter, order_by, ...) reads the database.
        return Entry.objects.filter(transaction_id=self._posted[0])._chain()

    def _fetch_all(self) -> None:
        if self._result_cache is None:
            txn_id, entry_ids, legs, currency, now = self._posted
            self._result_cache = [
                _from_row(
                    Entry,
                    _ENTRY_FIELD_NAMES,
                    _entry_values(entry_id, txn_id, leg, currency, now),
                )
                for entry_id, leg in zip(entry_ids, legs, strict=True)
            ]
        super()._fetch_all()


def _payer_leg(txn: Transaction) -> Leg | None:
    """The one leg of a transaction written by this process that carries ``balance_after``
    (the payer's), read from memory; None when not known here (the transaction was read
    from the database, or it moved no payer or several)."""
    cache = getattr(txn, "_prefetched_objects_cache", None)
    posted = getattr(cache.get("entries") if cache else None, "_posted", None)
    if posted is None:
        return None
    legs = [leg for leg in posted[2] if leg.balance_after is not None]
    return legs[0] if len(legs) == 1 else None


def posted_payer(txn: Transaction) -> int | None:
    """The payer whose running balance a transaction written by this process moved (the
    account of its one leg that carries ``balance_after``: the root of the named account's
    chain, locked for the posting), read from memory; None when not known here (the
    transaction was read from the database, or it moved no payer or several)."""
    leg = _payer_leg(txn)
    return None if leg is None else leg.account_id


def posted_balance_after(txn: Transaction) -> Decimal | None:
    """The payer's balance right after a transaction written by this process (the
    ``balance_after`` of its one leg that carries one), read from memory; None when not
    known here, as for ``posted_payer``."""
    leg = _payer_leg(txn)
    return None if leg is None else leg.balance_after


def _attach_entries(
    txn: Transaction, entry_ids: list[int], legs: list[Leg], now: datetime, alone: bool = True
) -> None:
    """Give a just-written transaction its entries as if prefetched (and, posted ``alone``,
    its ``reversed_by_id``: nothing reverses it yet; a bulk call's later item may)."""
    queryset = _PostedEntries(model=Entry)
    queryset._posted = (txn.pk, entry_ids, legs, txn.currency, now)
    queryset._prefetch_done = True
    txn._prefetched_objects_cache = {"entries": queryset}
    if alone:
        txn.reversed_by_id = None


# --------------------------------------------------------------------------- the writer


def write_postings(
    postings: Sequence[Posting],
    *,
    accounts: Iterable[LockedAccount],
    now: datetime,
    new_holds: Sequence[Hold] = (),
    closed_holds: Sequence[Hold] = (),
    hold_keys: Sequence[tuple[IdempotencyRecord, Hold, datetime]] = (),
    send_signals: bool = True,
) -> list[Transaction]:
    """Write postings, holds, hold keys and the changed (``dirty``) accounts; return the
    transactions in the order of ``postings``.

    ``new_holds`` are unsaved ``Hold``s (they get their ids here, and are written in
    the state they have now); ``closed_holds`` are existing rows whose status,
    captured amount and closing time changed; ``hold_keys`` are the idempotency
    records of hold operations (record, hold, moment). The accounts' ``updated_at``
    becomes ``now``; every other row carries its own moment.
    """
    for posting in postings:
        if sum(leg.amount for leg in posting.legs) != 0:
            raise AssertionError("A posting's entries must sum to zero.")
    if (
        len(postings) <= 1
        and len(new_holds) <= 1
        and len(closed_holds) <= 1
        and not any(p.transaction_id is not None for p in postings)
    ):
        return _write_one(
            postings[0] if postings else None,
            accounts,
            now,
            new_holds[0] if new_holds else None,
            closed_holds[0] if closed_holds else None,
            hold_keys,
            send_signals,
        )
    return _write_many(postings, accounts, now, new_holds, closed_holds, hold_keys, send_signals)


def take_transaction_ids(count: int) -> list[int]:
    """``count`` transaction ids from the table's sequence, ascending: ids a caller can
    record elsewhere (a registry's claims) before the postings that will carry them are
    written (``post_bulk(..., transaction_ids=...)``), so that nothing is updated after."""
    if count <= 0:
        return []
    with hot_cursor() as cursor:
        cursor.execute(TAKE_IDS_SQL, [count, 0, 0])
        return sorted(cursor.fetchone()[0])


def write_accounts(accounts: Iterable[LockedAccount], now: datetime) -> None:
    """Write the running state of the changed locked accounts (one UPDATE)."""
    dirty = [acc for acc in accounts if acc.dirty]
    if dirty:
        params: list[Any] = [now]
        for acc in dirty:
            params += _account_state(acc)
        with hot_cursor() as cursor:
            cursor.execute(accounts_update_sql(len(dirty)), params, prepare=PREPARE)


def _write_one(
    posting: Posting | None,
    accounts: Iterable[LockedAccount],
    now: datetime,
    new_hold: Hold | None,
    closed_hold: Hold | None,
    hold_keys: Sequence[tuple[IdempotencyRecord, Hold, datetime]],
    send_signals: bool,
) -> list[Transaction]:
    """The single posting's write: one statement for the posting and the accounts."""
    if new_hold is not None:
        new_hold.save(force_insert=True)
    written = []
    if posting is not None:
        written.append(_write_posting(posting, accounts, now, send_signals))
    else:
        write_accounts(accounts, now)
    if closed_hold is not None:
        closed_hold.save(update_fields=["status", "captured_amount", "closed_at"])
    for record, hold, at in hold_keys:
        IdempotencyKey.objects.create(
            caller=record.caller,
            key=record.key,
            operation=record.operation,
            request_hash=record.request_hash,
            hold=hold,
            created_at=at,
        )
    return written


def _write_posting(
    posting: Posting, accounts: Iterable[LockedAccount], now: datetime, send_signals: bool
) -> Transaction:
    """Insert the transaction, its entries, the idempotency record and the account state.

    One statement with data-modifying CTEs: one round trip for the whole write.
    """
    values = _with_defaults(posting.header, None)
    values["created_at"] = posting.at
    if posting.hold is not None:
        values["hold_id"] = posting.hold.pk
    if posting.reversal_of is not None:
        values["reversal_of_id"] = posting.reversal_of.transaction.pk
    params = _txn_values(values, TXN_COLUMNS)
    params += (values["currency"], posting.at)
    for leg in posting.legs:
        params += (leg.account_id, leg.subaccount_id, leg.amount, leg.balance_after)
    record = posting.idempotency
    if record is not None:
        params += (
            value
            for column, value in zip(
                KEY_COLUMNS, _key_values(record, None, None, posting.at), strict=True
            )
            if column not in ("transaction_id", "hold_id")
        )
    dirty = [acc for acc in accounts if acc.dirty]
    if dirty:
        params.append(now)
    for acc in dirty:
        params += _account_state(acc)
    sql = posting_sql(len(posting.legs), record is not None, len(dirty))
    with hot_cursor() as cursor:
        cursor.execute(sql, params, prepare=PREPARE)
        txn_id, entry_ids = cursor.fetchone()
    values["id"] = txn_id
    txn = _transaction(values)
    # Entry ids come back in insertion order, which is the order of the legs.
    _attach_entries(txn, entry_ids, posting.legs, posting.at)
    posting.transaction = txn
    if send_signals:
        transaction_posted.send(sender=Transaction, transaction=txn)
    return txn


def _copy(cursor: Any, table: str, columns: dict[str, str], rows: Iterable[Sequence]) -> None:
    with connection.wrap_database_errors, cursor.copy(copy_sql(table, columns)) as copy:
        for row in rows:
            copy.write_row(row)


def _write_many(
    postings: Sequence[Posting],
    accounts: Iterable[LockedAccount],
    now: datetime,
    new_holds: Sequence[Hold],
    closed_holds: Sequence[Hold],
    hold_keys: Sequence[tuple[IdempotencyRecord, Hold, datetime]],
    send_signals: bool,
) -> list[Transaction]:
    """Any number of postings and holds in a handful of statements (ids, COPY, UPDATE)."""
    entry_count = sum(len(p.legs) for p in postings)
    unnumbered = sum(1 for p in postings if p.transaction_id is None)
    with hot_cursor() as cursor:
        cursor.execute(TAKE_IDS_SQL, [unnumbered, entry_count, len(new_holds)])
        taken, entry_ids, hold_ids = cursor.fetchone()
    for hold, hold_id in zip(new_holds, sorted(hold_ids), strict=True):
        hold.pk = hold_id
        hold._state.adding = False
    entry_ids = sorted(entry_ids)
    fresh = iter(sorted(taken))
    txn_ids = [p.transaction_id if p.transaction_id is not None else next(fresh) for p in postings]
    txn_rows, entry_rows, key_rows = [], [], []
    written = []
    next_entry = 0
    direct = _direct(Transaction)
    for posting, txn_id in zip(postings, txn_ids, strict=True):
        values = _with_defaults(posting.header, txn_id)
        values["created_at"] = posting.at
        if posting.hold is not None:
            values["hold_id"] = posting.hold.pk
        if posting.reversal_of is not None:
            values["reversal_of_id"] = posting.reversal_of.transaction.pk
        txn = _transaction(values, direct)
        posting.transaction = txn
        written.append(txn)
        txn_rows.append(_txn_values(values, TXN_COLUMNS_WITH_ID))
        currency = values["currency"]
        first_entry = next_entry
        for leg in posting.legs:
            entry_rows.append(
                _entry_values(entry_ids[next_entry], txn_id, leg, currency, posting.at)
            )
            next_entry += 1
        # As the single path does: receivers (invoice allocation) read them without a query.
        _attach_entries(
            txn, entry_ids[first_entry:next_entry], posting.legs, posting.at, alone=False
        )
        if posting.idempotency is not None:
            key_rows.append(_key_values(posting.idempotency, txn_id, None, posting.at))
    for record, hold, at in hold_keys:
        key_rows.append(_key_values(record, None, hold.pk, at))
    connection.ensure_connection()
    with connection.connection.cursor() as raw:
        if new_holds:
            _copy(raw, HOLD_TABLE, HOLD_COLUMNS_WITH_ID, map(_hold_row, new_holds))
        if txn_rows:
            _copy(raw, TXN_TABLE, TXN_COLUMNS_WITH_ID, txn_rows)
            _copy(raw, ENTRY_TABLE, ENTRY_COLUMNS_WITH_ID, entry_rows)
        if key_rows:
            _copy(raw, KEY_TABLE, KEY_COLUMNS, key_rows)
    dirty = [_account_state(acc) for acc in accounts if acc.dirty]  # rows -> one array a column
    closed = [[getattr(h, name) for name in _HOLD_CLOSE_ATTNAMES] for h in closed_holds]
    with hot_cursor() as cursor:
        if dirty:
            cursor.execute(ACCOUNTS_UPDATE_MANY_SQL, [now, *map(list, zip(*dirty, strict=True))])
        if closed:
            cursor.execute(HOLDS_CLOSE_MANY_SQL, [*map(list, zip(*closed, strict=True))])
    if send_signals:
        for txn in written:
            transaction_posted.send(sender=Transaction, transaction=txn)
    return written


def _hold_row(hold: Hold) -> list[Any]:
    return [
        _dump_json(getattr(hold, name)) if column in _HOLD_JSON else getattr(hold, name)
        for column, name in zip(HOLD_COLUMNS_WITH_ID, _HOLD_ATTNAMES, strict=True)
    ]
