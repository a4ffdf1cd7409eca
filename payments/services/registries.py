"""Registry import: preview a file, then apply it whole, or refuse it.

``registry_preview`` reads the file (``payments.formats``), matches every line to
an account and stores the registry as *previewed* with what applying it would
do: how many lines would post and for how much, how many would go to suspense,
which the agent already sent (duplicates), the commission, and the row errors.
Nothing moves.

``registry_apply`` applies a previewed registry in one database transaction:

1. locks the registry's row (a second apply of the same registry waits, then
   finds it applied: ``409 registry_already_applied``);
2. reads the file again; row errors refuse it (``registry_refused``,
   reason ``row_errors``), so a file is applied whole or not at all;
3. claims every payment id with one ``INSERT ... ON CONFLICT DO NOTHING`` into
   ``payments_agentpayment`` (unique on agent and payment id). The ids it did
   not insert were already claimed, by an earlier file or by a concurrent apply
   that committed meanwhile (PostgreSQL makes the second insert wait on the
   first one's index entry): those lines are duplicates and post nothing;
4. checks the payment rules of each line's account (``payments.rules``);
5. posts the claimed lines through ``ledger.services.post_bulk`` (the ledger's
   set-based path: balances, ``balance_after``, and invoice allocation, exactly as
   single payments: invoicing allocates a call's payments set-based on its
   ``transactions_posted`` signal), and the lines for unknown,
   closed or mistyped accounts, or refused by the ledger or a rule, as suspense
   receipts in a second ``post_bulk`` call;
6. records which transaction carried which claim, opens the suspense items
   (with the raw line) and stores the figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account
from core.batch import gc_paused
from core.caller import SYSTEM, Caller
from core.db import bound_cursor
from core.errors import DomainError, IdempotencyConflict
from core.validators import account_number_is_valid
from ledger.exceptions import DuplicatePayment
from ledger.services import PaymentItem, post_bulk, request_hash, take_transaction_ids
from payments.exceptions import RegistryAlreadyApplied, RegistryRefused, ValidationFailed
from payments.formats import (
    BUILT_IN,
    ZERO,
    Layout,
    ParsedRegistry,
    ParsedRow,
    commission_of,
    layout_problems,
    parse_registry,
)
from payments.models import AgentPayment, PaymentAgent, Registry, RegistryFormat, SuspenseItem
from payments.services.items import SuspenseReceiptItem

MAX_FILE_BYTES = 100 * 1024 * 1024
# Ledger refusals of a registry line that send it to suspense, by the reason kept there.
REFUSAL_REASONS = {
    "account_closed": SuspenseItem.Reason.ACCOUNT_CLOSED,
    "currency_mismatch": SuspenseItem.Reason.CURRENCY_MISMATCH,
}
CLAIM_CHUNK = 20_000


def layout_of(agent: PaymentAgent) -> Layout:
    """The layout an agent's files are read with."""
    if agent.format != RegistryFormat.CUSTOM:
        return BUILT_IN[agent.format]
    row = agent.layout
    layout = Layout(
        name=row.name,
        encoding=row.encoding,
        delimiter=row.delimiter,
        quoted=row.quoted,
        decimal_separator=row.decimal_separator,
        date_format=row.date_format,
        columns=dict(row.columns),
        header_lines=row.header_lines,
        footer_lines=row.footer_lines,
        control_line=row.control_line,
        control_prefix=row.control_prefix,
        control_columns=dict(row.control_columns or {}),
    )
    problems = layout_problems(layout)
    if problems:
        raise ValidationFailed(
            f"The layout {row.name!r} of agent {agent.code} cannot read files.", **problems
        )
    return layout


@dataclass(slots=True)
class Line:
    """One readable payment line and what becomes of it."""

    parsed: ParsedRow
    commission: Decimal
    account_id: int | None = None
    currency: str = ""
    suspense_reason: str | None = None
    suspense_detail: str = ""
    duplicate: bool = False
    transaction_id: int | None = None  # taken before the claim: its payment's or receipt's
    # The ledger refused its payment as already posted (by another path than a registry):
    # its suspense receipt then carries no external id (the payment holds it).
    posted_elsewhere: bool = False


@dataclass(slots=True)
class Classified:
    parsed: ParsedRegistry
    lines: list[Line]
    errors: list[dict[str, Any]] = field(default_factory=list)


def _accounts_by_number(numbers: Iterable[str]) -> dict[str, tuple[int, str, str]]:
    """``{number: (id, status, currency)}`` of the client accounts with these numbers."""
    found: dict[str, tuple[int, str, str]] = {}
    numbers = list(numbers)
    for start in range(0, len(numbers), 50_000):
        chunk = numbers[start : start + 50_000]
        for pk, number, status, currency in Account.objects.filter(
            kind=Account.Kind.CLIENT, number__in=chunk
        ).values_list("pk", "number", "status", "currency"):
            found[number] = (pk, status, currency)
    return found


def classify(agent: PaymentAgent, parsed: ParsedRegistry) -> Classified:
    """Match every readable line to its account, or the reason it goes to suspense; mark the
    lines whose payment id came earlier in the same file as duplicates."""
    lines: list[Line] = []
    seen: set[str] = set()
    valid = {number: account_number_is_valid(number) for number in {r.account for r in parsed.rows}}
    accounts = _accounts_by_number(number for number, ok in valid.items() if ok)
    rate = agent.commission_rate
    for row in parsed.rows:
        commission = (
            row.commission
            if parsed.has_commission and row.commission is not None
            else commission_of(row.amount, rate)
        )
        line = Line(parsed=row, commission=commission)
        if row.payment_id in seen:
            line.duplicate = True
        seen.add(row.payment_id)
        if not valid[row.account]:
            line.suspense_reason = SuspenseItem.Reason.INVALID_CHECK_DIGIT
            line.suspense_detail = f"{row.account!r} is not an account number (check digit)."
        elif row.account not in accounts:
            line.suspense_reason = SuspenseItem.Reason.UNKNOWN_ACCOUNT
            line.suspense_detail = f"No account {row.account}."
        else:
            pk, status, currency = accounts[row.account]
            line.account_id, line.currency = pk, currency
            if status == Account.Status.CLOSED:
                line.suspense_reason = SuspenseItem.Reason.ACCOUNT_CLOSED
                line.suspense_detail = f"Account {row.account} is closed."
            elif currency != agent.currency:
                line.suspense_reason = SuspenseItem.Reason.CURRENCY_MISMATCH
                line.suspense_detail = (
                    f"Account {row.account} is in {currency}, the agent pays in {agent.currency}."
                )
        lines.append(line)
    return Classified(parsed=parsed, lines=lines, errors=[e.as_dict() for e in parsed.errors])


_CLAIMED_SQL = """
SELECT p.payment_id FROM payments_agentpayment p
WHERE p.agent_id = %(agent)s AND p.payment_id = ANY(%(payment_ids)s::text[])
"""


def _already_claimed(agent: PaymentAgent, payment_ids: list[str]) -> set[str]:
    """The payment ids the agent already sent: one array parameter a statement (an IN list
    of tens of thousands of placeholders costs more to build and plan than to run)."""
    claimed: set[str] = set()
    with bound_cursor() as cursor:
        for start in range(0, len(payment_ids), CLAIM_CHUNK * 5):
            chunk = payment_ids[start : start + CLAIM_CHUNK * 5]
            cursor.execute(_CLAIMED_SQL, {"agent": agent.pk, "payment_ids": chunk})
            claimed.update(row[0] for row in cursor.fetchall())
    return claimed


def _figures(classified: Classified) -> dict[str, Any]:
    posted = [ln for ln in classified.lines if not ln.duplicate and not ln.suspense_reason]
    suspense = [ln for ln in classified.lines if not ln.duplicate and ln.suspense_reason]
    duplicates = [ln for ln in classified.lines if ln.duplicate]
    return {
        "rows": classified.parsed.lines,
        "total_amount": classified.parsed.total,
        "control_count": classified.parsed.control_count,
        "control_total": classified.parsed.control_total,
        "posted": len(posted),
        "posted_amount": sum((ln.parsed.amount for ln in posted), ZERO),
        "suspense": len(suspense),
        "suspense_amount": sum((ln.parsed.amount for ln in suspense), ZERO),
        "duplicates": len(duplicates),
        "duplicates_amount": sum((ln.parsed.amount for ln in duplicates), ZERO),
        "commission": sum((ln.commission for ln in classified.lines if not ln.duplicate), ZERO),
        "errors": classified.errors,
    }


def _read(agent: PaymentAgent, content: bytes) -> Classified:
    if not agent.active:
        raise ValidationFailed(f"Agent {agent.code} is not active.", agent=["Not active."])
    if len(content) > MAX_FILE_BYTES:
        raise RegistryRefused(
            f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.", reason="too_large"
        )
    return classify(agent, parse_registry(layout_of(agent), content))


@transaction.atomic
def registry_preview(
    *, agent: PaymentAgent, file_name: str, content: bytes, caller: Caller = SYSTEM
) -> Registry:
    """Read a registry file and store it as previewed, with what applying it would do.

    Refused (``RegistryRefused``, nothing stored) when it cannot be read or its
    control line does not match; row errors are kept on the registry.
    """
    with gc_paused():
        return _preview(agent, file_name, content, caller)[0]


def _preview(
    agent: PaymentAgent,
    file_name: str,
    content: bytes,
    caller: Caller,
    keyed: tuple[str, str, str] | None = None,
    look_up_claims: bool = True,
) -> tuple[Registry, Classified]:
    """Read the file and store the registry as previewed. ``look_up_claims`` False: the
    payment ids the agent already sent are not looked up (an import applies the file at
    once, and its claims find them)."""
    classified = _read(agent, content)
    if look_up_claims:
        known = _already_claimed(agent, [ln.parsed.payment_id for ln in classified.lines])
        for line in classified.lines:
            if line.parsed.payment_id in known:
                line.duplicate = True
    registry = Registry.objects.create(
        agent=agent,
        file_name=file_name[:255],
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        created_by=caller.user,
        **_figures(classified),
        **(
            {"idempotency_caller": keyed[0], "idempotency_key": keyed[1], "request_hash": keyed[2]}
            if keyed is not None
            else {}
        ),
    )
    return registry, classified


_CLAIM_SQL = """
INSERT INTO payments_agentpayment
    (agent_id, payment_id, registry_id, row, account_number, amount, commission, paid_at,
     outcome, transaction_id, created_at)
SELECT %(agent)s, v.payment_id, %(registry)s, v.row, v.account_number, v.amount,
       v.commission, v.paid_at, v.outcome, v.transaction_id, %(now)s
FROM unnest(%(payment_ids)s::text[], %(rows)s::int[], %(numbers)s::text[],
            %(amounts)s::numeric[], %(commissions)s::numeric[], %(paid_at)s::timestamptz[],
            %(outcomes)s::text[], %(transactions)s::bigint[])
     AS v(payment_id, row, account_number, amount, commission, paid_at, outcome,
          transaction_id)
ON CONFLICT (agent_id, payment_id) DO NOTHING
RETURNING id, payment_id
"""

_SETTLE_CLAIMS_SQL = """
UPDATE payments_agentpayment p
SET transaction_id = v.transaction_id, outcome = v.outcome
FROM unnest(%(ids)s::bigint[], %(transactions)s::bigint[], %(outcomes)s::text[])
     AS v(id, transaction_id, outcome)
WHERE p.id = v.id
"""


def _claim(agent: PaymentAgent, registry: Registry, lines: list[Line], now: Any) -> dict[str, int]:
    """Claim the lines' payment ids; ``{payment_id: claim id}`` of those this call claimed.

    Through ``bound_cursor``: eight arrays of up to 20,000 values sent apart from the SQL
    (Django's cursor quoted every value into its text: 100,000 lines, 4.3 -> 2.7 s).
    """
    claimed: dict[str, int] = {}
    with bound_cursor() as cursor:
        for start in range(0, len(lines), CLAIM_CHUNK):
            chunk = lines[start : start + CLAIM_CHUNK]
            cursor.execute(
                _CLAIM_SQL,
                {
                    "agent": agent.pk,
                    "registry": registry.pk,
                    "now": now,
                    "payment_ids": [ln.parsed.payment_id for ln in chunk],
                    "rows": [ln.parsed.row for ln in chunk],
                    "numbers": [ln.parsed.account for ln in chunk],
                    "amounts": [ln.parsed.amount for ln in chunk],
                    "commissions": [ln.commission for ln in chunk],
                    "paid_at": [ln.parsed.paid_at for ln in chunk],
                    "outcomes": [
                        AgentPayment.Outcome.SUSPENSE
                        if ln.suspense_reason
                        else AgentPayment.Outcome.POSTED
                        for ln in chunk
                    ],
                    "transactions": [ln.transaction_id for ln in chunk],
                },
            )
            claimed.update({payment_id: pk for pk, payment_id in cursor.fetchall()})
    return claimed


def _external_id(agent: PaymentAgent, payment_id: str) -> str:
    return f"{agent.code}:{payment_id}"[:100]


def _metadata(registry: Registry, line: Line) -> dict[str, Any]:
    row = line.parsed
    return {
        "registry": registry.pk,
        "row": row.row,
        "agent": registry.agent.code,
        "payment_id": row.payment_id,
        "paid_at": row.paid_at.isoformat() if row.paid_at else None,
        "payer": row.payer,
        "period": row.period,
    }


def _rule_refusals(lines: list[Line]) -> None:
    """Send to suspense the lines a payment rule of their account refuses."""
    from payments.rules import registry_refusals

    wanted = [ln for ln in lines if ln.account_id is not None and not ln.suspense_reason]
    for line, refusal in zip(
        wanted,
        registry_refusals([(ln.account_id, ln.parsed.amount) for ln in wanted]),
        strict=True,
    ):
        if refusal is not None:
            line.suspense_reason = SuspenseItem.Reason.REFUSED_BY_RULE
            line.suspense_detail = f"{refusal.code}: {refusal.message}"[:500]


def _post_payments(
    registry: Registry, agent: PaymentAgent, lines: list[Line], caller: Caller, now: Any
) -> list[Any]:
    return post_bulk(
        [
            PaymentItem(
                account_id=ln.account_id,
                amount=ln.parsed.amount,
                channel=Account.Channel.AGENT,
                external_id=_external_id(agent, ln.parsed.payment_id),
                memo=f"Registry {registry.pk} ({registry.file_name}), line {ln.parsed.row}",
                currency=agent.currency,
                metadata=_metadata(registry, ln),
            )
            for ln in lines
        ],
        caller=caller,
        now=now,
        transaction_ids=[ln.transaction_id for ln in lines],
    )


@transaction.atomic
def registry_apply(*, registry: Registry | int, caller: Caller = SYSTEM) -> Registry:
    """Apply a previewed registry whole; see the module docstring. Locks the registry row,
    the claimed payment ids (index entries) and the accounts it posts to."""
    pk = registry.pk if isinstance(registry, Registry) else registry
    registry = Registry.objects.select_for_update().select_related("agent").get(pk=pk)
    if registry.status != Registry.Status.PREVIEWED:
        raise RegistryAlreadyApplied(registry=registry.pk)
    with gc_paused():
        return _apply(registry, _read(registry.agent, bytes(registry.content)), caller)


def _apply(registry: Registry, classified: Classified, caller: Caller) -> Registry:
    agent = registry.agent
    if classified.errors:
        raise RegistryRefused(
            f"{len(classified.errors)} row error(s): fix the file and import it again.",
            reason="row_errors",
            errors=classified.errors[:100],
        )
    now = timezone.now()
    fresh = [ln for ln in classified.lines if not ln.duplicate]
    _rule_refusals(fresh)
    # Every claim carries its transaction from the start: ids are taken now, in the order
    # the two postings below number them (payments, then suspense receipts), so the
    # claims are not updated afterwards (but for the lines the ledger refuses).
    planned = [ln for ln in fresh if not ln.suspense_reason]
    planned += [ln for ln in fresh if ln.suspense_reason]
    for line, txn_id in zip(planned, take_transaction_ids(len(planned)), strict=True):
        line.transaction_id = txn_id
    claimed = _claim(agent, registry, fresh, now)
    for line in fresh:
        if line.parsed.payment_id not in claimed:
            line.duplicate = True
    to_post = [ln for ln in fresh if not ln.duplicate and not ln.suspense_reason]
    results = _post_payments(registry, agent, to_post, caller, now)
    refused = []
    for line, result in zip(to_post, results, strict=True):
        if isinstance(result, DomainError):
            line.suspense_reason = REFUSAL_REASONS.get(result.code, SuspenseItem.Reason.REFUSED)
            line.suspense_detail = f"{result.code}: {result.message}"[:500]
            line.posted_elsewhere = isinstance(result, DuplicatePayment)
            refused.append(line)
    to_suspense = [ln for ln in fresh if not ln.duplicate and ln.suspense_reason]
    if refused:  # rare: their receipts get ids at the write, and all receipts keep id order
        for line in to_suspense:
            line.transaction_id = None
    receipts = post_bulk(
        [
            SuspenseReceiptItem(
                amount=ln.parsed.amount,
                currency=agent.currency,
                external_id=""
                if ln.posted_elsewhere
                else _external_id(agent, ln.parsed.payment_id),
                memo=f"Suspense: registry {registry.pk}, line {ln.parsed.row}",
                metadata=_metadata(registry, ln),
            )
            for ln in to_suspense
        ],
        caller=caller,
        now=now,
        transaction_ids=[ln.transaction_id for ln in to_suspense],
    )
    carried: dict[int, int] = {}  # claim id -> transaction id, where the claim lacks it
    suspense_items = []
    for line, receipt in zip(to_suspense, receipts, strict=True):
        if isinstance(receipt, DomainError):  # pragma: no cover - suspense refuses nothing
            raise receipt
        claim = claimed[line.parsed.payment_id]
        if line.transaction_id is None:
            carried[claim] = receipt.pk
        row = line.parsed
        suspense_items.append(
            SuspenseItem(
                registry=registry,
                agent_payment_id=claim,
                row=row.row,
                account_number=row.account[:40],
                payer=row.payer[:300],
                amount=row.amount,
                currency=agent.currency,
                received_at=row.paid_at or now,
                reason=line.suspense_reason,
                reason_detail=line.suspense_detail,
                raw=row.raw,
                receipt_transaction_id=receipt.pk,
            )
        )
    SuspenseItem.objects.bulk_create(suspense_items, batch_size=5000)
    ids = list(carried)  # the suspense claims, when the ledger refused a payment
    with bound_cursor() as cursor:
        for start in range(0, len(ids), CLAIM_CHUNK):
            chunk = ids[start : start + CLAIM_CHUNK]
            cursor.execute(
                _SETTLE_CLAIMS_SQL,
                {
                    "ids": chunk,
                    "transactions": [carried[i] for i in chunk],
                    "outcomes": [AgentPayment.Outcome.SUSPENSE] * len(chunk),
                },
            )
    figures = _figures(classified)
    for name, value in figures.items():
        setattr(registry, name, value)
    registry.status = Registry.Status.APPLIED
    registry.applied_at = now
    registry.applied_by = caller.user
    # Not the file itself: rewriting megabytes of unchanged content costs a second copy.
    registry.save(update_fields=[*figures, "status", "applied_at", "applied_by"])
    return registry


REGISTRY_KEY_CONSTRAINT = "payments_registry_unique_idempotency_key"


def registry_import(
    *,
    agent: PaymentAgent,
    file_name: str,
    content: bytes,
    dry_run: bool = False,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Registry:
    """Preview a file and, unless ``dry_run``, apply it at once (one transaction: a refused
    apply leaves no registry behind).

    With an ``idempotency_key`` the import happens once per (caller, key): the same
    request again (same agent, file name, content and ``dry_run``) returns the
    registry it made with ``.replayed = True``, a different one is refused with
    ``idempotency_conflict``. The key is stored on the registry, in the import's
    transaction (a refused file stores none, so the key can be used again); a
    concurrent twin waits on the key's unique index, then replays the winner.
    """
    with gc_paused():
        return _keyed_import(agent, file_name, content, dry_run, caller, idempotency_key)


def _keyed_import(
    agent: PaymentAgent,
    file_name: str,
    content: bytes,
    dry_run: bool,
    caller: Caller,
    idempotency_key: str | None,
) -> Registry:
    if idempotency_key is None:
        return _import(agent, file_name, content, dry_run, caller, None)
    if not 0 < len(idempotency_key) <= 255:
        raise ValidationFailed(
            "An idempotency key has 1 to 255 characters.", idempotency_key=["1 to 255."]
        )
    keyed = (
        caller.ref,
        idempotency_key,
        request_hash(
            {
                "operation": "registry_import",
                "agent": agent.pk,
                "file_name": file_name[:255],
                "sha256": hashlib.sha256(content).hexdigest(),
                "dry_run": dry_run,
            }
        ),
    )
    for _attempt in range(2):
        replayed = _replay(*keyed)
        if replayed is not None:
            return replayed
        try:
            with transaction.atomic():
                registry = _import(agent, file_name, content, dry_run, caller, keyed)
        except IntegrityError as exc:
            diag = getattr(exc.__cause__, "diag", None)
            if getattr(diag, "constraint_name", "") != REGISTRY_KEY_CONSTRAINT:
                raise
            continue  # a concurrent twin committed the key first: replay it (or conflict)
        registry.replayed = False
        return registry
    raise AssertionError("unreachable: the key's registry is committed")  # pragma: no cover


def _replay(caller_ref: str, key: str, hashed: str) -> Registry | None:
    """The registry this key made (``replayed``), None if unseen, or a conflict."""
    registry = (
        Registry.objects.select_related("agent")
        .filter(idempotency_caller=caller_ref, idempotency_key=key)
        .first()
    )
    if registry is None:
        return None
    if registry.request_hash != hashed:
        raise IdempotencyConflict(
            "This idempotency key was already used for a different request.",
            key=key,
            operation="registry_import",
        )
    registry.replayed = True
    return registry


@transaction.atomic
def _import(
    agent: PaymentAgent,
    file_name: str,
    content: bytes,
    dry_run: bool,
    caller: Caller,
    keyed: tuple[str, str, str] | None,
) -> Registry:
    registry, classified = _preview(
        agent, file_name, content, caller, keyed, look_up_claims=dry_run
    )
    if dry_run:
        return registry
    # Inserted by this very transaction: no other one can see, let alone lock, the row
    # yet, so it is not read back (that would read and decompress the whole file again).
    return _apply(registry, classified, caller)
