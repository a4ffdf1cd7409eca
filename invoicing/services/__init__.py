"""Design overview: invoicing.

The services are a package split by concern; everything public is re-exported
here, so callers import ``invoicing.services`` (or ``from invoicing import
services``) and never a module of it:

- ``inputs``: shared helpers (settings, ``today``, the ``INVOICING`` caller,
  ``parse_decimal``, ``round_money``, ``check_day``);
- ``periods``: billing periods, the closed-period guard ``check_days_open`` and
  ``billing_period_ended_get`` (runs and recalculations take ended periods only);
- ``tariffs``, ``subscriptions``, ``meters``: the rating inputs;
- ``numbering``: gap-free invoice numbers;
- ``status``: the invoice status machine, voiding, marking overdue;
- ``issuing``: issuing a batch of drafts (ledger postings, numbers, signals);
- ``allocation``: payments and reversals against open invoices;
- ``runs``: start, plan, chunks, approve, resume, the monthly schedule, previews;
- ``recalculation``: re-rating billed periods, adjustments;
- ``penalties``: the daily late-payment job and the brands' policies.

The service catalogue is ``brands.services`` (``service_create`` and
``service_update`` are re-exported here for older callers); django-q2 runs the
task functions of ``invoicing.tasks``.

**Inputs.** ``Tariff`` versions (per service and plan, effective-dated, never
overlapping: an exclusion constraint), ``Subscription`` (account x service x
plan over inclusive dates, never overlapping per account and service),
``UsageRecord`` and ``MeterReading``. Usage and readings arrive in bulk through
PostgreSQL COPY into a temporary staging table, validated set-based and
inserted with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``
(``invoicing.ingest``); each batch is one transaction. Tariffs and
subscriptions cannot be changed on days of a closed period (``period_closed``),
nor can a service's VAT rate (``brands.signals.service_vat_rate_changing``,
refused in ``invoicing.receivers``): billed prices stay billed. Late usage and
readings are accepted for any period; recalculation bills the difference.

**Rating** (``invoicing.rating``) is one SQL statement over a set of accounts:
subscription x tariff-version segments, usage per segment, meter consumption
(``invoicing.meters``: differences of cumulative readings, rollover,
replacement, estimates) spread by days, charges per kind, rounding half-up
per line, VAT included. The run, previews and recalculation all call it, so
they cannot disagree.

**Runs** (``runs``). ``invoice_run_start`` records an ``InvoiceRun`` and
enqueues a plan task; the plan splits the accounts in scope into
``InvoiceRunChunk`` rows and enqueues one django-q2 task per chunk. A chunk is
processed in one database transaction that first locks its chunk row
(``SKIP LOCKED``; a done chunk is skipped), so a task delivered twice, or
re-delivered after its worker was killed, does the work exactly once; a killed
worker's transaction simply rolls back. Per chunk: rate into a temp table; one
``INSERT ... SELECT`` creates the invoices (``ON CONFLICT DO NOTHING`` on the
partial unique index
``(account, brand, period) WHERE kind = 'invoice' AND status <> 'void'``: an
account is never billed twice, whoever races) and, in the same statement, their
lines. **Drafts of other runs** for the chunk's accounts (and the run's brand) in
the period are replaced first: a draft is a proposal that nothing was posted for,
and the newer run rates with what is known now, so an operator who runs a period
again (drafts waiting for approval, or left by a failed approval) gets it billed,
in the new run's mode; the older run, approved later, issues only what is still
its own. A draft that another transaction holds at that moment (an approval
issuing it, a void) is left to it (``SKIP LOCKED``: waiting there could deadlock
with an approval, which locks the accounts first), and the account is recorded
as a failure with the code ``draft_in_other_run`` naming that run, counted in the
run's ``failed``: a skipped account is always visible on the run.

In draft mode the chunk stops there (``draft_ready`` once all chunks
are done; ``invoice_run_approve`` issues them in chunks, each locking its
accounts before its drafts: accounts first, invoices second is the order of every
posting, allocation and void, so none of them deadlock). Issuing a batch
(``issuing._issue``) posts every invoice total as a ledger accrual in one call
(``ledger.services.accruals_post_bulk``, subject ``invoice/<id>``, idempotency
key ``invoice:<id>``), takes the balance brought forward from the entries'
``balance_after``, applies any credit balance to the new invoice, allocates
the invoice numbers and sends ``invoice_issued``. A refused account (closed,
not linked to the brand) loses its draft and gets an ``InvoiceRunFailure``; an
unexpected error in the set-based path makes the chunk retry account by
account, recording the ones that fail, so one bad account never stops a run.
Progress counters live on the run and move in the chunk's transaction.

**Invoice numbers** (``numbering``) are ``<prefix>-<year>-<000123>``, gap-free
and ascending per (brand, year), without serialising a run on one counter row:
see ``invoice_numbers_allocate``.

**Status** (``status``) changes follow ``INVOICE_TRANSITIONS``
(``invoice_status_set``); row-by-row paths call it, set-based paths only make
moves the table allows.
**Allocation** (``allocation``): a receiver of
``ledger.signals.transaction_posted`` (inside the posting's transaction,
holding the payer's lock) settles the open invoices of the payer's whole tree
(the payer and every sub-account below it: their invoices are debts of the
payer's balance), oldest first. Money in (payments, transfers in) pays invoices
in full; corrections (credit notes, adjustments up, reversals of charges) pay
them only as far as they owe more than the payer's debt, so an invoice is unpaid
exactly as far as the payer is in debt; a reversal of a credit takes its
allocations back. Debits, accruals, captures and refunds return at once; a
credit to a tree without open invoices costs one query. Penalties take the
payer's debt as a bound too (see ``penalties``).

**Recalculation** (``recalculation``) re-rates a billed (account, brand,
period) with what is known now and compares per service with the original plus
earlier adjustments; any difference becomes an adjustment invoice
(``kind="adjustment"``, ``adjusts`` the original): a debit note is posted as
an accrual, a credit note with ``ledger.services.credit_note_post`` (client +,
the brand's revenue -) and its credit is applied to the original invoice
first. Runs recalculate the billed periods of their accounts whose usage or
readings are new to the last check, by commit order: every usage record and
reading carries its writing transaction (``xact_id``, an ``xid8``), every check
records the oldest transaction still running when it began (``inputs_xmin``), and
a row written by that transaction or a later one is new. A batch that began before
a check and committed after it is so picked up by the next run; comparing the
rows' insert time (transaction start, database clock) with the check's time
(application clock) missed it.

**Penalties** (``penalties``): a daily job marks overdue invoices and accrues
``daily rate x overdue amount`` per invoice per day after the grace days, up
to a cap, as accruals (idempotency key and a unique row per invoice and day).
"""

from brands.services import SERVICE_FIELDS, service_create, service_update
from invoicing.exceptions import (
    InvalidInvoiceTransition,
    InvoicingValidationError,
    PeriodClosed,
    PeriodNotBilled,
    ReadingBackwards,
    RunNotApprovable,
    SubscriptionOverlap,
    TariffOverlap,
)
from invoicing.rating import RatedLine
from invoicing.services.allocation import (
    payment_allocate,
    payment_reversal_unallocate,
    payments_allocate,
    posting_allocate,
    posting_unallocate,
)
from invoicing.services.inputs import (
    CENT,
    FIRST_DAY,
    INVOICING,
    LAST_DAY,
    Q6,
    ZERO,
    check_day,
    parse_decimal,
    payment_terms_days,
    round_money,
    today,
)
from invoicing.services.issuing import ChunkOutcome, Failure, IssueOutcome, post_accruals
from invoicing.services.meters import meter_install, meter_replace
from invoicing.services.numbering import invoice_number_format, invoice_numbers_allocate
from invoicing.services.penalties import PenaltyOutcome, penalties_accrue, penalty_policy_set
from invoicing.services.periods import (
    PERIOD_RE,
    billing_period_close,
    billing_period_ended_get,
    billing_period_for_day,
    billing_period_get,
    check_days_open,
)
from invoicing.services.recalculation import (
    RECALC_LOOKBACK_MONTHS,
    inputs_xmin,
    invoice_recalculate,
)
from invoicing.services.runs import (
    invoice_preview,
    invoice_run_approve,
    invoice_run_chunk_process,
    invoice_run_plan,
    invoice_run_resume,
    invoice_run_start,
    invoice_run_start_scheduled,
)
from invoicing.services.status import (
    INVOICE_TRANSITIONS,
    S,
    check_transition,
    derived_status,
    invoice_status_set,
    invoice_void,
    invoices_mark_overdue,
)
from invoicing.services.subscriptions import (
    subscription_create,
    subscription_end,
    subscriptions_create_bulk,
)
from invoicing.services.tariffs import (
    TariffDraft,
    TierSpec,
    tariff_check,
    tariff_create,
    tariffs_create_bulk,
)
from ledger.exceptions import AccountClosed, CurrencyMismatch, DomainError

__all__ = [
    "CENT",
    "FIRST_DAY",
    "INVOICE_TRANSITIONS",
    "INVOICING",
    "LAST_DAY",
    "PERIOD_RE",
    "Q6",
    "RECALC_LOOKBACK_MONTHS",
    "SERVICE_FIELDS",
    "ZERO",
    "AccountClosed",
    "ChunkOutcome",
    "CurrencyMismatch",
    "DomainError",
    "Failure",
    "InvalidInvoiceTransition",
    "InvoicingValidationError",
    "IssueOutcome",
    "PenaltyOutcome",
    "PeriodClosed",
    "PeriodNotBilled",
    "RatedLine",
    "ReadingBackwards",
    "RunNotApprovable",
    "S",
    "SubscriptionOverlap",
    "TariffDraft",
    "TariffOverlap",
    "TierSpec",
    "billing_period_close",
    "billing_period_ended_get",
    "billing_period_for_day",
    "billing_period_get",
    "check_day",
    "check_days_open",
    "check_transition",
    "derived_status",
    "inputs_xmin",
    "invoice_number_format",
    "invoice_numbers_allocate",
    "invoice_preview",
    "invoice_recalculate",
    "invoice_run_approve",
    "invoice_run_chunk_process",
    "invoice_run_plan",
    "invoice_run_resume",
    "invoice_run_start",
    "invoice_run_start_scheduled",
    "invoice_status_set",
    "invoice_void",
    "invoices_mark_overdue",
    "meter_install",
    "meter_replace",
    "parse_decimal",
    "payment_allocate",
    "payment_reversal_unallocate",
    "payment_terms_days",
    "payments_allocate",
    "penalties_accrue",
    "penalty_policy_set",
    "post_accruals",
    "posting_allocate",
    "posting_unallocate",
    "round_money",
    "service_create",
    "service_update",
    "subscription_create",
    "subscription_end",
    "subscriptions_create_bulk",
    "tariff_check",
    "tariff_create",
    "tariffs_create_bulk",
    "today",
]
