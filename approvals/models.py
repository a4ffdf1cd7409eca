"""Maker-checker requests: a dangerous move that waits for a second person.

Design overview
---------------
Some moves are too dangerous for one person alone: a manual adjustment of a
balance, a large refund, a large credit limit, a brand's bank details (they
are printed in every invoice's payment QR). Where staff (or a partner) make
such a move, the app that owns it files an ``ApprovalRequest`` instead of
carrying it out: its ``kind`` (``"ledger.refund"``), the validated arguments
of the service call as JSON (``payload``; amounts as strings), a ``summary``
for people, the object it is about (``target``: the account, the brand) and
who asked (``maker``, ``maker_ref``: ``user:<id>`` or ``partner:<id>``).

Another user with ``approvals.approve_request`` approves or rejects it (with a
reason). Nobody decides their own request: the services refuse it
(``self_approval``) and a check constraint makes the database refuse it too.
Approving runs the move through the owning app's real service, in the
approving database transaction, under a row lock on the request, so
concurrent approvals execute it once; the created or changed object is linked
as ``result``. When the domain refuses the move at that moment (insufficient
funds, a closed account...), the request is marked ``failed`` with the
refusal's code and nothing moves. A request not decided by ``expires_at``
expires (``approvals_expire_due``, a q2 schedule) and can no longer be
approved.

This app sits low in the dependency graph (beside ``access``): it imports no
domain app. The apps that own the moves register a handler per kind
(``approvals.registry.register``) in their ``AppConfig.ready``.

Status moves: ``pending`` -> ``approved`` | ``rejected`` | ``failed`` |
``expired``; the four decided states are final.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ApprovalRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        APPROVED = "approved", _("Approved (executed)")
        REJECTED = "rejected", _("Rejected")
        EXPIRED = "expired", _("Expired")
        FAILED = "failed", _("Failed (refused when approved)")

    kind = models.CharField(
        max_length=64, help_text="What the request would do, e.g. ledger.refund."
    )
    payload = models.JSONField(
        encoder=DjangoJSONEncoder,
        help_text="The validated arguments of the service call (amounts as strings).",
    )
    summary = models.CharField(max_length=500, help_text="What the request does, for people.")
    amount = models.DecimalField(
        max_digits=18,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="The money at stake (refund, adjustment, new credit limit), if any.",
    )
    currency = models.CharField(max_length=3, blank=True)
    target_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    target_id = models.PositiveBigIntegerField(null=True, blank=True)
    target = GenericForeignKey("target_type", "target_id")

    maker = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The user who asked (none for a partner's API key).",
    )
    maker_ref = models.CharField(max_length=64, help_text="Who asked: user:<id> or partner:<id>.")
    maker_request_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="The maker's idempotency key: the same request filed twice is one request.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    checker = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The user who approved or rejected it.",
    )
    checker_ref = models.CharField(max_length=64, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True, help_text="Why it was rejected.")

    result_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    result_id = models.PositiveBigIntegerField(null=True, blank=True)
    result = GenericForeignKey("result_type", "result_id")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("approve_request", "Can approve or reject requests made by others")]
        constraints = [
            models.UniqueConstraint(
                fields=["maker_ref", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_unique_key_per_maker",
                violation_error_message="This idempotency key was already used for a request.",
            ),
            models.CheckConstraint(
                condition=Q(checker_ref="") | ~Q(checker_ref=F("maker_ref")),
                name="%(app_label)s_%(class)s_checker_is_not_maker",
                violation_error_message="Nobody decides their own request.",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")),
                name="%(app_label)s_%(class)s_expires_after_created",
                violation_error_message="A request expires after it is made.",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status="pending", decided_at__isnull=True, checker_ref="")
                    | Q(status="expired", decided_at__isnull=False, checker_ref="")
                    | (
                        Q(decided_at__isnull=False)
                        & ~Q(checker_ref="")
                        & (
                            Q(status="approved", result_id__isnull=False)
                            | (Q(status="rejected") & ~Q(reason=""))
                            | (Q(status="failed") & ~Q(error_code=""))
                        )
                    )
                ),
                name="%(app_label)s_%(class)s_decision_recorded",
                violation_error_message=(
                    "A decided request records when and by whom, and its result, reason or error."
                ),
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="approvals_pending_expiry_idx",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["target_type", "target_id"], name="approvals_target_idx"),
            models.Index(fields=["status", "-id"], name="approvals_status_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING
