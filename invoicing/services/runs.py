"""Invoice runs: ``invoice_run_start`` records a run and enqueues its plan task, the plan
splits the accounts into chunks and enqueues one django-q2 task per chunk (the task
paths are ``invoicing.tasks.*``), each chunk is done exactly once in one transaction
(rate, insert invoices and lines set-based, issue or leave drafts, recalculate changed
periods; one bad account never stops a run), ``invoice_run_approve`` issues a draft
run's invoices, ``invoice_run_resume`` re-enqueues after a crash, and
``invoice_run_start_scheduled`` is the monthly schedule. ``invoice_preview`` rates
without writing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account
from brands.models import Brand
from core.db import bound_cursor
from invoicing.exceptions import InvoicingValidationError, RunNotApprovable
from invoicing.models import BillingPeriod, Invoice, InvoiceRun, InvoiceRunChunk, InvoiceRunFailure
from invoicing.rating import RATED_TABLE, RatedLine, rate_accounts, rated_lines
from invoicing.services.inputs import _pk, _setting, today
from invoicing.services.issuing import ChunkOutcome, Failure, _issue
from invoicing.services.periods import billing_period_ended_get, billing_period_get
from invoicing.services.recalculation import _recalculate_changed, inputs_xmin
from invoicing.services.status import S
from ledger import services as ledger

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- runs: rating chunk

_INSERT_INVOICES_SQL = f"""
WITH totals AS (
    SELECT account_id, brand_id, currency, SUM(amount) AS total, SUM(vat) AS vat
    FROM {RATED_TABLE}
    GROUP BY account_id, brand_id, currency
    HAVING SUM(amount) > 0
),
inv AS (
    INSERT INTO invoicing_invoice
        (account_id, brand_id, period_id, kind, status, currency, subtotal, vat, total,
         paid_amount, rated_at, inputs_checked_at, inputs_xmin, run_id, pdf)
    SELECT account_id, brand_id, %(period)s, 'invoice', 'draft', currency, total - vat, vat,
           total, 0, %(now)s, %(now)s, %(xmin)s::xid8, %(run)s, ''
    FROM totals
    ORDER BY account_id, brand_id
    ON CONFLICT (account_id, brand_id, period_id)
        WHERE kind = 'invoice' AND status <> 'void' DO NOTHING
    RETURNING id, account_id, brand_id, total, currency
),
lines AS (
    INSERT INTO invoicing_invoiceline
        (invoice_id, position, kind, service_id, subscription_id, tariff_id, description,
         starts_on, ends_on, quantity, unit_price, amount, vat_rate, vat, estimated)
    SELECT inv.id, r.position, r.kind, r.service_id, r.subscription_id, r.tariff_id,
           left(r.description, 300), r.starts_on, r.ends_on, r.quantity, r.unit_price, r.amount,
           r.vat_rate, r.vat, r.estimated
    FROM {RATED_TABLE} r
    JOIN inv ON inv.account_id = r.account_id AND inv.brand_id = r.brand_id
)
SELECT id, (SELECT count(*) FROM totals), account_id, brand_id, total, currency
FROM inv ORDER BY id
"""


# Drafts other runs left for these accounts (and the run's brand) in this period: a draft
# is a proposal nobody posted, and this run rates with what is known now, so it replaces
# them. SKIP LOCKED: a draft another transaction holds (an approval issuing it, a void)
# is left to it; waiting here, before the accounts are locked, could deadlock with an
# approval, which locks accounts first. The account is then reported as skipped.
_REPLACE_DRAFTS_SQL = """
WITH replaced AS (
    SELECT id FROM invoicing_invoice
    WHERE account_id = ANY(%(accounts)s::bigint[]) AND period_id = %(period)s
      AND kind = 'invoice' AND status = 'draft' AND run_id IS DISTINCT FROM %(run)s
      AND (%(brand)s::bigint IS NULL OR brand_id = %(brand)s::bigint)
    ORDER BY id
    FOR UPDATE SKIP LOCKED
),
lines AS (
    DELETE FROM invoicing_invoiceline l USING replaced r WHERE l.invoice_id = r.id
)
DELETE FROM invoicing_invoice i USING replaced r WHERE i.id = r.id
"""

# (account, brand) pairs the rating bills that still have another run's draft after the
# insert: a draft held by another transaction, or inserted by a parallel run meanwhile.
_SKIPPED_SQL = f"""
SELECT t.account_id, t.brand_id, min(i.run_id)
FROM (
    SELECT account_id, brand_id FROM {RATED_TABLE}
    GROUP BY account_id, brand_id HAVING SUM(amount) > 0
) t
JOIN invoicing_invoice i
  ON i.account_id = t.account_id AND i.brand_id = t.brand_id AND i.period_id = %(period)s
 AND i.kind = 'invoice' AND i.status = 'draft' AND i.run_id IS DISTINCT FROM %(run)s
GROUP BY t.account_id, t.brand_id
ORDER BY t.account_id, t.brand_id
"""
_DRAFT_IN_OTHER_RUN = "draft_in_other_run"


def _bill_accounts(run: InvoiceRun, account_ids: Sequence[int]) -> ChunkOutcome:
    """Rate and create (draft or issued) invoices for accounts not yet billed this period.

    Drafts of other runs for these accounts are replaced (``_REPLACE_DRAFTS_SQL``);
    an account whose draft cannot be replaced right now becomes a failure with the
    code ``draft_in_other_run`` naming that run, never a silent gap.
    """
    outcome = ChunkOutcome()
    started = timezone.now()
    params = {"period": run.period_id, "now": started, "run": run.pk, "brand": run.brand_id}
    with bound_cursor() as cursor:
        cursor.execute(_REPLACE_DRAFTS_SQL, {**params, "accounts": list(account_ids)})
    params["xmin"] = inputs_xmin()  # before rating: see recalculation.inputs_xmin
    rate_accounts(account_ids, run.period, run.brand_id)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_INVOICES_SQL, params)
        rows = cursor.fetchall()
        created = [row[0] for row in rows]
        skipped = []
        # Each row names how many invoices the rating called for: when all were inserted,
        # no draft of another run stood in the way, and there is nothing to look for.
        if not rows or rows[0][1] != len(created):
            cursor.execute(_SKIPPED_SQL, params)
            skipped = cursor.fetchall()
    outcome.failures.extend(
        Failure(
            account_id,
            brand_id,
            _DRAFT_IN_OTHER_RUN,
            f"Run #{other_run} has a draft for this account, brand and period that another"
            " transaction is changing (an approval or a void): not billed by this run. Run"
            " the period again once that is done.",
        )
        for account_id, brand_id, other_run in skipped
    )
    if run.mode == InvoiceRun.Mode.DRAFT:
        outcome.invoices = len(created)
        return outcome
    # What issuing reads of its drafts, from the insert: these are drafts of this transaction.
    drafts = [
        (row[0], row[2], row[3], row[4], row[5], run.period.code, Invoice.Kind.INVOICE, None)
        for row in rows
    ]
    issued = _issue(created, run_id=run.pk, drafts=drafts)
    outcome.invoices = len(issued.issued)
    outcome.failures.extend(issued.failures)
    outcome.merge(_recalculate_changed(run, account_ids, before=started))
    return outcome


def _issue_drafts(run: InvoiceRun, account_ids: Sequence[int]) -> ChunkOutcome:
    """Approval: issue the run's drafts of these accounts as they were previewed.

    Locks the accounts (and their payer chains, ``ledger.lock_accounts``) first and
    the drafts second: the order of every posting, allocation and ``invoice_void``.
    Locking the drafts first and the accounts when posting the accruals deadlocked
    against a void that held the account and waited for its draft.
    """
    outcome = ChunkOutcome()
    started = timezone.now()
    ledger.run_locked(lambda: ledger.lock_accounts(account_ids))
    drafts = list(
        Invoice.objects.select_for_update()
        .filter(run=run, account_id__in=account_ids, status=S.DRAFT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    issued = _issue(drafts, run_id=run.pk)
    outcome.invoices = len(issued.issued)
    outcome.failures.extend(issued.failures)
    outcome.merge(_recalculate_changed(run, account_ids, before=started))
    return outcome


# --------------------------------------------------------------------------- runs: orchestration


def _enqueue(func: str, *args: Any, group: str | None = None) -> None:
    from django_q.tasks import async_task

    async_task(func, *args, group=group, sync=bool(settings.Q_CLUSTER.get("sync", False)))


def invoice_run_start(
    *,
    period: str | BillingPeriod,
    brand: Brand | int | None = None,
    mode: str = InvoiceRun.Mode.ISSUE,
    chunk_size: int | None = None,
    created_by: Any = None,
) -> InvoiceRun:
    """Record a run and start it in the background (a q2 plan task after commit).

    Only a period that has ended can be run (``billing_period_ended_get``).
    """
    if mode not in InvoiceRun.Mode.values:
        raise InvoicingValidationError(f"Unknown run mode {mode!r}.", field="mode")
    size = int(chunk_size or _setting("INVOICING_CHUNK_SIZE", 1000))
    if size < 1:
        raise InvoicingValidationError("chunk_size must be positive.", field="chunk_size")
    with transaction.atomic():
        period_obj = billing_period_ended_get(period)
        run = InvoiceRun.objects.create(
            period=period_obj,
            brand_id=_pk(brand),
            mode=mode,
            chunk_size=size,
            created_by=created_by if getattr(created_by, "pk", None) else None,
        )
        transaction.on_commit(
            lambda: _enqueue("invoicing.tasks.invoice_run_plan", run.pk, group=f"run-{run.pk}")
        )
    return run


# A run's chunks are cut and written by the server: the accounts (the ``accounts`` query,
# one ``account_id`` column) numbered in order and grouped ``size`` at a time. The process
# that plans a run of 1,500,000 accounts held their ids in Python three times over (the
# rows, the list, the chunks) and sent them back quoted into the INSERT: 336 MB.
_CHUNKS_SQL = """
WITH numbered AS MATERIALIZED (
    SELECT account_id, (row_number() OVER (ORDER BY account_id) - 1) / %(size)s AS index
    FROM ({accounts}) a
),
written AS (
    INSERT INTO invoicing_invoicerunchunk
        (run_id, phase, index, account_ids, status, processed, failed)
    SELECT %(run)s, %(phase)s, index, array_agg(account_id ORDER BY account_id),
           %(pending)s, 0, 0
    FROM numbered GROUP BY index
    RETURNING 1
)
SELECT (SELECT count(*) FROM numbered), (SELECT count(*) FROM written)
"""


def _write_chunks(
    run: InvoiceRun, phase: str, accounts_sql: str, params: dict[str, Any]
) -> tuple[int, int]:
    """Write the run's chunks of ``phase`` for the accounts ``accounts_sql`` selects;
    returns (accounts, chunks)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CHUNKS_SQL.format(accounts=accounts_sql),
            {
                **params,
                "size": run.chunk_size,
                "run": run.pk,
                "phase": phase,
                "pending": InvoiceRunChunk.Status.PENDING,
            },
        )
        total, chunks = cursor.fetchone()
    return total, chunks


def invoice_run_plan(*, run_id: int) -> InvoiceRun:
    """Split the run's accounts into chunks and enqueue one task per chunk."""
    with transaction.atomic(durable=True):
        run = (
            InvoiceRun.objects.select_for_update(of=("self",))
            .select_related("period")
            .get(pk=run_id)
        )
        if run.status != InvoiceRun.Status.PENDING:
            return run
        run.total, run.chunks_total = _write_chunks(
            run,
            InvoiceRun.Phase.RATE,
            """
            SELECT DISTINCT s.account_id FROM invoicing_subscription s
            JOIN brands_service sv ON sv.id = s.service_id
            WHERE s.starts_on <= %(pe)s AND (s.ends_on IS NULL OR s.ends_on >= %(ps)s)
              AND (%(brand)s::bigint IS NULL OR sv.brand_id = %(brand)s::bigint)
            """,
            {"ps": run.period.starts_on, "pe": run.period.ends_on, "brand": run.brand_id},
        )
        run.status = InvoiceRun.Status.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["total", "chunks_total", "status", "started_at"])
        if not run.chunks_total:
            _run_finish(run)
        else:
            _enqueue_chunks(run, InvoiceRun.Phase.RATE)
    return run


def _enqueue_chunks(run: InvoiceRun, phase: str) -> int:
    ids = list(
        InvoiceRunChunk.objects.filter(run=run, phase=phase, status=InvoiceRunChunk.Status.PENDING)
        .order_by("index")
        .values_list("pk", flat=True)
    )

    def enqueue() -> None:
        # Every chunk's task in one transaction of the ORM broker (one commit, not one per
        # chunk); run synchronously, each chunk is done in its own (durable) transaction.
        sync = bool(settings.Q_CLUSTER.get("sync", False))
        with contextlib.nullcontext() if sync else transaction.atomic():
            for chunk_id in ids:
                _enqueue("invoicing.tasks.invoice_run_chunk", chunk_id, group=f"run-{run.pk}")

    transaction.on_commit(enqueue)
    return len(ids)


def invoice_run_chunk_process(*, chunk_id: int) -> InvoiceRunChunk | None:
    """Do one chunk exactly once (see the design overview); returns None when nothing to do."""
    with transaction.atomic(durable=True):
        chunk = (
            # of=self and no default ordering: a join to the run would lock (and so skip
            # on) the run row, which every finishing chunk updates.
            InvoiceRunChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=chunk_id, status=InvoiceRunChunk.Status.PENDING)
            .order_by("pk")
            .first()
        )
        if chunk is None:
            return None
        run = InvoiceRun.objects.select_related("period").get(pk=chunk.run_id)
        if run.status != InvoiceRun.Status.RUNNING or run.phase != chunk.phase:
            return None
        with connection.cursor() as cursor:
            # Short set-based statements: JIT compiling them costs more than running them.
            cursor.execute("SET LOCAL jit = off")
        work = _issue_drafts if chunk.phase == InvoiceRun.Phase.ISSUE else _bill_accounts
        try:
            with transaction.atomic():
                outcome = work(run, chunk.account_ids)
        except Exception:
            logger.exception(
                "invoice run %s chunk %s failed as a set; retrying per account", run.pk, chunk.pk
            )
            outcome = ChunkOutcome()
            for account_id in chunk.account_ids:
                try:
                    with transaction.atomic():
                        outcome.merge(work(run, [account_id]))
                except Exception as exc:  # one account must not stop the run
                    logger.exception("invoice run %s: account %s failed", run.pk, account_id)
                    outcome.failures.append(
                        Failure(
                            account_id,
                            run.brand_id,
                            getattr(exc, "code", "internal_error"),
                            str(exc)[:2000] or exc.__class__.__name__,
                        )
                    )
        InvoiceRunFailure.objects.bulk_create(
            InvoiceRunFailure(
                run=run,
                account_id=f.account_id,
                brand_id=f.brand_id,
                code=f.code,
                message=f.message,
            )
            for f in outcome.failures
        )
        failed = len({f.account_id for f in outcome.failures})
        chunk.status = InvoiceRunChunk.Status.DONE
        chunk.processed = len(chunk.account_ids)
        chunk.failed = failed
        chunk.finished_at = timezone.now()
        chunk.save(update_fields=["status", "processed", "failed", "finished_at"])
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE invoicing_invoicerun
                SET processed = processed + %s, failed = failed + %s, chunks_done = chunks_done + 1,
                    invoices_issued = invoices_issued + %s,
                    adjustments_issued = adjustments_issued + %s
                WHERE id = %s
                RETURNING chunks_done, chunks_total
                """,
                [chunk.processed, failed, outcome.invoices, outcome.adjustments, run.pk],
            )
            done, total = cursor.fetchone()
        if done >= total:
            _run_finish(InvoiceRun.objects.select_related("period").get(pk=run.pk))
    return chunk


def _run_finish(run: InvoiceRun) -> None:
    run.finished_at = timezone.now()
    if run.phase == InvoiceRun.Phase.RATE and run.mode == InvoiceRun.Mode.DRAFT:
        run.status = InvoiceRun.Status.DRAFT_READY
    else:
        run.status = InvoiceRun.Status.COMPLETED
        if run.brand_id is None:
            BillingPeriod.objects.filter(pk=run.period_id, status=BillingPeriod.Status.OPEN).update(
                status=BillingPeriod.Status.CLOSED, closed_at=run.finished_at
            )
    run.save(update_fields=["status", "finished_at"])


def invoice_run_approve(*, run: InvoiceRun | int, approved_by: Any = None) -> InvoiceRun:
    """Issue a ``draft_ready`` run's drafts, in chunks, in the background."""
    with transaction.atomic():
        run_obj = InvoiceRun.objects.select_for_update().get(pk=_pk(run))
        if run_obj.status != InvoiceRun.Status.DRAFT_READY:
            raise RunNotApprovable(run=run_obj.pk, status=run_obj.status)
        run_obj.total, run_obj.chunks_total = _write_chunks(
            run_obj,
            InvoiceRun.Phase.ISSUE,
            "SELECT DISTINCT account_id FROM invoicing_invoice"
            " WHERE run_id = %(run)s AND status = %(draft)s",
            {"draft": S.DRAFT},
        )
        run_obj.phase = InvoiceRun.Phase.ISSUE
        run_obj.status = InvoiceRun.Status.RUNNING
        run_obj.processed = run_obj.failed = 0
        run_obj.chunks_done = 0
        run_obj.approved_at = timezone.now()
        run_obj.approved_by = approved_by if getattr(approved_by, "pk", None) else None
        run_obj.finished_at = None
        run_obj.save()
        if not run_obj.chunks_total:
            _run_finish(run_obj)
        else:
            _enqueue_chunks(run_obj, InvoiceRun.Phase.ISSUE)
    return run_obj


