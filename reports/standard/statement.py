"""Account statement: opening balance, the movements of the period, closing balance."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import F, Q, Sum

from accounts.models import Account
from accounts.selectors import account_is_shared
from core.api.scope import Scope
from ledger.models import Entry
from reports.db import reporting_alias
from reports.standard.base import (
    ZERO,
    Column,
    Report,
    check_period,
    day_start,
    fetch_fast,
    next_day_start,
    stream_chunks,
)

COLUMNS = [
    Column("created_at", "Date and time", "datetime"),
    Column("kind", "Operation"),
    Column("amount", "Amount", "money"),
    Column("balance_after", "Balance after", "money"),
    Column("memo", "Memo"),
]

# A payer's own statement, the common case, in two statements on the covering index
# ledger_entry_acct_time_cov_idx (account, created_at, id) WHERE balance_after IS NOT NULL:
# the opening is one backward lookup, the movements one range scan in the order shown,
# each joined to its transaction by primary key for the kind and the memo (LATERAL ...
# LIMIT 1 keeps that join a per-row key lookup: the planner, misjudging how many rows
# the range holds, otherwise hashes the whole transaction table).
_OPENING = """
    SELECT balance_after FROM ledger_entry
     WHERE account_id = %(account)s AND balance_after IS NOT NULL AND created_at < %(start)s
     ORDER BY created_at DESC, id DESC
     LIMIT 1
"""
_MOVEMENTS_OF = """
    SELECT e.created_at, t.kind, {amounts}, t.memo
      FROM ledger_entry e
     CROSS JOIN LATERAL (SELECT kind, memo FROM ledger_transaction
                          WHERE id = e.transaction_id LIMIT 1) t
     WHERE e.account_id = %(account)s AND e.balance_after IS NOT NULL
       AND e.created_at >= %(start)s AND e.created_at < %(end)s
     ORDER BY e.created_at, e.id
"""


_MOVEMENTS = _MOVEMENTS_OF.format(amounts="e.amount, e.balance_after")
# The same movements with the amounts as PostgreSQL prints numeric(18, 2): two decimals,
# which is the API's money format, so the JSON statement needs no Decimal per value.
_MOVEMENTS_TEXT = _MOVEMENTS_OF.format(amounts="e.amount::text, e.balance_after::text")


# Movements handed over at a time by the payer's reads (libpq's chunked rows): small
# enough that the last chunk's encoding, which overlaps nothing, is short.
MOVEMENT_CHUNK = 1024


def _payer_rows(account: Account, start, end) -> tuple[Decimal, list[tuple]]:
    params = {"account": account.pk, "start": start, "end": end}
    opening = fetch_fast(_OPENING, params)
    # In chunks: the amounts' Decimals are made while the server reads on.
    rows = [
        row
        for chunk in stream_chunks(_MOVEMENTS, params, size=MOVEMENT_CHUNK, binary=False)
        for row in chunk
    ]
    return (opening[0][0] if opening else ZERO), rows


def _partial_rows(scope: Scope, account: Account, shared: bool, start, end):
    """A sub-account's own postings, or the part of a shared account a partner may read;
    a system account's entries. The opening is the sum of what came before."""
    entries = Entry.objects.using(reporting_alias()).select_related(None)
    if account.parent_id is not None:
        entries = entries.filter(subaccount_id=account.pk)
    else:
        entries = entries.filter(account_id=account.pk)
    if shared:
        entries = entries.filter(
            Q(transaction__brand_id__in=scope.brand_ids) | Q(transaction__caller=scope.caller.ref)
        )
    rows = list(
        entries.filter(created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
        .values_list(
            "created_at", "transaction__kind", "amount", "balance_after", "transaction__memo"
        )
    )
    opening = entries.filter(created_at__lt=start).aggregate(s=Sum(F("amount")))["s"] or ZERO
    return opening, rows


def _is_payer(scope: Scope, account: Account) -> tuple[bool, bool]:
    """(payer, shared): a client payer read whole, or a partial view of the account."""
    shared = account_is_shared(scope, account.pk)
    partial = account.parent_id is not None or shared
    return (not partial and account.kind == Account.Kind.CLIENT), shared


@dataclass
class PayerStream:
    """A payer's statement as the API answers it, read as it arrives: the opening as a
    Decimal, then ``chunks``, the movements ``(created_at, kind, amount, balance_after,
    memo)`` with the amounts as text ("-30.00"), in lists as they come from the server.
    Run ``chunks`` to the end (or close it) before using the reporting connection again."""

    opening: Decimal
    chunks: Iterator[list[tuple[datetime, str, str, str, str]]]


def payer_stream(
    scope: Scope, account: Account, date_from: date, date_to: date
) -> PayerStream | None:
    """``statement``'s movements for a client payer, streamed (the API's JSON path);
    None for any other account (a sub-account, a partner's view of a shared account, a
    system account), which ``statement`` answers.

    Two statements on the covering index: the opening (one backward probe), then the
    movements (one range scan, each joined to its transaction), whose rows reach the
    caller in chunks while the server still reads the next ones. The credit, the debit
    and the closing (the last movement's ``balance_after``, else the opening, as in
    ``statement``) are the caller's to take from the rows (``movement_sums``).
    """
    check_period(date_from, date_to)
    payer, _shared = _is_payer(scope, account)
    if not payer:
        return None
    params = {"account": account.pk, "start": day_start(date_from), "end": next_day_start(date_to)}
    opening = fetch_fast(_OPENING, params)
    rows = stream_chunks(_MOVEMENTS_TEXT, params, size=MOVEMENT_CHUNK)
    return PayerStream(opening[0][0] if opening else ZERO, rows)


def movement_sums(amounts: list[str]) -> tuple[Decimal, Decimal]:
    """(credit, debit) of amounts as PostgreSQL prints them: money in, money out (an entry
    is never zero, so the sign is the first character)."""
    credit = sum(map(Decimal, [text for text in amounts if text[0] != "-"]), ZERO)
    debit = -sum(map(Decimal, [text for text in amounts if text[0] == "-"]), ZERO)
    return credit, debit


def statement(
    scope: Scope, account: Account, date_from: date, date_to: date, *, chart: bool = True
) -> Report:
    """The statement of ``account`` (already found in ``scope``) for the days given, inclusive.

    A client payer's opening and closing are its balance before the first day and at
    the end of the last (``balance_after`` lookups); a sub-account's (its own postings,
    drawn on the payer) and a partner's view of a shared account (only the postings it
    may read) are the sums of what the statement shows. ``credit`` is money in,
    ``debit`` money out. ``chart=False`` skips the balance curve (the API has no use
    for it).
    """
    check_period(date_from, date_to)
    start, end = day_start(date_from), next_day_start(date_to)
    payer, shared = _is_payer(scope, account)
    if payer:
        opening, rows = _payer_rows(account, start, end)
    else:
        opening, rows = _partial_rows(scope, account, shared, start, end)
    credit, debit = ZERO, ZERO
    for row in rows:
        if row[2] > 0:
            credit += row[2]
        else:
            debit -= row[2]
    # A payer's closing is its balance after the last movement; anyone else's the sum.
    closing = (rows[-1][3] if rows else opening) if payer else opening + credit - debit
    return Report(
        name="statement",
        title=f"Statement of account {account.number}, {date_from} to {date_to}",
        columns=COLUMNS,
        rows=[
            {
                "created_at": r[0],
                "kind": r[1],
                "amount": r[2],
                "balance_after": r[3] if payer else None,
                "memo": r[4],
            }
            for r in rows
        ],
        header={
            "account": account.number,
            "currency": account.currency,
            "from": date_from,
            "to": date_to,
            "opening": opening,
            "closing": closing,
        },
        totals={"credit": credit, "debit": debit},
        chart={
            "type": "line",
            "labels": [r[0].isoformat() for r in rows],
            "series": [{"name": "Balance", "data": [str(r[3]) for r in rows]}] if payer else [],
        }
        if chart
        else None,
    )
