"""Design overview: the double-entry ledger.

A ``Transaction`` is the header of one posting (kind, brand, service, subject,
memo, who and from which request, idempotency key). Its ``Entry`` rows move
money between accounts and always sum to zero. Client accounts are the
operator's liabilities: a payment credits (+) the client and debits (-) a
clearing account; a write-off debits (-) the client and credits (+) revenue.

Entries land on the *balance-bearing* account: a client's root payer account
or a system account. When the posting was made for a sub-account, the entry
also names that sub-account (``subaccount``), so the sub-account's history and
limits see it. Client-account entries carry ``balance_after`` (the payer's
balance right after the entry), which makes history and "balance at a moment"
single index lookups. System-account entries leave it empty: system accounts
are hot and keep no running balance.

Transactions and entries are append-only, enforced by database triggers; a
mistake is undone by a reversal (a mirror transaction, at most one per
original, guaranteed by a unique constraint). Holds reserve funds on the payer
(``Account.held``) until they are captured, voided or expire.
"""

from decimal import Decimal

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.expressions import RawSQL
from django.utils.translation import gettext_lazy as _

from accounts.models import MONEY, Account
from brands.models import Brand, Service
from core.dbfields import TransactionIdField, current_transaction_id

# TRUNCATE skips row triggers and privileges aside from TRUNCATE's own: refuse it outright on
# every money table, whoever asks (the runtime role lacks the privilege anyway).
NO_TRUNCATE = pgtrigger.Trigger(
    name="no_truncate",
    when=pgtrigger.Before,
    operation=pgtrigger.Truncate,
    level=pgtrigger.Statement,
    func="""
    RAISE EXCEPTION 'pgtrigger: Cannot truncate % (a ledger table)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
    """,
)

# Every transaction's entries sum to zero, per currency, checked by the database at each
# INSERT or COPY: the rows one statement writes must sum to zero per transaction and
# currency (entries are never updated nor deleted, so every transaction stays balanced).
# A statement-level trigger over the written rows, written by hand in migration 0009
# (``ledger_entry_balanced``), not a pgtrigger one, since those honour
# ``SET pgtrigger.ignore``, which any role may set.


class TransactionKind(models.TextChoices):
    PAYMENT = "payment", _("Payment")
    DEBIT = "debit", _("Debit (write-off)")
    ACCRUAL = "accrual", _("Accrual (charge)")
    TRANSFER = "transfer", _("Transfer")
    REFUND = "refund", _("Refund")
    HOLD_CAPTURE = "hold_capture", _("Hold capture")
    REVERSAL = "reversal", _("Reversal")
    ADJUSTMENT = "adjustment", _("Adjustment")
    CREDIT_NOTE = "credit_note", _("Credit note (a charge corrected down)")


# Whose namespace a payment's ``external_id`` lives in: the partner's own for a partner's
# postings (``caller`` = ``partner:<id>``), the channel's for staff and the system (all
# staff share one namespace per channel). The unique index over it and ``external_id``
# (migration 0004) and every query that looks a duplicate up use this very text, so that
# PostgreSQL matches the index expression.
PAYER_SCOPE_SQL = (
    "(CASE WHEN left(caller, 8) = 'partner:' THEN caller ELSE 'channel:' || channel END)"
)


def payer_scope(caller_ref: str, channel: str) -> str:
    """``PAYER_SCOPE_SQL`` computed in Python, for a posting not yet written."""
    return caller_ref if caller_ref.startswith("partner:") else f"channel:{channel}"


