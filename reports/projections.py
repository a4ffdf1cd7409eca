"""The projector: folds new ledger entries into the read models (see ``reports.models``).

How "new" is decided. Every ledger transaction carries the id of the database
transaction that wrote it (``ledger_transaction.xact_id``, ``pg_current_xact_id()``).
A run reads the ledger in one REPEATABLE READ transaction and records that
transaction's snapshot (``pg_current_snapshot()``) as the marker, in the same commit
as the sums it added. The next run takes exactly the rows whose writer is *not
visible* in the recorded snapshot (``pg_visible_in_snapshot``): every committed row is
visible to each snapshot from some point on, so each is taken by exactly one run,
however late it commits and whatever its id. Nothing is skipped (an id watermark would
skip a posting that took its id before another but committed after the run) and
nothing is added twice (a run and its marker commit together).

Catching up after downtime reads in batches bounded by a transaction id ``B`` at or
above the last snapshot's ``xmax``: a batch takes what is new and written below ``B``,
and its marker is the current snapshot cut at ``B``. One projector at a time: a
session advisory lock; a second caller returns at once (``busy``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from reports.models import (
    AccountDayTurnover,
    AccountMonthTurnover,
    DailyTurnover,
    ProjectionState,
)

STATE_NAME = "ledger"
# pg_advisory_lock key of the projector (any constant nobody else uses).
LOCK_KEY = 0x7265706F727473  # "reports"
DEFAULT_BATCH = 50_000
DB = "default"  # the projector writes: always the primary

DAILY = DailyTurnover._meta.db_table
ACCOUNT_MONTH = AccountMonthTurnover._meta.db_table
ACCOUNT_DAY = AccountDayTurnover._meta.db_table
STATE = ProjectionState._meta.db_table


@dataclass
class ProjectionRun:
    busy: bool = False  # another projector held the lock: nothing done
    rebuilt: bool = False
    batches: int = 0
    transactions: int = 0
    entries: int = 0
    caught_up: bool = True


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL ``pg_snapshot`` (``xmin:xmax:xip,...``) as Python values."""

    xmin: int
    xmax: int
    xip: tuple[int, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))

    def text(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    def cut(self, bound: int) -> Snapshot:
        """This snapshot seeing only transactions below ``bound``."""
        xmax = min(self.xmax, bound)
        return Snapshot(min(self.xmin, xmax), xmax, tuple(x for x in self.xip if x < xmax))


# The new entries of one run, each with what the projections group by. ``{where}``
# selects the ledger transactions: new to the marker (and below the batch bound), or all.
_NEW_ENTRIES_SQL = """
CREATE TEMP TABLE reports_new_entries ON COMMIT DROP AS
SELECT e.account_id, e.amount, e.currency, e.created_at,
       e.balance_after IS NOT NULL AS client,
       (e.created_at AT TIME ZONE %(tz)s)::date AS day,
       t.kind, t.brand_id, t.service_id, t.id AS transaction_id
  FROM ledger_transaction t
  JOIN ledger_entry e ON e.transaction_id = t.id
 WHERE {where}
"""

_NEW_WHERE = """
    t.xact_id >= pg_snapshot_xmin(%(marker)s::pg_snapshot)
    AND NOT pg_visible_in_snapshot(t.xact_id, %(marker)s::pg_snapshot)
    AND (%(bound)s::xid8 IS NULL OR t.xact_id < %(bound)s::xid8)
"""

_SUMS = """
       COALESCE(SUM(amount) FILTER (WHERE amount > 0), 0) AS credit,
       COALESCE(-SUM(amount) FILTER (WHERE amount < 0), 0) AS debit,
       count(*) AS entries
"""


def _upsert(table: str, keys: str, select_keys: str, where: str = "TRUE") -> str:
    return f"""
INSERT INTO {table} ({keys}, credit, debit, entries)
SELECT {select_keys}, {_SUMS}
  FROM reports_new_entries WHERE {where}
 GROUP BY {select_keys}
ON CONFLICT ({keys}) DO UPDATE
   SET credit = {table}.credit + EXCLUDED.credit,
       debit = {table}.debit + EXCLUDED.debit,
       entries = {table}.entries + EXCLUDED.entries
"""


# What each projection holds: its key columns and how the new entries' rows map to them.
_PROJECTIONS = (
    (DAILY, "day, brand_id, service_id, kind, currency",
     "day, brand_id, service_id, kind, currency", "client"),
    (ACCOUNT_MONTH, "account_id, month, brand_id, currency",
     "account_id, date_trunc('month', day)::date, brand_id, currency", "TRUE"),
    (ACCOUNT_DAY, "account_id, day, brand_id, currency",
     "account_id, day, brand_id, currency", "TRUE"),
)  # fmt: skip


def _tz() -> str:
    return settings.TIME_ZONE


def _try_lock(cursor) -> bool:
    cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
    return cursor.fetchone()[0]


def _unlock(cursor) -> None:
    cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def _begin_repeatable_read(cursor) -> str:
    """First statement of the transaction: its snapshot is the marker this run records."""
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cursor.execute("SELECT pg_current_snapshot()::text")
    return cursor.fetchone()[0]


def _fold(cursor, where: str, params: dict) -> tuple[int, int, datetime | None]:
    """Add the selected entries to the projections; (transactions, entries, newest)."""
    cursor.execute(_NEW_ENTRIES_SQL.format(where=where), {"tz": _tz(), **params})
    cursor.execute(
        "SELECT count(DISTINCT transaction_id), count(*), max(created_at) FROM reports_new_entries"
    )
    transactions, entries, newest = cursor.fetchone()
    if entries:
        for table, keys, select_keys, condition in _PROJECTIONS:
            cursor.execute(_upsert(table, keys, select_keys, condition))
    cursor.execute("DROP TABLE reports_new_entries")
    return transactions, entries, newest


def _save_state(cursor, snapshot: str, transactions: int, entries: int, newest, *, rebuilt: bool):
    now = timezone.now()
    cursor.execute(
        f"""
        INSERT INTO {STATE} (name, snapshot, transactions, entries, last_run_at,
                             last_projected_at, rebuilt_at)
        VALUES (%(name)s, %(snapshot)s, %(transactions)s, %(entries)s, %(now)s, %(newest)s,
                CASE WHEN %(rebuilt)s THEN %(now)s::timestamptz END)
        ON CONFLICT (name) DO UPDATE SET
            snapshot = EXCLUDED.snapshot,
            transactions = CASE WHEN %(rebuilt)s THEN 0 ELSE {STATE}.transactions END
                           + EXCLUDED.transactions,
            entries = CASE WHEN %(rebuilt)s THEN 0 ELSE {STATE}.entries END + EXCLUDED.entries,
            last_run_at = EXCLUDED.last_run_at,
            last_projected_at = GREATEST({STATE}.last_projected_at, EXCLUDED.last_projected_at),
            rebuilt_at = COALESCE(EXCLUDED.rebuilt_at, {STATE}.rebuilt_at)
        """,
        {
            "name": STATE_NAME,
            "snapshot": snapshot,
            "transactions": transactions,
            "entries": entries,
            "now": now,
            "newest": newest,
            "rebuilt": rebuilt,
        },
    )


def _rebuild(cursor, run: ProjectionRun) -> None:
    with transaction.atomic(using=DB, durable=True):
        snapshot = _begin_repeatable_read(cursor)
        cursor.execute(f"TRUNCATE {DAILY}, {ACCOUNT_MONTH}, {ACCOUNT_DAY}")
        transactions, entries, newest = _fold(cursor, "TRUE", {})
        _save_state(cursor, snapshot, transactions, entries, newest, rebuilt=True)
    run.rebuilt = True
    run.batches += 1
    run.transactions += transactions
    run.entries += entries


def _batch(cursor, run: ProjectionRun, batch_size: int) -> bool:
    """Fold one batch of new transactions; False when there was no marker (rebuild first)."""
    with transaction.atomic(using=DB, durable=True):
        current = Snapshot.parse(_begin_repeatable_read(cursor))
        cursor.execute(f"SELECT snapshot FROM {STATE} WHERE name = %s", [STATE_NAME])
        row = cursor.fetchone()
        if row is None or not row[0]:
            return False
        marker = Snapshot.parse(row[0])
        # The batch bound: past the marker's xmax (so the new marker is the current
        # snapshot cut there) and about ``batch_size`` new transactions on.
        cursor.execute(
            "SELECT xact_id::text FROM ledger_transaction WHERE xact_id >= %s::xid8"
            " ORDER BY xact_id OFFSET %s LIMIT 1",
            [str(marker.xmax), batch_size],
        )
        found = cursor.fetchone()
        # Everything written up to that transaction (one database transaction may hold
        # many ledger transactions: the bound is past all of them, so a batch always moves).
        bound = int(found[0]) + 1 if found is not None else None
        if bound is not None and bound >= current.xmax:
            bound = None
        recorded = current if bound is None else current.cut(bound)
        transactions, entries, newest = _fold(
            cursor,
            _NEW_WHERE,
            {"marker": marker.text(), "bound": None if bound is None else str(bound)},
        )
        _save_state(cursor, recorded.text(), transactions, entries, newest, rebuilt=False)
    run.batches += 1
    run.transactions += transactions
    run.entries += entries
    run.caught_up = bound is None
    return True


def _locked(work) -> ProjectionRun:
    run = ProjectionRun()
    connection = connections[DB]
    if connection.in_atomic_block:
        raise RuntimeError("The projector commits its own transactions: call it outside one.")
    with connection.cursor() as cursor:
        if not _try_lock(cursor):
            run.busy = True
            run.caught_up = False
            return run
        try:
            work(cursor, run)
        finally:
            _unlock(cursor)
    return run


def projections_update(
    *, batch_size: int = DEFAULT_BATCH, max_seconds: float | None = None
) -> ProjectionRun:
    """Fold every ledger transaction new to the marker into the projections.

    Builds them from scratch the first time (no marker yet). Batches of at most
    ``batch_size`` transactions (give or take one database transaction's worth), each
    committed with its marker, until caught up or ``max_seconds`` have passed.
    Idempotent: a run that finds nothing new changes no sum.
    """

    def work(cursor, run: ProjectionRun) -> None:
        started = time.monotonic()
        while True:
            if not _batch(cursor, run, batch_size):
                _rebuild(cursor, run)
                return
            if run.caught_up:
                return
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                return

    return _locked(work)


def projections_rebuild() -> ProjectionRun:
    """Empty the projections and build them again from the whole ledger, in one commit."""
    return _locked(_rebuild)


def projections_check(*, limit: int = 20) -> list[str]:
    """Differences between the projections and the ledger as of the recorded marker.

    Reads everything in one REPEATABLE READ snapshot: the projections and their marker
    (committed together), and the ledger's transactions visible in that marker, summed
    the way the projector sums them. Postings may go on meanwhile. Empty: they agree.
    """
    problems: list[str] = []
    with transaction.atomic(using=DB, durable=True), connections[DB].cursor() as cursor:
        _begin_repeatable_read(cursor)
        cursor.execute(f"SELECT snapshot FROM {STATE} WHERE name = %s", [STATE_NAME])
        row = cursor.fetchone()
        if row is None or not row[0]:
            return ["The projections were never built (run rebuild_reports)."]
        where = "t.xact_id IS NULL OR pg_visible_in_snapshot(t.xact_id, %(marker)s::pg_snapshot)"
        cursor.execute(_NEW_ENTRIES_SQL.format(where=where), {"tz": _tz(), "marker": row[0]})
        for table, keys, select_keys, condition in _PROJECTIONS:
            expected = (
                f"SELECT {select_keys}, {_SUMS} FROM reports_new_entries"
                f" WHERE {condition} GROUP BY {select_keys}"
            )
            actual = f"SELECT {keys}, credit, debit, entries FROM {table}"
            cursor.execute(
                f"""
                (SELECT 'missing or different', * FROM ({expected} EXCEPT {actual}) m)
                UNION ALL
                (SELECT 'not in the ledger', * FROM ({actual} EXCEPT {expected}) u)
                LIMIT %s
                """,
                [limit],
            )
            problems.extend(f"{table}: {row[0]} {row[1:]}" for row in cursor.fetchall())
        cursor.execute("DROP TABLE reports_new_entries")
    return problems[:limit]
