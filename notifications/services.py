"""Email outbox services: enqueue in the caller's transaction, send afterwards, retry.

**Enqueue** (``emails_enqueue``) inserts the messages in the caller's
transaction, one statement, ``ON CONFLICT (key) DO NOTHING``: a rolled-back
change leaves no message, and reporting an event twice still makes one. By
default a q2 task to send them is queued on commit; a caller that first has
to prepare the attachments (the invoice PDFs) passes ``send=False`` and calls
``emails_send`` itself later, with the sweep as a safety net (``not_before``).

**Send** (``emails_send``, ``emails_send_due``) claims messages under row
locks that concurrent workers skip, counts the attempt and pushes
``next_attempt_at`` past a lease, then talks to the mail server outside any
transaction, over one connection per batch, and records each outcome: sent,
or the error and a retry after ``base * 2^(attempts-1)`` seconds (capped),
or ``failed`` after the last attempt. A worker that dies mid-send leaves its
claim to lapse; the sweep tries again (at least once, never twice at once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core import mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.db import bound_cursor
from notifications import attachments
from notifications.models import EmailMessage

logger = logging.getLogger(__name__)
Status = EmailMessage.Status


@dataclass(frozen=True)
class OutgoingEmail:
    key: str
    to: str
    subject: str
    body: str
    subject_type: str = ""
    subject_id: str = ""
    attachments: list[dict] = field(default_factory=list)


def backoff_seconds(attempt_number: int) -> int:
    """Seconds to wait after the n-th failed attempt: base * 2^(n-1), capped."""
    base = settings.BILLING_EMAIL_BACKOFF_BASE
    return int(min(base * 2 ** (attempt_number - 1), settings.BILLING_EMAIL_BACKOFF_MAX))


def _lease() -> timedelta:
    return timedelta(seconds=settings.EMAIL_TIMEOUT * 2 + 60)


def emails_enqueue(
    messages: Iterable[OutgoingEmail], *, send: bool = True, not_before: datetime | None = None
) -> list[int]:
    """Write messages to the outbox in the caller's transaction; return the new ids.

    Messages whose key is already in the outbox are skipped. With ``send`` a
    q2 task sends the new ones once the transaction commits; ``not_before``
    is when the periodic sweep may pick them up (default: at once).
    """
    rows = list(messages)
    if not rows:
        return []
    due = not_before or timezone.now()
    with bound_cursor() as cursor:  # a chunk's bodies: bound, not quoted into the SQL
        cursor.execute(
            """
            INSERT INTO notifications_emailmessage
                (key, subject_type, subject_id, "to", subject, body, attachments, status,
                 attempts, next_attempt_at, last_error)
            SELECT m.key, m.subject_type, m.subject_id, m.to, m.subject, m.body,
                   m.attachments, 'pending', 0, %s, ''
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                        %s::jsonb[])
                 AS m(key, subject_type, subject_id, "to", subject, body, attachments)
            ORDER BY m.key
            ON CONFLICT (key) DO NOTHING
            RETURNING id
            """,
            [
                due,
                [m.key for m in rows],
                [m.subject_type for m in rows],
                [m.subject_id for m in rows],
                [m.to for m in rows],
                [m.subject for m in rows],
                [m.body for m in rows],
                [_jsonb(m.attachments) for m in rows],
            ],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    if send and ids:
        from notifications.tasks import enqueue_send

        transaction.on_commit(lambda: enqueue_send(ids))
    return ids


def pending_email_ids(keys: Sequence[str]) -> list[int]:
    """The ids of the pending messages among these keys, in id order.

    One key at a time by its unique index (a lateral subquery behind OFFSET 0, which the
    planner cannot flatten): ``key IN (...) AND status = 'pending'`` for a PDF task's 100
    invoices, planned without statistics after a 1,500,000-invoice month-end, combined
    the keys' bitmap with one of every pending message (0.26 s a task).
    """
    with bound_cursor() as cursor:
        cursor.execute(
            """SELECT m.id FROM unnest(%s::text[]) AS k(key)
               CROSS JOIN LATERAL (
                   SELECT id, status FROM notifications_emailmessage
                   WHERE key = k.key OFFSET 0
               ) m
               WHERE m.status = %s ORDER BY m.id""",
            [list(keys), EmailMessage.Status.PENDING],
        )
        return [row[0] for row in cursor.fetchall()]


def _jsonb(value: list[dict]) -> str:
    return json.dumps(value, ensure_ascii=False)


def _claim(ids: Sequence[int] | None, now: datetime, limit: int) -> list[EmailMessage]:
    """Lock and claim sendable messages (skipping ones another worker holds)."""
    with transaction.atomic():
        query = EmailMessage.objects.select_for_update(skip_locked=True).filter(
            status=Status.PENDING
        )
        if ids is None:
            query = query.filter(next_attempt_at__lte=now).order_by("next_attempt_at", "id")
        else:
            # Named messages go now on their first attempt; retries wait out their backoff.
            query = query.filter(
                Q(attempts=0) | Q(next_attempt_at__lte=now), pk__in=list(ids)
            ).order_by("id")
        claimed = list(query[:limit])
        if claimed:
            EmailMessage.objects.filter(pk__in=[m.pk for m in claimed]).update(
                attempts=F("attempts") + 1,
                last_attempt_at=now,
                next_attempt_at=now + _lease(),
            )
            for message in claimed:
                message.attempts += 1
    return claimed


def _build(message: EmailMessage, connection_: object) -> mail.EmailMessage:
    email = mail.EmailMessage(
        subject=message.subject,
        body=message.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to],
        connection=connection_,
    )
    for spec in message.attachments:
        attachment = attachments.build(spec)
        email.attach(attachment.filename, attachment.content, attachment.mimetype)
    return email


def _send_claimed(claimed: list[EmailMessage], now: datetime) -> int:
    """Send claimed messages over one connection; record every outcome. Returns how many sent."""
    if not claimed:
        return 0
    sent = 0
    backend = mail.get_connection(fail_silently=False)
    try:
        backend.open()
    except Exception as exc:  # the mail server is outside the system: record, retry later
        for message in claimed:
            _record(message, exc, now)
        return 0
    try:
        for message in claimed:
            try:
                delivered = _build(message, backend).send(fail_silently=False)
                if not delivered:
                    raise RuntimeError("The email backend accepted no message.")
            except Exception as exc:
                _record(message, exc, now)
            else:
                _record(message, None, now)
                sent += 1
    finally:
        try:
            backend.close()
        except Exception:  # a failed QUIT changes nothing about what was sent
            logger.warning("closing the email connection failed", exc_info=True)
    return sent


def _record(message: EmailMessage, error: BaseException | None, now: datetime) -> None:
    """Record one attempt's outcome; a retry waits ``backoff_seconds`` from the claim (``now``)."""
    if error is None:
        EmailMessage.objects.filter(pk=message.pk).update(
            status=Status.SENT, sent_at=timezone.now(), last_error=""
        )
        return
    text = f"{error.__class__.__name__}: {error}"[:2000]
    logger.warning("email %s attempt %s failed: %s", message.pk, message.attempts, text)
    if message.attempts >= settings.BILLING_EMAIL_MAX_ATTEMPTS:
        EmailMessage.objects.filter(pk=message.pk).update(status=Status.FAILED, last_error=text)
    else:
        EmailMessage.objects.filter(pk=message.pk).update(
            last_error=text,
            next_attempt_at=now + timedelta(seconds=backoff_seconds(message.attempts)),
        )


def emails_send(*, ids: Sequence[int], now: datetime | None = None) -> int:
    """Send the named messages that are pending (a retry only once its backoff is over)."""
    now = now or timezone.now()
    return _send_claimed(_claim(list(ids), now, limit=len(ids)), now)


def emails_send_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """The sweep: send up to ``limit`` pending messages whose next attempt is due."""
    now = now or timezone.now()
    return _send_claimed(_claim(None, now, limit=limit), now)


@transaction.atomic
def email_resend(*, message: EmailMessage) -> EmailMessage:
    """Queue a message again now, sent or given up, with a fresh count of attempts."""
    from notifications.tasks import enqueue_send

    EmailMessage.objects.filter(pk=message.pk).update(
        status=Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    pk = message.pk
    transaction.on_commit(lambda: enqueue_send([pk]))
    message.refresh_from_db()
    return message
