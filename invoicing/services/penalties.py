"""Late-payment penalties: the daily job marks overdue invoices and accrues ``daily rate
x overdue amount`` per invoice per day after the brand's grace days, up to a cap, as
ledger accruals in batches; running twice on a day changes nothing (idempotency key
``penalty:<invoice>:<day>`` and a unique row per invoice and day). ``penalty_policy_set``
sets a brand's policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from brands.models import Brand
from invoicing.exceptions import InvoicingValidationError
from invoicing.models import PenaltyAccrual, PenaltyPolicy
from invoicing.services.inputs import ZERO, _pk, parse_decimal, round_money, today
from invoicing.services.issuing import Failure, post_accruals
from invoicing.services.status import invoices_mark_overdue
from ledger import services as ledger
from ledger.exceptions import DomainError


@dataclass
class PenaltyOutcome:
    overdue_marked: int = 0
    accrued: int = 0
    amount: Decimal = ZERO
    failures: list[Failure] = field(default_factory=list)


def penalties_accrue(*, on: date | None = None, batch_size: int = 1000) -> PenaltyOutcome:
    """The daily job: mark overdue invoices, then accrue one day's penalty on each.

    Per the brand's ``PenaltyPolicy``: from the day after ``due_date +
    grace_days``, ``daily_rate_percent`` of the outstanding amount, rounded
    half-up to the cent, until the penalties on the invoice reach
    ``cap_percent`` of its total. Posted as accruals in batches; running twice
    on a day changes nothing (idempotency key ``penalty:<invoice>:<day>`` and
    a unique row per invoice and day).
    """
    on = on or today()
    outcome = PenaltyOutcome(overdue_marked=invoices_mark_overdue(on=on))
    last_id = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    SELECT i.id, i.account_id, i.brand_id, i.number, i.currency, i.total,
                           i.total - i.paid_amount, p.daily_rate_percent, p.cap_percent,
                           COALESCE((SELECT SUM(a.amount) FROM invoicing_penaltyaccrual a
                                     WHERE a.invoice_id = i.id), 0)
                    FROM invoicing_invoice i
                    JOIN invoicing_penaltypolicy p ON p.brand_id = i.brand_id AND p.is_active
                    WHERE i.status = 'overdue' AND i.total > 0 AND i.id > %s
                      AND i.due_date + p.grace_days < %s
                      AND NOT EXISTS (SELECT 1 FROM invoicing_penaltyaccrual a
                                      WHERE a.invoice_id = i.id AND a.accrued_on = %s)
                    ORDER BY i.id
                    LIMIT %s
                    """,
                    [last_id, on, on, batch_size],
                )
                rows = cursor.fetchall()
            if not rows:
                return outcome
            last_id = rows[-1][0]
            _accrue_penalty_batch(rows, on, outcome)
        if len(rows) < batch_size:
            return outcome


def _accrue_penalty_batch(rows: list[tuple], on: date, outcome: PenaltyOutcome) -> None:
    items, planned = [], []
    for invoice_id, account_id, brand_id, number, currency, total, owed, rate, cap, accrued in rows:
        amount = round_money(owed * rate / 100, currency)
        if cap is not None:
            amount = min(amount, round_money(total * cap / 100, currency) - accrued)
        if amount <= 0:
            continue
        items.append(
            ledger.AccrualItem(
                account_id=account_id,
                amount=amount,
                brand_id=brand_id,
                subject_type="invoice",
                subject_id=str(invoice_id),
                memo=f"Penalty on invoice {number} for {on.isoformat()}",
                metadata={
                    "penalty": True,
                    "invoice_id": invoice_id,
                    "on": on.isoformat(),
                    "base": str(owed),
                    "daily_rate_percent": str(rate),
                },
                idempotency_key=f"penalty:{invoice_id}:{on.isoformat()}",
            )
        )
        planned.append((invoice_id, account_id, brand_id, owed, amount))
    if not items:
        return
    accruals = []
    for (invoice_id, account_id, brand_id, owed, amount), result in zip(
        planned, post_accruals(items), strict=True
    ):
        if isinstance(result, DomainError):
            outcome.failures.append(Failure(account_id, brand_id, result.code, result.message))
            continue
        accruals.append(
            PenaltyAccrual(
                invoice_id=invoice_id,
                accrued_on=on,
                base=owed,
                amount=amount,
                transaction_id=result.pk,
            )
        )
        if not getattr(result, "replayed", False):
            outcome.accrued += 1
            outcome.amount += amount
    PenaltyAccrual.objects.bulk_create(accruals, ignore_conflicts=True)


def penalty_policy_set(
    *,
    brand: Brand | int,
    daily_rate_percent: Any,
    grace_days: int = 0,
    cap_percent: Any = None,
    is_active: bool = True,
) -> PenaltyPolicy:
    rate = parse_decimal(daily_rate_percent, field_name="daily_rate_percent")
    if rate <= 0:
        raise InvoicingValidationError("The daily rate is positive.", field="daily_rate_percent")
    cap = (
        None
        if cap_percent is None
        else parse_decimal(cap_percent, field_name="cap_percent", places=2)
    )
    if grace_days < 0:
        raise InvoicingValidationError("Grace days cannot be negative.", field="grace_days")
    policy, _ = PenaltyPolicy.objects.update_or_create(
        brand_id=_pk(brand),
        defaults={
            "daily_rate_percent": rate,
            "grace_days": grace_days,
            "cap_percent": cap,
            "is_active": is_active,
        },
    )
    return policy
