"""Staging a batch: the record and file readers, the validating SQL, the results."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import DataError, IntegrityError

from core.text import text_problem
from invoicing.exceptions import MalformedFile

STAGE = "invoicing_stage"
MAX_API_RECORDS = 10_000
# Placements of a readings batch before giving up on parallel batches with its external ids.
DUPLICATE_ATTEMPTS = 5

USAGE = "usage"
READINGS = "readings"
# Input field -> staging column, per kind. The staging table is shared by both kinds.
FIELD_COLUMNS = {
    USAGE: {
        "account": "account",
        "service": "service",
        "quantity": "value",
        "occurred_at": "moment",
        "external_id": "external_id",
        "source": "source",
    },
    READINGS: {
        "account": "account",
        "service": "service",
        "reading": "value",
        "taken_at": "moment",
        "external_id": "external_id",
        "meter": "meter",
        "source": "source",
    },
}
REQUIRED = {
    USAGE: ("account", "service", "quantity", "occurred_at", "external_id"),
    READINGS: ("account", "service", "reading", "taken_at", "external_id"),
}

MESSAGES = {
    "invalid_record": "Each record is an object.",
    "invalid_account": "account must be an account id.",
    "unknown_account": "No such account.",
    "invalid_service": "service must be a service id.",
    "unknown_service": "No such service.",
    "brand_not_linked": "The account is not linked to the service's brand.",
    "account_closed": "The account is closed.",
    "negative_quantity": "quantity cannot be negative.",
    "invalid_quantity": "quantity must be a decimal string with at most 6 decimal places.",
    "negative_reading": "reading cannot be negative.",
    "invalid_reading": "reading must be a decimal string with at most 6 decimal places.",
    "invalid_timestamp": "The timestamp must be an ISO 8601 date and time.",
    "future_timestamp": "The timestamp is in the future.",
    "invalid_external_id": "external_id is required (at most 100 characters).",
    "no_subscription": (
        "The account has no subscription to this service on that day, so the usage would"
        " never be billed; send it again once the subscription exists."
    ),
    "invalid_meter": "meter must be the meter's serial: text of at most 64 characters.",
    "invalid_source": "source must be text of at most 100 characters.",
    "no_meter": "No meter of this account and service was installed at that time.",
    "reading_backwards": "The reading is below the previous reading of the meter.",
    "reading_backwards_next": "A later reading of the meter is below this one.",
}


@dataclass(frozen=True, slots=True)
class RecordError:
    """A refused record: ``index`` is 0-based in an API batch, the data row (1-based) in a file."""

    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass
class IngestResult:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: list[RecordError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "errors": [error.as_dict() for error in self.errors],
        }


def _error(index: int, code: str) -> RecordError:
    return RecordError(index, code.removesuffix("_next"), MESSAGES[code])


# --------------------------------------------------------------------------- SQL

# Digits only (ltrim of every digit leaves nothing): cheaper than a regular expression.
_ID_OK = "(ltrim({0}, '0123456789') = '' AND length({0}) BETWEEN 1 AND 18)"
# Plain digits[.digits], 1-14 before the point: what most files carry, cast directly.
_DECIMAL_OK = """(
    ltrim(value, '0123456789.') = '' AND length(value) > 0
    AND CASE WHEN strpos(value, '.') = 0 THEN length(value) <= 14
             ELSE strpos(value, '.') BETWEEN 2 AND 15
                  AND length(value) - strpos(value, '.') BETWEEN 1 AND 6
                  AND strpos(substr(value, strpos(value, '.') + 1), '.') = 0 END
)"""
# The bulk form of invoicing_try_moment (migration 0003): the same reading, without its
# exception handler, so an unreadable moment aborts the statement (-> the careful path).
_MOMENT_BULK = """
CASE WHEN substr(moment, 5, 1) = '-' AND substr(moment, 8, 1) = '-'
          AND substr(moment, 11, 1) IN ('T', 't', ' ')
     THEN CASE WHEN ltrim(substr(moment, 17), ':.0123456789') = ''
               THEN moment::timestamp AT TIME ZONE %(tz)s
               ELSE moment::timestamptz END
