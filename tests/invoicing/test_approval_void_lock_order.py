"""Run approval and invoice void in parallel on one account: no deadlock.

Voiding locks the account, then the invoice (the order postings and allocation use).
Approval must take its locks in the same order: when it locked the drafts first and the
accounts later (posting the accruals), a void that held the account and waited for the
draft closed a cycle, and PostgreSQL killed one of them with ``deadlock detected``.
"""

import threading
from decimal import Decimal

import pytest

from invoicing import services
from invoicing.models import Invoice, InvoiceRun, InvoiceRunChunk
from invoicing.services import issuing
from tests.invoicing.locking import backend_pid, wait_until_blocked
from tests.ledger.concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def test_invoice_run_approve_and_invoice_void_do_not_deadlock(
    account, service, subscribe, bill, monkeypatch
):
    subscribe(account, service, "flat", price=Decimal("300.00"))
    run = bill("2026-01", mode="draft")
    assert run.status == InvoiceRun.Status.DRAFT_READY
    draft = Invoice.objects.get(run=run)
    services.invoice_run_approve(run=run)
    chunk = InvoiceRunChunk.objects.get(run=run, phase=InvoiceRun.Phase.ISSUE)

    void_pid: list[int] = []
    approval_holds_locks = threading.Event()
    errors: list[BaseException] = []
    void_blocked: list[bool] = []
    real_post_accruals = issuing.post_accruals

    def post_accruals_after_void_blocks(items):
        # Approval has locked what it locks before posting; let the void run into it.
        if not approval_holds_locks.is_set():
            approval_holds_locks.set()
            void_blocked.append(wait_until_blocked(void_pid[0] if void_pid else None))
        try:
            return real_post_accruals(items)
        except BaseException as exc:
            errors.append(exc)
            raise

    monkeypatch.setattr(issuing, "post_accruals", post_accruals_after_void_blocks)

    def approve():
        return services.invoice_run_chunk_process(chunk_id=chunk.pk)

    def void():
        void_pid.append(backend_pid())
        assert approval_holds_locks.wait(30)
        try:
            return services.invoice_void(invoice=draft.pk, reason="entered twice")
        except BaseException as exc:
            errors.append(exc)
            raise

    approved, voided = run_in_threads([approve, void])
    assert void_blocked == [True]  # the two really overlapped
    assert not [e for e in errors if "deadlock" in str(e)], errors
    assert approved.ok, approved.error
    # The void came second: the invoice was issued meanwhile, still unpaid, so voiding it
    # reverses its accrual (a domain refusal would have been acceptable too).
    assert voided.ok or voided.code, voided.error
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.COMPLETED
    draft.refresh_from_db()
    assert draft.status == Invoice.Status.VOID
    account.refresh_from_db()
    assert account.balance == Decimal("0.00")