def invoice_run_resume(*, run: InvoiceRun | int) -> int:
    """Re-enqueue what a run still has to do (after a crash); returns how many tasks."""
    with transaction.atomic():
        run_obj = InvoiceRun.objects.select_for_update().get(pk=_pk(run))
        if run_obj.status == InvoiceRun.Status.PENDING:
            pk = run_obj.pk
            transaction.on_commit(
                lambda: _enqueue("invoicing.tasks.invoice_run_plan", pk, group=f"run-{pk}")
            )
            return 1
        if run_obj.status != InvoiceRun.Status.RUNNING:
            return 0
        return _enqueue_chunks(run_obj, run_obj.phase)


def invoice_run_start_scheduled() -> InvoiceRun:
    """The monthly schedule: bill last month in the configured mode (draft by default)."""
    first_of_month = today().replace(day=1)
    last_month = first_of_month - timedelta(days=1)
    return invoice_run_start(
        period=f"{last_month.year:04d}-{last_month.month:02d}",
        mode=_setting("INVOICING_SCHEDULED_RUN_MODE", InvoiceRun.Mode.DRAFT),
    )


def invoice_preview(
    *, account: Account | int, period: str | BillingPeriod, brand: Brand | int | None = None
) -> list[RatedLine]:
    """The lines the account would be billed now for the period (nothing is written)."""
    period_obj = billing_period_get(period) if isinstance(period, str) else period
    with transaction.atomic():
        rate_accounts([_pk(account)], period_obj, _pk(brand))
        lines = rated_lines()
        transaction.set_rollback(True)
    return lines
