"""Signals of invoicing, sent *inside* the database transaction that issues the invoices.

Receivers (PDF rendering, the email outbox, webhooks) must not do I/O here:
they record what to do, or enqueue it with ``transaction.on_commit``, so a
rolled-back chunk leaves no trace.
"""

from django.dispatch import Signal

# kwargs: invoice (invoicing.models.Invoice, just issued, number set). Sent once per
# invoice; built only when someone listens (a run issues thousands per chunk).
invoice_issued = Signal()
# kwargs: invoice_ids (list[int]), run_id (int or None). Sent once per batch, for bulk work.
invoices_issued = Signal()
