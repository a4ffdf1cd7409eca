"""Usage files COPYed straight into ``invoicing_usagerecord`` when every row is plainly valid.

The staged path (``invoicing.ingest.usage``) makes a second pass: COPY into a staging
table, then one validating ``INSERT ... SELECT``, whose row-by-row heap inserts cost
more than COPY's batched ones. Most files are clean, so this path tries first, in a
savepoint, and reads the file once:

- Python checks every block of lines against one plain shape (a regular expression,
  in C: ids of digits, a plain decimal with at most six decimals, an ISO-8601 moment,
  printable ASCII text without quotes or commas, 1-100 characters), notes the
  (account, service) pairs, the dates-and-hours and the offsets of the moments it
  names, and passes the block on to one ``COPY ... FROM STDIN`` into the table while
  reading on. PostgreSQL reads the values as the staged path does (the same input
  functions; a moment without an offset in the business time zone, as there), refuses
  a day that does not exist, a negative or too large quantity, and a duplicate (the
  unique constraint: within the file, already stored, or stored by a parallel batch).
- After the COPY, the rules of the staged path are checked per pair and per hour, not
  per row: every pair's account is an open client account linked to the service's
  brand, the service in the caller's scope; every moment's hour lies after 1900 and
  ends before the future limit, without a daylight-saving change in a local time's
  hour; and a subscription of the pair covers the file's whole span of business days.
  A pair whose subscriptions do not (one that starts mid-period) has its stored rows
  checked one by one, in SQL. The first 1,000 lines are checked so before the COPY as
  well (and probed for records already stored), so that a file of the wrong brand or
  sent twice costs no COPY.

Anything else (a line in another shape, a row the staged path would refuse, a
duplicate, a value PostgreSQL does not read, a deadlock with a parallel batch) rolls
the savepoint back and returns None: the caller then runs the staged path, whose
outcome (rows stored, errors, duplicates) is the reference. So this path stores only
a file that the staged path would store whole, the same rows with the same values, and
reports what it would: every row accepted, no duplicates, no errors. Its checks are
narrower than the staged path's (``1e3`` or ``007`` as numbers, non-ASCII text, an
empty source, a moment in the hour of a daylight-saving change or within an hour of the
future limit: all staged), never wider.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import islice
from operator import itemgetter
from typing import IO, Any
from zoneinfo import ZoneInfo

import psycopg
from django.db import transaction

from invoicing.exceptions import MalformedFile
from invoicing.ingest.staging import USAGE, IngestResult, _file_header

BLOCK = 1 << 20
# Lines probed for already stored external ids before streaming (the same file sent
# twice goes the staged way at once rather than at the end of a failing COPY).
PROBE_LINES = 1000
# (account, service) pairs checked against links and subscriptions per query.
PAIRS_BATCH = 50_000

_FIELD_PATTERNS = {
    "account": rb"[1-9][0-9]{0,17}",
    "service": rb"[1-9][0-9]{0,17}",
    "quantity": rb"(?:0|[1-9][0-9]{0,13})(?:\.[0-9]{1,6})?",
    # Date and hour (13 characters), minutes, optional seconds and fraction, optional offset.
    "occurred_at": (
        rb"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
        rb"(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?"
    ),
    # Printable ASCII without the CSV quote and delimiter: read by COPY exactly as written.
    "external_id": rb"[\x20\x21\x23-\x2b\x2d-\x7e]{1,100}",
    "source": rb"[\x20\x21\x23-\x2b\x2d-\x7e]{1,100}",
}
_TARGET = {
    "account": "account_id",
    "service": "service_id",
    "quantity": "quantity",
    "occurred_at": "occurred_at",
    "external_id": "external_id",
    "source": "source",
}
_DAY_HOUR = itemgetter(slice(0, 13))
_AFTER_MINUTES = itemgetter(slice(16, None))
_NOT_BEFORE = datetime(1900, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1) - timedelta(microseconds=1)


class _Staged(Exception):
    """This file goes the staged way."""


def usage_direct_file(
    cursor: Any, stream: IO[bytes], params: dict[str, Any]
) -> IngestResult | None:
    """COPY a usage file straight into the table when every row is valid and new (in a
    savepoint); None, with nothing stored and the stream wherever, when it is not."""
    try:
        with transaction.atomic():
            return _copy_direct(cursor, stream, params)
    except (MalformedFile, _Staged):
        return None  # the staged path says what is wrong with the file, or which rows
    except (psycopg.IntegrityError, psycopg.DataError, psycopg.errors.DeadlockDetected):
        # A duplicate (the unique constraint), a value PostgreSQL does not read (a day
        # that does not exist, a quantity out of range), or a parallel batch with the
        # same external ids waiting on this one while this one waits on it.
        return None


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's lines, a block of whole lines at a time (without the last newline)."""
    rest = b""
    while block := stream.read(BLOCK):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut > 1:
            yield block[: cut - 1]
        elif cut:
            raise _Staged  # an empty line
    if rest:
        yield rest


def _csv_text(value: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([value])
    return out.getvalue().encode()


def _copy_direct(cursor: Any, stream: IO[bytes], params: dict[str, Any]) -> IngestResult:
    names = _file_header(stream, USAGE)
    width = len(names)
    line = b",".join(_FIELD_PATTERNS[name] for name in names)
    block_shape = re.compile(b"(?:%s\n)*%s" % (line, line))
    account_at, service_at = names.index("account"), names.index("service")
    moment_at, external_id_at = names.index("occurred_at"), names.index("external_id")
    target = [_TARGET[name] for name in names]
    suffix = b""
    if "source" not in names:
        target.append("source")
        suffix = b"," + _csv_text(params["source"][:100])
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor

    pairs: set[tuple[bytes, bytes]] = set()
    day_hours: set[bytes] = set()
    after_minutes: set[bytes] = set()
    received = 0
    # A moment without an offset is read in the business time zone, as the staged path
    # reads it (``timestamp AT TIME ZONE``: the same resolution of the local time).
    cursor.execute(
        "SELECT current_setting('TimeZone'), set_config('TimeZone', %s, true)", [params["tz"]]
    )
    session_zone = cursor.fetchone()[0]
    copy_sql = f"COPY invoicing_usagerecord ({', '.join(target)}) FROM STDIN WITH (FORMAT csv)"
    blocks = _blocks(stream)
    block = next(blocks, b"")
    if block:
        if not block_shape.fullmatch(block):
            raise _Staged
        # The first lines probed before anything is copied: the same file sent again,
        # or a file of the wrong brand, goes the staged way at once.
        first = b",".join(block.split(b"\n", PROBE_LINES)[:PROBE_LINES]).split(b",")
        _probe(cursor, first[service_at::width], first[external_id_at::width])
        moments = first[moment_at::width]
        _check_rules(
            cursor,
            params,
            set(zip(first[account_at::width], first[service_at::width], strict=True)),
            set(map(_DAY_HOUR, moments)),
            set(map(_AFTER_MINUTES, moments)),
            copied=False,
        )
    with raw.copy(copy_sql) as copy:
        while block:
            fields = block.replace(b"\n", b",").split(b",")
            received += len(fields) // width
            pairs.update(zip(fields[account_at::width], fields[service_at::width], strict=True))
            moments = fields[moment_at::width]
            day_hours.update(map(_DAY_HOUR, moments))
            after_minutes.update(map(_AFTER_MINUTES, moments))
            if suffix:
                block = block.replace(b"\n", suffix + b"\n") + suffix
            copy.write(block + b"\n")
            block = next(blocks, b"")
            if block and not block_shape.fullmatch(block):
                raise _Staged
    cursor.execute("SELECT set_config('TimeZone', %s, true)", [session_zone])
    _check_rules(cursor, params, pairs, day_hours, after_minutes)
    return IngestResult(received=received, accepted=received)


def _probe(cursor: Any, services: list[bytes], external_ids: list[bytes]) -> None:
    """Some of these records already stored: the staged path at once (the same file sent
    again), rather than at the end of a COPY that fails."""
    cursor.execute(
        """SELECT EXISTS (
               SELECT FROM invoicing_usagerecord u
               JOIN unnest(%(services)s::bigint[], %(ids)s::text[]) AS k(service_id, external_id)
                 USING (service_id, external_id))""",
        {
            "services": [int(ref) for ref in services],
            "ids": [ref.decode() for ref in external_ids],
        },
    )
    if cursor.fetchone()[0]:
        raise _Staged


def _days(
    params: dict[str, Any], latest: datetime, day_hours: set[bytes], offsets: set[bytes]
) -> tuple[date, date]:
    """The first and last business day of any moment in these hours at any of these offsets
    (``b""``: a local time), after checking each hour as the staged path would the
    moments in it (no earlier than 1900, no later than a day ahead: here the whole hour)."""
    zone = ZoneInfo(params["tz"])
    first, last = date.max, date.min
    for day_hour in day_hours:
        try:
            naive = datetime(
                int(day_hour[:4]), int(day_hour[5:7]), int(day_hour[8:10]), int(day_hour[11:13])
            )
        except ValueError:
            raise _Staged from None  # hour 24, a day that does not exist: staged
        for offset in offsets:
            if offset == b"Z":
                start = naive.replace(tzinfo=UTC)
            elif offset:
                minutes = int(offset[1:3]) * 60 + int(offset[4:6])
                sign = -1 if offset[:1] == b"-" else 1
                start = naive.replace(tzinfo=timezone(timedelta(minutes=sign * minutes)))
            else:
                start = naive.replace(tzinfo=zone)
                end = (naive + _HOUR).replace(tzinfo=zone)
                shift = start.utcoffset()
                if (
                    start.replace(fold=1).utcoffset() != shift
                    or end.utcoffset() != shift
                    or end.replace(fold=1).utcoffset() != shift
                    or start.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive
                ):
                    raise _Staged  # a daylight-saving change in the hour
            end = start + _HOUR
            if start < _NOT_BEFORE or end > latest:
                raise _Staged
            first = min(first, start.astimezone(zone).date())
            last = max(last, end.astimezone(zone).date())
    return first, last


def _check_rules(
    cursor: Any,
    params: dict[str, Any],
    pairs: set[tuple[bytes, bytes]],
    day_hours: set[bytes],
    after_minutes: set[bytes],
    *,
    copied: bool = True,
) -> None:
    """Every rule of the staged path for the rows just copied (see the module docstring);
    ``copied=False``: for rows about to be, all but those needing a row-by-row check."""
    if not pairs:
        return
    cursor.execute("SELECT now() + interval '1 day'")
    latest = cursor.fetchone()[0]
    offsets = {tail.lstrip(b":.0123456789") for tail in after_minutes}
    first_day, last_day = _days(params, latest, day_hours, offsets)
    cursor.execute(
        """SELECT id, brand_id FROM brands_service
           WHERE id = ANY(%(ids)s)
             AND (%(scope)s::bigint[] IS NULL OR brand_id = ANY(%(scope)s::bigint[]))""",
        {"ids": sorted({int(service) for _, service in pairs}), "scope": params["scope"]},
    )
    service_brand = dict(cursor.fetchall())
    # The pairs' accounts a batch at a time: a month's file names every account of a large
    # brand, and their links and subscriptions fetched at once held 1.5 GB at 1,500,000.
    remaining = iter(pairs)
    while batch := [
        (int(account), int(service)) for account, service in islice(remaining, PAIRS_BATCH)
    ]:
        _check_pairs(cursor, params, batch, service_brand, first_day, last_day, copied=copied)


def _check_pairs(
    cursor: Any,
    params: dict[str, Any],
    pairs: list[tuple[int, int]],
    service_brand: dict[int, int],
    first_day: date,
    last_day: date,
    *,
    copied: bool,
) -> None:
    """``_check_rules`` for a batch of (account, service) pairs."""
    account_ids = sorted({account_id for account_id, _ in pairs})
    cursor.execute(
        """SELECT ab.account_id, ab.brand_id
           FROM accounts_account a JOIN accounts_account_brands ab ON ab.account_id = a.id
           WHERE a.id = ANY(%(ids)s) AND a.kind = 'client' AND a.status <> 'closed'""",
        {"ids": account_ids},
    )
    linked = set(cursor.fetchall())
    cursor.execute(
        """SELECT account_id, service_id FROM invoicing_subscription
           WHERE account_id = ANY(%(ids)s) AND starts_on <= %(first)s
             AND (ends_on IS NULL OR ends_on >= %(last)s)""",
        {"ids": account_ids, "first": first_day, "last": last_day},
    )
    covered = set(cursor.fetchall())
    partly: list[tuple[int, int]] = []
    for pair in pairs:
        brand_id = service_brand.get(pair[1])
        if brand_id is None or (pair[0], brand_id) not in linked:
            raise _Staged  # unknown, closed, not linked, out of scope: the staged path says which
        if pair not in covered:
            partly.append(pair)
    if partly and copied:
        # Subscriptions that start or end within the file's span: its rows of these pairs
        # checked one by one (rows stored earlier in this transaction too, which only
        # costs a needless staged pass if one of them would not count any more).
        cursor.execute(
            """SELECT EXISTS (
                   SELECT FROM invoicing_usagerecord u
                   JOIN unnest(%(accounts)s::bigint[], %(services)s::bigint[])
                        AS p(account_id, service_id) USING (account_id, service_id)
                   WHERE u.account_id = ANY(%(accounts)s::bigint[])
                     AND u.xact_id = pg_current_xact_id()
                     AND NOT EXISTS (
                         SELECT FROM invoicing_subscription sub
                         WHERE sub.account_id = u.account_id AND sub.service_id = u.service_id
                           AND sub.starts_on <= (u.occurred_at AT TIME ZONE %(tz)s)::date
                           AND (sub.ends_on IS NULL
                                OR sub.ends_on >= (u.occurred_at AT TIME ZONE %(tz)s)::date)))""",
            {
                "accounts": [account for account, _ in partly],
                "services": [service for _, service in partly],
                "tz": params["tz"],
            },
        )
        if cursor.fetchone()[0]:
            raise _Staged  # no subscription on some row's day