class Transaction(models.Model):
    """The header of one posting: what happened, for whom, on whose behalf.

    ``account`` is the client account the posting was made for (as the caller
    named it, possibly a sub-account), ``counter_account`` the receiving
    account of a transfer; ``brand``/``service`` and ``(subject_type,
    subject_id)`` link it to the catalogue and to anything outside the
    ledger (``order/81723``, ``invoice/5``). ``caller``, ``created_by`` and
    ``request_id`` say who posted it and from which request. Its ``entries``
    sum to zero. Append-only: a mistake is undone by a reversal, a mirror
    transaction whose ``reversal_of`` points here (at most one).
    """

    kind = models.CharField(max_length=16, choices=TransactionKind.choices)
    # Foreign keys carry no single-column index of Django's making: ``account`` and
    # ``counter_account`` lead the indexes of Meta, and the keys most transactions leave
    # empty (brand, service, hold, created_by) have partial indexes over the rows that
    # name one, so a payment's row is not written into six indexes of NULLs.
    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="transactions",
        db_index=False,
        help_text="The client account the posting was made for (as named by the caller).",
    )
    counter_account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="counter_transactions",
        db_index=False,
        help_text="The receiving client account of a transfer.",
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    brand = models.ForeignKey(
        Brand, on_delete=models.PROTECT, null=True, blank=True, db_index=False
    )
    service = models.ForeignKey(
        Service, on_delete=models.PROTECT, null=True, blank=True, db_index=False
    )
    channel = models.CharField(max_length=16, blank=True)
    subject_type = models.CharField(max_length=50, blank=True)
    subject_id = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    memo = models.CharField(max_length=500, blank=True)
    external_id = models.CharField(max_length=100, blank=True)
    reversal_of = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by"
    )
    hold = models.ForeignKey(
        "Hold",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transactions",
        db_index=False,
    )
    caller = models.CharField(
        max_length=64, help_text="Who posted it: user:<id>, partner:<id>, system:<name>."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    # The database transaction that wrote it, filled by the column default: readers that
    # follow the ledger (the report projections) go by commit order with it, never by id.
    xact_id = TransactionIdField(
        null=True,
        editable=False,
        db_default=current_transaction_id(),
        help_text="The writing database transaction (NULL for rows stored before it was kept).",
    )

    class Meta:
        ordering = ["-id"]
        # What each posting needs from a staff user, in the admin and over the API alike.
        permissions = [
            ("post_adjustment", "Can post manual balance adjustments"),
            ("post_payment", "Can post payments received"),
            ("post_debit", "Can post debits (write-offs)"),
            ("post_accrual", "Can post accruals (charges)"),
            ("post_refund", "Can post refunds"),
            ("post_transfer", "Can post transfers between accounts"),
            ("reverse_transaction", "Can reverse transactions"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="A transaction amount is positive.",
            ),
            # A payment's external id is posted once per payer scope: the database
            # refuses the second (ledger.services turn it into duplicate_payment).
            models.UniqueConstraint(
                RawSQL(PAYER_SCOPE_SQL, ()),
                F("external_id"),
                name="%(app_label)s_%(class)s_payment_external_id_unique",
                condition=Q(kind="payment") & ~Q(external_id=""),
                violation_error_message="This payment (external_id) was already posted.",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "id"], name="ledger_txn_account_idx"),
            models.Index(
                fields=["counter_account", "id"],
                name="ledger_txn_counter_idx",
                condition=Q(counter_account__isnull=False),
            ),
            models.Index(fields=["created_at"], name="ledger_txn_created_idx"),
            models.Index(
                fields=["xact_id"], name="ledger_txn_xact_idx", condition=Q(xact_id__isnull=False)
            ),
            models.Index(
                fields=["subject_type", "subject_id"],
                name="ledger_txn_subject_idx",
                condition=~Q(subject_type=""),
            ),
            *(
                models.Index(
                    fields=[key],
                    name=f"ledger_txn_{key}_idx",
                    condition=Q(**{f"{key}__isnull": False}),
                )
                for key in ("brand", "service", "hold", "created_by")
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete),
            NO_TRUNCATE,
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.amount} {self.currency}"


