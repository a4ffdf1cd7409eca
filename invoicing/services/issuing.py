"""Issuing a batch of draft invoices (``_issue``): totals posted to the ledger in one bulk
accrual call (credit notes with ``credit_note_post``), the balance brought forward
taken from the entries, credit balances applied, numbers allocated last and the
``invoice_issued`` / ``invoices_issued`` signals sent. A refused account loses its
draft and becomes a ``Failure``; ``IssueOutcome`` and ``ChunkOutcome`` report what a
batch and a run's chunk did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from core.db import bound_cursor
from core.keys import check_keys_now
from invoicing.models import Invoice, InvoiceAllocation
from invoicing.services.allocation import _apply_credit_note
from invoicing.services.inputs import INVOICING, ZERO, payment_terms_days
from invoicing.services.numbering import _numbers_for
from invoicing.services.status import S, check_transition, derived_status
from invoicing.signals import invoice_issued, invoices_issued
from ledger import services as ledger
from ledger.exceptions import DomainError
from ledger.models import Transaction


@dataclass
class Failure:
    account_id: int
    brand_id: int | None
    code: str
    message: str


@dataclass
class IssueOutcome:
    issued: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def _issue(
    invoice_ids: Sequence[int],
    *,
    run_id: int | None = None,
    drafts: Sequence[tuple] | None = None,
) -> IssueOutcome:
    """Issue draft invoices (all locked by or created in the caller's transaction).

    Posts the totals (accruals; credit notes credit the client), takes the
    balance brought forward from the ledger entries, applies credit balances,
    allocates numbers (last: see ``invoice_numbers_allocate``), sends the signals.
    ``drafts``: the drafts' rows as the query below reads them, in id order, from a
    caller that has just inserted them (a run's chunk), so they need not be read back.
    """
    outcome = IssueOutcome()
    if not invoice_ids:
        return outcome
    if drafts is not None:
        rows = list(drafts)
    else:
        with bound_cursor() as cursor:
            cursor.execute(
                """
                SELECT i.id, i.account_id, i.brand_id, i.total, i.currency, p.code, i.kind,
                       i.adjusts_id
                FROM invoicing_invoice i JOIN invoicing_billingperiod p ON p.id = i.period_id
                WHERE i.id = ANY(%s::bigint[]) AND i.status = 'draft'
                ORDER BY i.id
                """,
                [list(invoice_ids)],
            )
            rows = cursor.fetchall()
    if not rows:
        return outcome
    debit_rows = [row for row in rows if row[3] > 0]
    credit_rows = [row for row in rows if row[3] < 0]
    posted: dict[int, int] = {}  # invoice id -> ledger transaction id
    # ledger transaction id -> the payer's balance after it, from the postings in memory
    balance_after: dict[int, Decimal] = {}
    refused: list[tuple[int, int, int, DomainError]] = []
    items = [
        ledger.AccrualItem(
            account_id=account_id,
            amount=total,
            brand_id=brand_id,
            subject_type="invoice",
            subject_id=str(invoice_id),
            memo=("Invoice" if kind == Invoice.Kind.INVOICE else "Debit note") + f" for {period}",
            metadata={"invoice_id": invoice_id, "period": period, "invoice_kind": kind},
            idempotency_key=f"invoice:{invoice_id}",
        )
        for invoice_id, account_id, brand_id, total, _currency, period, kind, _adj in debit_rows
    ]
    for row, result in zip(debit_rows, post_accruals(items), strict=True):
        if isinstance(result, DomainError):
            refused.append((row[0], row[1], row[2], result))
        else:
            posted[row[0]] = result.pk
            _note_balance_after(balance_after, result)
    for invoice_id, account_id, brand_id, total, _currency, period, _kind, _adj in credit_rows:
        try:
            txn = ledger.credit_note_post(
                account=account_id,
                amount=-total,
                brand=brand_id,
                subject_type="invoice",
                subject_id=str(invoice_id),
                memo=f"Credit note for {period}",
                metadata={"invoice_id": invoice_id, "period": period, "invoice_kind": "adjustment"},
                caller=INVOICING,
                idempotency_key=f"invoice:{invoice_id}",
            )
        except DomainError as exc:
            refused.append((invoice_id, account_id, brand_id, exc))
        else:
            posted[invoice_id] = txn.pk
            _note_balance_after(balance_after, txn)
    if refused:
        _delete_drafts([invoice_id for invoice_id, *_ in refused])
        outcome.failures.extend(
            Failure(account_id, brand_id, exc.code, exc.message)
            for _invoice_id, account_id, brand_id, exc in refused
        )
    if not posted:
        return outcome
    now = timezone.now()
    issue_day = ledger.business_date(now)
    due = issue_day + timedelta(days=payment_terms_days())
    unknown = [txn_id for txn_id in posted.values() if txn_id not in balance_after]
    if unknown:  # replayed postings (read from the database), or not one payer leg
        with bound_cursor() as cursor:
            cursor.execute(
                """
                SELECT transaction_id, balance_after FROM ledger_entry
                WHERE transaction_id = ANY(%s::bigint[]) AND balance_after IS NOT NULL
                """,
                [unknown],
            )
            balance_after.update(cursor.fetchall())
    by_id = {row[0]: row for row in rows}
    ids, bbf, paid, status, txn_ids = [], [], [], [], []
    allocations: list[InvoiceAllocation] = []
    for invoice_id, txn_id in sorted(posted.items()):
        total = by_id[invoice_id][3]
        brought_forward = balance_after[txn_id] + total
        credit = min(max(brought_forward, ZERO), total) if total > 0 else ZERO
        if credit > 0:
            allocations.append(
                InvoiceAllocation(
                    invoice_id=invoice_id,
                    source=InvoiceAllocation.Source.CREDIT_BALANCE,
                    amount=credit,
                )
            )
        ids.append(invoice_id)
        bbf.append(brought_forward)
        paid.append(credit)
        # draft -> issued, then issued -> paid / partly_paid when a credit covered it.
        new_status = derived_status(total, credit, due, issue_day)
        check_transition(S.ISSUED, new_status)
        status.append(new_status)
        txn_ids.append(txn_id)
    _check_written_rows()
    numbers = _numbers_for(ids, {row[0]: row[2] for row in rows}, issue_day.year)
    with bound_cursor() as cursor:
        cursor.execute(
            """
            UPDATE invoicing_invoice i
            SET number = v.number, status = v.status, balance_brought_forward = v.bbf,
                paid_amount = v.paid, ledger_transaction_id = v.txn, issued_at = %s,
                due_date = %s
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::numeric[], %s::numeric[],
                        %s::bigint[]) AS v(id, number, status, bbf, paid, txn)
            WHERE i.id = v.id
            """,
            [now, due, ids, [numbers[i] for i in ids], status, bbf, paid, txn_ids],
        )
    if allocations:
        InvoiceAllocation.objects.bulk_create(allocations)
    for invoice_id, *_rest in credit_rows:
        if invoice_id in posted:
            _apply_credit_note(invoice_id, posted[invoice_id])
    outcome.issued = ids
    _send_issued(ids, run_id)
    return outcome


# Tables whose rows issuing has written (or a run's chunk, before it) by the time it takes
# the numbers. Not the invoices: the issuing update re-checks their keys anyway (a row
# inserted by the same transaction), and the insert's checks of a row updated since are
# skipped at the commit, so checking them early would check them twice.
_WRITTEN_BEFORE_NUMBERS = (
    "invoicing_invoiceline",
    "ledger_transaction",
    "ledger_entry",
    "ledger_idempotencykey",
)


def _check_written_rows() -> None:
    """Run the deferred foreign-key checks of the rows written so far now, before the
    numbers: at the commit they run while this transaction holds the brand's number
    counter, which every other chunk of a run waits for (``invoice_numbers_allocate``).
    For a 1,000-account chunk some 25,000 checks (lines, ledger rows) leave that wait."""
    check_keys_now(_WRITTEN_BEFORE_NUMBERS)


def _note_balance_after(balance_after: dict[int, Decimal], txn: Transaction) -> None:
    value = ledger.posted_balance_after(txn)
    if value is not None:
        balance_after[txn.pk] = value


def post_accruals(items: list[ledger.AccrualItem]) -> list[Transaction | DomainError]:
    """Post invoice totals: the ledger's set-based bulk accrual (one call per chunk)."""
    return ledger.accruals_post_bulk(items=items, caller=INVOICING)


def _delete_drafts(invoice_ids: Sequence[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM invoicing_invoiceline WHERE invoice_id = ANY(%s)", [invoice_ids]
        )
        cursor.execute(
            "DELETE FROM invoicing_invoice WHERE id = ANY(%s) AND status = 'draft'", [invoice_ids]
        )


def _send_issued(ids: list[int], run_id: int | None) -> None:
    if invoice_issued.has_listeners(Invoice):
        for invoice in Invoice.objects.filter(pk__in=ids).order_by("pk"):
            invoice_issued.send(sender=Invoice, invoice=invoice)
    invoices_issued.send(sender=Invoice, invoice_ids=ids, run_id=run_id)


@dataclass
class ChunkOutcome:
    invoices: int = 0
    adjustments: int = 0
    failures: list[Failure] = field(default_factory=list)

    def merge(self, other: ChunkOutcome) -> None:
        self.invoices += other.invoices
        self.adjustments += other.adjustments
        self.failures.extend(other.failures)
