"""Invoice documents: the PDF, cached in storage, and the email that takes it to the client.

**When an invoice is issued** (``invoices_issued``, sent inside the issuing
transaction, once per batch), ``on_invoices_issued`` writes one outbox email
per invoice whose client has an address, in that same transaction
(``invoice_emails_enqueue``: one query and one insert per batch), and on
commit queues q2 tasks over chunks of the batch (``invoice_documents_deliver``):
each renders the chunk's PDFs, stores them and then queues the sending of the
chunk's emails, so an email normally finds its PDF ready (the outbox sweep
leaves new invoice emails to these tasks for ``INVOICING_EMAIL_FALLBACK_DELAY``
seconds). With ``INVOICING_PDF_ON_ISSUE`` off, no PDFs are rendered in bulk:
the emails are queued at once and render their PDFs themselves. A rolled-back
batch leaves neither emails nor tasks behind.

**The PDF** of an issued invoice is the document as issued (amounts, amount
due and QR at issue) and never changes, so it is rendered once and its
storage path recorded in ``Invoice.pdf`` (default storage, under
``MEDIA_ROOT``). Rendering is idempotent and race-safe: a renderer claims the
invoices that have no file yet under row locks (taken in id order) and only
then writes their files, under their final names, and records them; a
concurrent renderer of the same invoices waits, finds them stored and writes
nothing. ``invoice_pdf`` serves the stored file, or
renders (and stores) it on demand, e.g. for the API, the admin, or an email
whose chunk task was lost. Drafts and void invoices are rendered on every
request, marked as such and without a payment QR, and never stored.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from core.db import bound_cursor
from invoicing.models import Invoice
from invoicing.pdf import (
    DocumentLine,
    InvoiceDocument,
    Payee,
    Payer,
    format_date,
    format_money,
    render_invoice_pdf,
)
from notifications import attachments
from notifications.services import OutgoingEmail, emails_enqueue, pending_email_ids

logger = logging.getLogger(__name__)

S = Invoice.Status
STORED_STATUSES = (S.ISSUED, S.PARTLY_PAID, S.PAID, S.OVERDUE)
STATUS_NOTES = {S.DRAFT: "проект", S.VOID: "аннулирован"}
PDF_MIMETYPE = "application/pdf"


def _setting(name: str, default):
    return getattr(settings, name, default)


def pdf_chunk_size() -> int:
    """Invoices per bulk-render task."""
    return int(_setting("INVOICING_PDF_CHUNK_SIZE", 100))


def email_fallback_delay() -> timedelta:
    """How long the outbox sweep leaves a new invoice email to its chunk task."""
    return timedelta(seconds=int(_setting("INVOICING_EMAIL_FALLBACK_DELAY", 900)))


# --------------------------------------------------------------------------- loading

_INVOICE_FIELDS = (
    "pk",
    "number",
    "status",
    "issued_at",
    "due_date",
    "currency",
    "subtotal",
    "vat",
    "total",
    "balance_brought_forward",
    "period__code",
    "period__starts_on",
    "period__ends_on",
    "account__number",
    "account__client__kind",
    "account__client__name",
    "account__client__legal_name",
    "account__client__tax_id",
    "account__client__address",
    "brand__legal_name",
    "brand__tax_id",
    "brand__kpp",
    "brand__address",
    "brand__bank_name",
    "brand__bank_bik",
    "brand__bank_account",
    "brand__bank_correspondent_account",
    "adjusts__number",
)
# The invoices' lines, each invoice's by its own index (a lateral subquery behind OFFSET 0,
# which the planner cannot flatten): ``invoice_id IN (...)`` of a 100-invoice PDF task,
# planned without statistics on the lines (a month-end's), read all of them, 4,500,000
# at 1,500,000 accounts, in 1.0-1.25 s a task.
_LINES_SQL = """
SELECT l.invoice_id, l.description, s.name, s.unit, l.starts_on, l.ends_on, l.quantity,
       l.unit_price, l.amount, l.vat_rate, l.vat, l.estimated
