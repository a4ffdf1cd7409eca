"""Design overview: read models of the ledger (CQRS).

Reports never aggregate the ledger's hot tables on the fly. A projector
(``reports.projections``, a django-q2 task every few seconds) follows new
ledger transactions in commit order and adds their entries into three
projections, in the same database transaction as it moves its marker:

- ``DailyTurnover``: per business day x brand x service x transaction kind x
  currency, what client accounts received (``credit``) and paid (``debit``);
  revenue by brand and service, payments by channel-kind and the turnover
  sheet per brand or service come from it.
- ``AccountMonthTurnover``: per month x account x brand x currency; the
  turnover sheet per account for whole months.
- ``AccountDayTurnover``: per business day x account x brand x currency; the
  edges of a turnover sheet that does not start or end on a month boundary,
  and debt by age (the charges of the days that make up an account's debt).

``ProjectionState`` holds the marker: the PostgreSQL snapshot the last run
read the ledger in. A ledger transaction not visible in that snapshot is new
to the projections, whatever its id and whenever it commits (ids are taken
before commit, so a committed transaction may have a lower id than one already
projected: an id watermark would skip it). Projections are only ever written
by the projector and rebuilt from scratch by ``rebuild_reports``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

from accounts.models import MONEY, Account
from brands.models import Brand, Service

ZERO = Decimal("0.00")


class ProjectionState(models.Model):
    """Where the projector stands: the snapshot it last read the ledger in, and counters."""

    name = models.CharField(max_length=32, primary_key=True)
    snapshot = models.TextField(
        blank=True, help_text="pg_snapshot text of the last run ('' before the first build)."
    )
    transactions = models.BigIntegerField(default=0, help_text="Ledger transactions projected.")
    entries = models.BigIntegerField(default=0, help_text="Ledger entries projected.")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_projected_at = models.DateTimeField(
        null=True, blank=True, help_text="Newest created_at among the entries projected."
    )
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("view_reports", "Can view reports and export them")]

    def __str__(self) -> str:
        return f"{self.name}: {self.entries} entries"


class _Turnover(models.Model):
    """Sums of client-side movements: ``credit`` money in, ``debit`` money out (positive)."""

    currency = models.CharField(max_length=3)
    credit = models.DecimalField(**MONEY, default=ZERO)
    debit = models.DecimalField(**MONEY, default=ZERO)
    entries = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class DailyTurnover(_Turnover):
    """Client accounts' movements per business day, brand, service, kind and currency."""

    day = models.DateField()
    brand = models.ForeignKey(
        Brand, on_delete=models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )
    service = models.ForeignKey(
        Service, on_delete=models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )
    kind = models.CharField(max_length=16)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "brand", "service", "kind", "currency"],
                nulls_distinct=False,
                name="%(app_label)s_%(class)s_one_row_per_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.currency}: +{self.credit} -{self.debit}"


class AccountMonthTurnover(_Turnover):
    """An account's movements per month (first day) and brand of the postings."""

    month = models.DateField()
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    brand = models.ForeignKey(
        Brand, on_delete=models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "month", "brand", "currency"],
                nulls_distinct=False,
                name="%(app_label)s_%(class)s_one_row_per_key",
            )
        ]
        indexes = [models.Index(fields=["month"], name="reports_acc_month_idx")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} account {self.account_id}: +{self.credit} -{self.debit}"


class AccountDayTurnover(_Turnover):
    """An account's movements per business day and brand of the postings."""

    day = models.DateField()
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    brand = models.ForeignKey(
        Brand, on_delete=models.DO_NOTHING, null=True, db_constraint=False, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "brand", "currency"],
                nulls_distinct=False,
                name="%(app_label)s_%(class)s_one_row_per_key",
            )
        ]
        indexes = [models.Index(fields=["day"], name="reports_acc_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} account {self.account_id}: +{self.credit} -{self.debit}"


class SavedReport(models.Model):
    """An ad-hoc report definition kept by its owner and shared with users and groups.

    ``definition`` is validated by ``reports.adhoc.compiler`` before it is saved, and
    again every time it runs (the whitelist may have changed since).
    """

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_reports"
    )
    definition = models.JSONField()
    shared_with_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="reports_shared_with_me"
    )
    shared_with_groups = models.ManyToManyField(
        Group, blank=True, related_name="reports_shared_with_group"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name
