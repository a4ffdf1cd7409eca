"""The email outbox: messages written in the transaction of the change they report,
sent afterwards by django-q2 workers, retried with exponential backoff.

A row is the message as composed (recipient, subject, body) plus what to
attach, named by kind and reference (``{"kind": "invoice_pdf", "ref": "123"}``)
and built only when it is sent (see ``notifications.attachments``), so a
large document is never copied into the outbox. ``key`` makes enqueueing
idempotent: one message per event, however often the event is reported.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class EmailMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"

    key = models.CharField(
        max_length=200, unique=True, help_text="One message per key, e.g. invoice_issued:123."
    )
    subject_type = models.CharField(max_length=50, blank=True, help_text="What it is about.")
    subject_id = models.CharField(max_length=64, blank=True)
    to = models.EmailField(max_length=254)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    attachments = models.JSONField(
        default=list, blank=True, help_text='Built when sent: [{"kind": ..., "ref": ...}].'
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts since it was (re)queued; counted when an attempt starts."
    )
    next_attempt_at = models.DateTimeField(
        help_text="When the periodic sweep may try it (first send is queued at once)."
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        verbose_name = "email"
        verbose_name_plural = "email outbox"
        permissions = [("resend_emailmessage", "Can send outbox emails again")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="notifications_email_due_idx",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["subject_type", "subject_id"], name="notifications_email_subj_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="sent", sent_at__isnull=False) | ~Q(status="sent"),
                name="%(app_label)s_%(class)s_sent_has_time",
                violation_error_message="A sent message records when it was sent.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to} ({self.status})"