FROM unnest(%s::bigint[]) AS i(id)
CROSS JOIN LATERAL (
    SELECT * FROM invoicing_invoiceline l WHERE l.invoice_id = i.id OFFSET 0
) l
JOIN brands_service s ON s.id = l.service_id
ORDER BY l.invoice_id, l.position, l.id
"""


def _local_day(moment: datetime | None) -> date:
    return timezone.localdate(moment) if moment else timezone.localdate()


def invoice_documents(invoice_ids: Sequence[int]) -> dict[int, InvoiceDocument]:
    """What the PDFs of these invoices show, in two queries (invoices, lines)."""
    lines: dict[int, list[DocumentLine]] = defaultdict(list)
    periods: dict[int, tuple[date, date]] = {}
    rows = list(Invoice.objects.filter(pk__in=invoice_ids).values_list(*_INVOICE_FIELDS))
    for row in rows:
        periods[row[0]] = (row[11], row[12])
    with bound_cursor() as cursor:
        cursor.execute(_LINES_SQL, [sorted(periods)])
        line_rows = cursor.fetchall()
    for (
        invoice_id,
        description,
        service_name,
        unit,
        starts_on,
        ends_on,
        quantity,
        unit_price,
        amount,
        vat_rate,
        vat,
        estimated,
    ) in line_rows:
        text = description or service_name
        if starts_on and ends_on and (starts_on, ends_on) != periods[invoice_id]:
            text = f"{text}, {format_date(starts_on)}–{format_date(ends_on)}"
        lines[invoice_id].append(
            DocumentLine(
                description=text,
                quantity=quantity,
                unit=unit,
                unit_price=unit_price,
                amount=amount,
                vat_rate=vat_rate,
                vat=vat,
                estimated=estimated,
            )
        )
    documents = {}
    for (
        pk,
        number,
        status,
        issued_at,
        due_date,
        currency,
        subtotal,
        vat,
        total,
        brought_forward,
        period_code,
        period_starts_on,
        period_ends_on,
        account_number,
        client_kind,
        client_name,
        client_legal_name,
        client_inn,
        client_address,
        *brand,
        adjusts_number,
    ) in rows:
        legal_name, inn, kpp, address, bank_name, bik, account, correspondent = brand
        payer_name = (client_legal_name if client_kind == "legal_entity" else "") or client_name
        documents[pk] = InvoiceDocument(
            number=number or f"б/н ({pk})",
            issued_on=_local_day(issued_at),
            due_date=due_date,
            period_code=period_code,
            period_starts_on=period_starts_on,
            period_ends_on=period_ends_on,
            currency=currency,
            account_number=account_number,
            payee=Payee(
                legal_name=legal_name,
                inn=inn,
                kpp=kpp,
                address=address,
                bank_name=bank_name,
                bik=bik,
                settlement_account=account,
                correspondent_account=correspondent,
            ),
            payer=Payer(name=payer_name, inn=client_inn, address=client_address),
            subtotal=subtotal,
            vat=vat,
            total=total,
            balance_brought_forward=brought_forward,
            lines=tuple(lines[pk]),
            adjusts_number=adjusts_number,
            status_note=STATUS_NOTES.get(status, ""),
        )
    return documents


# --------------------------------------------------------------------------- storage


def invoice_pdf_filename(number: str | None, pk: int) -> str:
    return f"{number or f'invoice-{pk}'}.pdf"


def _storage_name(number: str, issued_at: datetime | None) -> str:
    day = _local_day(issued_at)
    return f"invoices/{day.year:04d}/{day.month:02d}/{number}.pdf"


def _write(name: str, content: bytes) -> str:
    """Write ``content`` at exactly ``name``, replacing a file a failed writer left there.

    Only the holder of the invoice's row lock calls this, so no other worker
    writes the same name meanwhile; the storage would otherwise pick a
    suffixed name (``N_<random>.pdf``) beside the existing one.
    """
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(content))


def _store(rendered: dict[int, tuple[str, bytes]]) -> set[int]:
    """Save rendered PDFs (invoice id -> (number, bytes)) and record them; return ids recorded.

    Claim before writing: one transaction locks the invoices that still have
    no file (in id order, as every multi-invoice writer does), writes only
    those files under their final names and records the paths. A concurrent
    renderer of the same invoices waits on the locks and then finds them
    stored, so it writes nothing; readers see a path only once its file is
    complete. A rolled-back claim leaves at most a file that no invoice
    points at, which the next claim overwrites.
    """
    if not rendered:
        return set()
    ids = sorted(rendered)
    with transaction.atomic():
        claimed = list(
            Invoice.objects.filter(pk__in=ids, pdf="")
            .order_by("pk")
            .select_for_update(of=("self",))
            .values_list("pk", "issued_at")
        )
        paths = {
            pk: _write(_storage_name(rendered[pk][0], issued_at), rendered[pk][1])
            for pk, issued_at in claimed
        }
        if paths:
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE invoicing_invoice i SET pdf = v.name
                    FROM unnest(%s::bigint[], %s::text[]) AS v(id, name)
                    WHERE i.id = v.id
                    """,
                    [list(paths), list(paths.values())],
                )
    return set(paths)