class Entry(models.Model):
    """One leg of a transaction: ``amount`` (+ credit, - debit) on one account.

    Lands on the balance-bearing account: a client's root payer or a system
    account; ``subaccount`` names the sub-account the posting was made for.
    On a client account ``balance_after`` is the payer's balance right after
    this entry, so history and "balance at a moment" are index lookups; on a
    system account it is empty. Append-only.
    """

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    subaccount = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="subaccount_entries",
        db_index=False,
        help_text="The sub-account this entry was posted for, when the payer is its parent.",
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    balance_after = models.DecimalField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "entries"
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0),
                name="%(app_label)s_%(class)s_amount_not_zero",
                violation_error_message="An entry moves a non-zero amount.",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "id"], name="ledger_entry_account_idx"),
            # A payer's history in time order, covering what statements and "balance at a
            # moment" read: both are index-only range scans / one-row lookups.
            models.Index(
                fields=["account", "created_at", "id"],
                name="ledger_entry_acct_time_cov_idx",
                include=["amount", "balance_after", "transaction"],
                condition=Q(balance_after__isnull=False),
            ),
            models.Index(
                fields=["subaccount", "id"],
                name="ledger_entry_subaccount_idx",
                condition=Q(subaccount__isnull=False),
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete),
            NO_TRUNCATE,
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.amount}"


class Hold(models.Model):
    """A reservation of a payer's funds (two-phase debit): captured, voided or expired.

    While ``active`` its ``amount`` counts in the payer's ``held`` and against
    the write-off limits of the chain on ``reserved_on``; a capture (full or
    partial, once) posts a ``hold_capture`` transaction and releases the rest;
    a void or the expiry sweep (after ``expires_at``) releases it all.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        CAPTURED = "captured", _("Captured")
        VOIDED = "voided", _("Voided")
        EXPIRED = "expired", _("Expired")

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    payer = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="payer_holds",
        help_text="The root payer whose funds are reserved.",
    )
    amount = models.DecimalField(**MONEY)
    captured_amount = models.DecimalField(**MONEY, default=Decimal("0.00"))
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, null=True, blank=True)
    subject_type = models.CharField(max_length=50, blank=True)
    subject_id = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    memo = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField()
    # The business date the reservation counted toward write-off limits.
    reserved_on = models.DateField()
    caller = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("post_hold", "Can place holds (reserve funds)"),
            ("settle_hold", "Can capture and void holds"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0),
                name="%(app_label)s_%(class)s_amount_positive",
                violation_error_message="A hold amount is positive.",
            ),
            models.CheckConstraint(
                condition=Q(captured_amount__gte=0, captured_amount__lte=models.F("amount")),
                name="%(app_label)s_%(class)s_captured_within_amount",
                violation_error_message="A hold cannot capture more than it reserved.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["payer"],
                name="ledger_hold_active_payer_idx",
                condition=Q(status="active"),
            ),
            models.Index(
                fields=["expires_at"],
                name="ledger_hold_active_expiry_idx",
                condition=Q(status="active"),
            ),
            models.Index(fields=["account", "id"], name="ledger_hold_account_idx"),
        ]
        triggers = [NO_TRUNCATE]

    def __str__(self) -> str:
        return f"hold #{self.pk} {self.amount} {self.currency} ({self.status})"

    @property
    def open_amount(self) -> Decimal:
        return self.amount if self.status == self.Status.ACTIVE else Decimal("0.00")


class IdempotencyKey(models.Model):
    """One row per (caller, key): what the first request was and what it produced.

    Written in the same database transaction as the posting it records, so a
    key exists exactly when its effect does. The primary key on (caller, key)
    unique (caller, key) index is what makes concurrent duplicates produce one posting.
    """

    caller = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=32)
    request_hash = models.CharField(max_length=64)
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    hold = models.ForeignKey(
        Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "idempotency key"
        constraints = [
            models.UniqueConstraint(
                fields=["caller", "key"],
                name="%(app_label)s_%(class)s_unique_per_caller",
                violation_error_message="This idempotency key was already used by this caller.",
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete),
            NO_TRUNCATE,
        ]

    def __str__(self) -> str:
        return f"{self.caller}/{self.key}"