END
"""
_READ_FAST = f"""
    s.account AS account_ref, s.service AS service_ref, s.value AS num,
    {_MOMENT_BULK.replace("moment", "s.moment")} AS moment_tz
"""
_READ_CAREFUL = f"""
    CASE WHEN {_ID_OK.format("s.account")} THEN s.account::bigint
         ELSE invoicing_try_bigint(s.account) END AS account_ref,
    CASE WHEN {_ID_OK.format("s.service")} THEN s.service::bigint
         ELSE invoicing_try_bigint(s.service) END AS service_ref,
    CASE WHEN {_DECIMAL_OK.replace("value", "s.value")} THEN s.value::numeric
         ELSE invoicing_try_numeric(s.value) END AS num,
    invoicing_try_moment(s.moment, %(tz)s) AS moment_tz
"""


# Usage needs a subscription of its account to its service on its business day: the
# rating bills usage per subscription segment and nothing else. Subscriptions of one
# account and service never overlap (an exclusion constraint), so at most one matches.
_SUBSCRIPTION_JOIN = """
        LEFT JOIN invoicing_subscription sub
          ON sub.account_id = a.id AND sub.service_id = sv.id
         AND sub.starts_on <= (r.moment_tz AT TIME ZONE %(tz)s)::date
         AND (sub.ends_on IS NULL OR sub.ends_on >= (r.moment_tz AT TIME ZONE %(tz)s)::date)
"""


def _checked_sql(value_name: str, *, fast: bool, subscription: bool = False) -> str:
    """Every staged row with its error code (NULL when valid), resolved ids and typed values.

    ``fast``: the staging table is typed (COPY parsed ids and numbers) and moments are
    cast in bulk; otherwise it is text and every value goes through the exact,
    exception-free readers. Both accept the same values; the rules after reading are
    shared. ``OFFSET 0`` keeps each layer's expressions from being evaluated twice.
    ``subscription``: a valid row also needs a subscription on its day
    (``no_subscription``), for usage; a meter reading counts without one (it is the
    baseline of the next one's consumption).
    """
    no_subscription = "WHEN sub.id IS NULL THEN 'no_subscription'" if subscription else ""
    return f"""
    SELECT c.idx, c.error, c.account_id, c.service_id, c.external_id, c.meter, c.source,
           CASE WHEN c.error IS NULL THEN c.num END AS value,
           CASE WHEN c.error IS NULL THEN c.moment_tz END AS moment
    FROM (
        SELECT r.*, a.id AS account_id, sv.id AS service_id,
            CASE
                WHEN r.account_ref IS NULL OR r.account_ref <= 0 THEN 'invalid_account'
                WHEN a.id IS NULL THEN 'unknown_account'
                WHEN r.service_ref IS NULL OR r.service_ref <= 0 THEN 'invalid_service'
                WHEN sv.id IS NULL THEN 'unknown_service'
                WHEN ab.account_id IS NULL THEN %(not_linked)s
                WHEN a.status = 'closed' THEN 'account_closed'
                WHEN r.num IS NULL THEN 'invalid_{value_name}'
                WHEN r.num < 0 THEN 'negative_{value_name}'
                WHEN r.num >= 1e14 OR scale(r.num) > 6 THEN 'invalid_{value_name}'
                WHEN r.moment_tz IS NULL OR r.moment_tz < '1900-01-01T00:00:00Z'
                    THEN 'invalid_timestamp'
                WHEN r.moment_tz > now() + interval '1 day' THEN 'future_timestamp'
                WHEN r.external_id IS NULL OR r.external_id = ''
                     OR length(r.external_id) > 100 THEN 'invalid_external_id'
                WHEN length(r.meter) > 64 THEN 'invalid_meter'
                {no_subscription}
            END AS error
        FROM (
            SELECT s.idx, s.external_id, s.meter,
                COALESCE(NULLIF(s.source, ''), %(source)s) AS source,
                {_READ_FAST if fast else _READ_CAREFUL}
            FROM {STAGE} s
            OFFSET 0
        ) r
        LEFT JOIN accounts_account a ON a.id = r.account_ref AND a.kind = 'client'
        LEFT JOIN brands_service sv
          ON sv.id = r.service_ref
         AND (%(scope)s::bigint[] IS NULL OR sv.brand_id = ANY(%(scope)s::bigint[]))
        LEFT JOIN accounts_account_brands ab
          ON ab.account_id = a.id AND ab.brand_id = sv.brand_id
        {_SUBSCRIPTION_JOIN if subscription else ""}
        OFFSET 0
    ) c
    """


LOAD_TABLE = "invoicing_usageload"


def _usage_apply_sql(*, fast: bool, on_conflict: bool, load: bool = False) -> str:
    """One pass: validate, insert the valid rows, return the refused ones (and the counts).

    ``load``: the valid rows go to the load table of a parallel ingest (with their
    load id, part and index), for ``invoicing.ingest_parallel`` to publish together.
    Skipping duplicates (``on_conflict``), the rows go into the usage table in the file's
    order: of a record twice in a batch the first is stored and the later one is the
    duplicate, as when parallel parts are published (the validation's joins leave the
    rows in no particular order, and ``ON CONFLICT DO NOTHING`` keeps whichever comes
    first).
    """
    conflict = "ON CONFLICT (service_id, external_id) DO NOTHING" if on_conflict else ""
    # Skipping duplicates, the rows go in the file's order (see the docstring).
    order = "ORDER BY idx" if on_conflict else ""
    insert = (
        f"""INSERT INTO {LOAD_TABLE}
            (load_id, part, idx, account_id, service_id, quantity, occurred_at, external_id,
             source)
        SELECT %(load)s, %(part)s, idx, account_id, service_id, value, moment, external_id,
               left(source, 100)
        FROM checked WHERE error IS NULL"""
        if load
        else f"""INSERT INTO invoicing_usagerecord
            (account_id, service_id, quantity, occurred_at, external_id, source)
        SELECT account_id, service_id, value, moment, external_id, left(source, 100)
        FROM checked WHERE error IS NULL
        {order}
        {conflict}"""
    )
    return f"""
    WITH checked AS MATERIALIZED ({_checked_sql("quantity", fast=fast, subscription=True)}),
    ins AS (
        {insert}
        RETURNING 1
    )
    SELECT -1::bigint, NULL::text, (SELECT count(*) FROM ins),
           (SELECT count(*) FROM checked WHERE error IS NULL)
    UNION ALL
    (SELECT idx, error, NULL, NULL FROM checked WHERE error IS NOT NULL ORDER BY idx)
    """


# Every staged reading, checked, in the order the placement streams them: by series
# (account, service), then input order; refused rows last. ``repeated``: a valid row whose
# (service, external id) an earlier valid row of the batch already has (a duplicate
# whichever series batch either lands in: the first in input order is the one placed).
_READINGS_CHECK_SQL = f"""
SELECT idx, error, account_id, service_id, value, moment, external_id,
       COALESCE(meter, ''), left(source, 100),
       error IS NULL AND row_number() OVER (
           PARTITION BY error IS NULL, service_id, external_id ORDER BY idx
       ) > 1 AS repeated
FROM ({_checked_sql("reading", fast=False)}) c
ORDER BY error IS NOT NULL, account_id, service_id, idx
"""


def _begin(cursor: Any) -> None:
    # A big sort/materialise buffer keeps a million-row batch in memory, and JIT
    # compilation of the validation would cost more than it saves (until commit).
    cursor.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
        [getattr(settings, "INVOICING_INGEST_WORK_MEM", "512MB")],
    )


def _create_stage(cursor: Any, *, typed: bool) -> None:
    """The staging table: typed columns for the fast path, text for the careful one.

    Inside an outer transaction (a caller's atomic block: a spreadsheet imported row by
    row, a test) the table of an earlier batch may still exist, as ON COMMIT DROP only
    fires at the real commit. Of the same shape it is emptied and used again: a table
    dropped and created anew is a new relation, whose locks (the table's, its identity
    sequence's, its TOAST table's and index's) are held to the end of the transaction,
    so 10,000 rows imported one by one in one transaction filled the server's lock table
    (``max_locks_per_transaction``) and every other session's queries failed.
    """
    number, ident = ("numeric", "bigint") if typed else ("text", "text")
    cursor.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attname = 'value'",
        [f"pg_temp.{STAGE}"],
    )
    found = cursor.fetchone()
    if found is not None:
        if found[0] == number:
            cursor.execute(f"TRUNCATE pg_temp.{STAGE} RESTART IDENTITY")
            return
        cursor.execute(f"DROP TABLE pg_temp.{STAGE}")
    cursor.execute(
        f"""CREATE TEMP TABLE {STAGE} (
                idx bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 1),
                account {ident}, service {ident}, value {number}, moment text,
                external_id text, meter text, source text
            ) ON COMMIT DROP"""
    )


def _scope_params(brand_ids: Iterable[int] | None, source: str) -> dict[str, Any]:
    scope = None if brand_ids is None else list(brand_ids)
    return {
        "scope": scope,
        # Outside a partner's brands, an account's existence is not revealed.
        "not_linked": "brand_not_linked" if scope is None else "unknown_account",
        "source": source,
        "tz": settings.TIME_ZONE,
    }


# --------------------------------------------------------------------------- staging


# What a record's field is refused with when it is of the wrong type or holds text that
# cannot be stored (a NUL character, an unpaired surrogate) or would not fit its column.
FIELD_ERRORS = {
    "account": "invalid_account",
    "service": "invalid_service",
    "quantity": "invalid_quantity",
    "reading": "invalid_reading",
    "occurred_at": "invalid_timestamp",
    "taken_at": "invalid_timestamp",
    "external_id": "invalid_external_id",
    "meter": "invalid_meter",
    "source": "invalid_source",
}
FIELD_MAX_LENGTH = {"meter": 64, "source": 100}


def _record_refusal(kind: str, index: int, record: dict[str, Any]) -> RecordError | None:
    """Why a record cannot even be staged, or None.

    Values are JSON strings or integers (the value field also a ``Decimal`` from
    Python callers; never a float); text holds no NUL character nor an unpaired
    surrogate (PostgreSQL could not store it) and fits its column.
    """
    value_field = REQUIRED[kind][2]
    for name in FIELD_COLUMNS[kind]:
        value = record.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        if name == value_field and isinstance(value, Decimal):
            continue
        code = FIELD_ERRORS[name]
        if not isinstance(value, str):
            message = MESSAGES[code] if name == value_field else f"{name} must be text."
            return RecordError(index, code, message)
        problem = text_problem(value)
        if problem is not None:
            return RecordError(index, code, f"{name}: {problem[1]}")
        limit = FIELD_MAX_LENGTH.get(name)
        if limit is not None and len(value) > limit:
            return RecordError(index, code, f"{name} is longer than {limit} characters.")
    return None


def _stage_records(cursor: Any, kind: str, records: Sequence[Any]) -> list[RecordError]:
    """COPY API records (dicts) into staging with their 0-based index; return the records
    refused before staging (not an object, a value of the wrong type, text that cannot be
    stored: ``_record_refusal``)."""
    mapping = FIELD_COLUMNS[kind]
    value_field = REQUIRED[kind][2]
    columns = ["idx", *dict.fromkeys(mapping.values())]
    inverse = {column: name for name, column in mapping.items()}
    refused: list[RecordError] = []
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
    with raw.copy(f"COPY {STAGE} ({', '.join(columns)}) FROM STDIN") as copy:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                refused.append(_error(index, "invalid_record"))
                continue
            if isinstance(record.get(value_field), float | bool):
                refused.append(_error(index, f"invalid_{value_field}"))
                continue
            refusal = _record_refusal(kind, index, record)
            if refusal is not None:
                refused.append(refusal)
                continue
            row: list[Any] = [index]
            for column in columns[1:]:
                value = record.get(inverse[column])
                row.append(None if value is None else str(value))
            copy.write_row(row)
    return refused


def _not_text(line: int, reason: str, detail: str) -> MalformedFile:
    messages = {
        "nul_byte": f"Line {line} of the file holds a NUL byte: this is not a text file.",
        "invalid_utf8": f"Line {line} of the file is not valid UTF-8 ({detail}); save the file "
        "as UTF-8.",
    }
    return MalformedFile(messages[reason], line=line, reason=reason)


def _text_blocks(stream: IO[bytes], first_line: int) -> Iterator[bytes]:
    """The stream's blocks as they are, refused (``malformed_file`` naming the line) at the
    first NUL byte or byte sequence that is not UTF-8: PostgreSQL would refuse either in
    the middle of the COPY, with a message about byte sequences rather than lines."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = first_line
    while block := stream.read(1 << 20):
        nul = block.find(b"\x00")
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(block if nul == -1 else block[:nul])
        except UnicodeDecodeError as exc:
            at = max(0, exc.start - pending)
            bad = block[at : at + 1].hex()
            where = line + block.count(b"\n", 0, at)
            raise _not_text(where, "invalid_utf8", f"byte 0x{bad}") from None
        if nul != -1:
            raise _not_text(line + block.count(b"\n", 0, nul), "nul_byte", "")
        line += block.count(b"\n")
        yield block
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _not_text(line, "invalid_utf8", "it ends inside a character") from None


def _file_header(stream: IO[bytes], kind: str) -> list[str]:
    """The field names of a CSV file's header row (the stream is left after it), refused
    (``malformed_file``) unless they name the kind's required fields, each once."""
    header_bytes = b"".join(_text_blocks(io.BytesIO(stream.readline()), 1))
    header_line = header_bytes.decode("utf-8-sig")
    if not header_line.strip():
        raise MalformedFile("The file is empty; a header row is expected.")
    names = [name.strip() for name in next(csv.reader(io.StringIO(header_line)))]
    mapping = FIELD_COLUMNS[kind]
    unknown = [name for name in names if name not in mapping]
    missing = [name for name in REQUIRED[kind] if name not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise MalformedFile(
            "The header must name the columns "
            + ", ".join(REQUIRED[kind])
            + " (optionally "
            + ", ".join(sorted(set(mapping) - set(REQUIRED[kind])))
            + ").",
            unknown=unknown,
            missing=missing,
        )
    return names


def _stage_file(cursor: Any, kind: str, stream: IO[bytes], *, typed: bool = False) -> None:
    """COPY a CSV file with a header row into staging, streamed as it is (no parsing here).

    Into a typed table a bad value raises (the caller then stages the file as text);
    into a text table only a broken file does (``malformed_file``), and so does a NUL
    byte or a byte sequence that is not UTF-8, wherever it is (naming its line).
    """
    columns = [FIELD_COLUMNS[kind][name] for name in _file_header(stream, kind)]
    raw = cursor.cursor if hasattr(cursor, "cursor") else cursor
    try:
        with raw.copy(f"COPY {STAGE} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
            for block in _text_blocks(stream, 2):
                copy.write(block)
    except psycopg.Error as exc:
        if typed:
            raise
        raise MalformedFile(
            f"The file is not valid CSV: {str(exc).strip()}", line_offset=1
        ) from None


# --------------------------------------------------------------------------- usage


# What makes the fast path give way to the careful one: a value PostgreSQL cannot read.
UNREADABLE = (DataError, psycopg.DataError)


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", "") or ""