def invoice_pdf(*, invoice: Invoice | int) -> bytes:
    """The invoice's PDF: the stored file, else rendered now (and stored once issued)."""
    pk = invoice if isinstance(invoice, int) else invoice.pk
    status, stored = Invoice.objects.values_list("status", "pdf").get(pk=pk)
    if stored and status in STORED_STATUSES:  # a voided invoice is rendered marked void
        try:
            with default_storage.open(stored, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            logger.warning("invoice %s: stored PDF %s is missing; rendering again", pk, stored)
            Invoice.objects.filter(pk=pk, pdf=stored).update(pdf="")
    document = invoice_documents([pk])[pk]
    content = render_invoice_pdf(document)
    if status in STORED_STATUSES:
        _store({pk: (document.number, content)})
    return content


def invoice_pdfs_render(*, invoice_ids: Sequence[int]) -> int:
    """Render and store the PDFs of these invoices that are issued and not stored yet.

    Returns how many this call stored (a re-delivered task finds them done).
    """
    todo = list(
        Invoice.objects.filter(pk__in=list(invoice_ids), pdf="", status__in=STORED_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not todo:
        return 0
    documents = invoice_documents(todo)
    rendered = {pk: (doc.number, render_invoice_pdf(doc)) for pk, doc in documents.items()}
    return len(_store(rendered))


@attachments.register("invoice_pdf")
def invoice_pdf_attachment(ref: str) -> attachments.Attachment:
    pk = int(ref)
    number = Invoice.objects.values_list("number", flat=True).get(pk=pk)
    return attachments.Attachment(
        filename=invoice_pdf_filename(number, pk),
        content=invoice_pdf(invoice=pk),
        mimetype=PDF_MIMETYPE,
    )


# --------------------------------------------------------------------------- email


def invoice_email_key(invoice_id: int) -> str:
    return f"invoice_issued:{invoice_id}"


@dataclass(frozen=True)
class _EmailFacts:
    pk: int
    number: str
    kind: str
    total: Decimal
    balance_brought_forward: Decimal | None
    currency: str
    due_date: date | None
    period: str
    account: str
    client: str
    email: str
    brand: str
    adjusts: str | None


def _email_text(facts: _EmailFacts) -> tuple[str, str]:
    if facts.kind == Invoice.Kind.ADJUSTMENT:
        what = "Корректировочный счёт" if facts.total > 0 else "Кредит-нота"
        title = f"{what} № {facts.number} к счёту № {facts.adjusts}"
    else:
        title = f"Счёт № {facts.number}"
    brought_forward = facts.balance_brought_forward or Decimal("0.00")
    due = max(facts.total - brought_forward, Decimal("0.00"))
    subject = f"{title} за {facts.period} — {facts.brand}"
    body = "\n".join(
        [
            f"Здравствуйте, {facts.client}!",
            "",
            f"{facts.brand}: {title} за период {facts.period} по лицевому счёту {facts.account}.",
            f"Сумма по счёту: {format_money(facts.total)} {facts.currency}.",
            f"К оплате с учётом баланса: {format_money(due)} {facts.currency}"
            + (f", до {format_date(facts.due_date)}." if due > 0 and facts.due_date else "."),
            "",
            "Документ во вложении. Оплатить можно по QR-коду в приложении банка.",
        ]
    )
    return subject, body


# ``_EmailFacts`` of issued invoices whose client has an address, in id order.
_EMAIL_FACTS_SQL = """
SELECT i.id, i.number, i.kind, i.total, i.balance_brought_forward, i.currency, i.due_date,
       p.code, a.number, c.name, c.email, b.name, adj.number
FROM invoicing_invoice i
JOIN invoicing_billingperiod p ON p.id = i.period_id
JOIN accounts_account a ON a.id = i.account_id
JOIN accounts_client c ON c.id = a.client_id
JOIN brands_brand b ON b.id = i.brand_id
LEFT JOIN invoicing_invoice adj ON adj.id = i.adjusts_id
WHERE i.id = ANY(%s::bigint[]) AND i.status = ANY(%s::text[]) AND c.email <> ''
ORDER BY i.id
"""


def invoice_emails_enqueue(*, invoice_ids: Sequence[int], send: bool = False) -> list[int]:
    """Write one outbox email per issued invoice whose client has an address (in the
    caller's transaction); return the new message ids. Already enqueued invoices are skipped.
    """
    with bound_cursor() as cursor:  # a run's chunk: one array, not a thousand literals
        cursor.execute(_EMAIL_FACTS_SQL, [list(invoice_ids), list(STORED_STATUSES)])
        rows = cursor.fetchall()
    messages = []
    for row in rows:
        facts = _EmailFacts(*row)
        subject, body = _email_text(facts)
        messages.append(
            OutgoingEmail(
                key=invoice_email_key(facts.pk),
                to=facts.email,
                subject=subject,
                body=body,
                subject_type="invoice",
                subject_id=str(facts.pk),
                attachments=[{"kind": "invoice_pdf", "ref": str(facts.pk)}],
            )
        )
    return emails_enqueue(messages, send=send, not_before=timezone.now() + email_fallback_delay())


def invoice_emails_send(*, invoice_ids: Sequence[int]) -> int:
    """Queue the sending of these invoices' pending emails (after their PDFs are stored)."""
    from notifications.tasks import enqueue_send

    ids = pending_email_ids([invoice_email_key(pk) for pk in invoice_ids])
    if ids:
        enqueue_send(ids)
    return len(ids)


# --------------------------------------------------------------------------- delivery


def invoice_documents_deliver(*, invoice_ids: Sequence[int]) -> int:
    """Render and store these invoices' PDFs, then queue their emails. Returns PDFs stored."""
    stored = invoice_pdfs_render(invoice_ids=invoice_ids)
    invoice_emails_send(invoice_ids=invoice_ids)
    return stored


def _enqueue_delivery(invoice_ids: list[int], group: str) -> None:
    from django_q.tasks import async_task

    sync = bool(settings.Q_CLUSTER.get("sync", False))
    size = pdf_chunk_size()
    # A run chunk's ten tasks in one transaction of the ORM broker: one commit, not ten
    # (run synchronously, each task is its own work, with its own transactions).
    with contextlib.nullcontext() if sync else transaction.atomic():
        for start in range(0, len(invoice_ids), size):
            chunk = invoice_ids[start : start + size]
            async_task("invoicing.tasks.invoice_documents_deliver", chunk, group=group, sync=sync)


def on_invoices_issued(sender, invoice_ids: list[int], run_id: int | None = None, **kwargs) -> None:
    """Receiver of ``invoices_issued`` (inside the issuing transaction)."""
    if not invoice_ids:
        return
    if not _setting("INVOICING_PDF_ON_ISSUE", True):
        # No bulk rendering: the emails go at once and render their PDFs themselves.
        invoice_emails_enqueue(invoice_ids=invoice_ids, send=True)
        return
    invoice_emails_enqueue(invoice_ids=invoice_ids)
    ids = sorted(invoice_ids)
    group = f"run-{run_id}-documents" if run_id else "invoice-documents"
    transaction.on_commit(lambda: _enqueue_delivery(ids, group))
