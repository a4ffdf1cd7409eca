"""Settlements with brands: prepare a month's statement, then pay it out once.

``settlement_prepare(brand, period)`` (the month must have ended) locks the
brand's settlement row for the period (creating it), refuses a paid one, and
(re)builds its items from what no settlement holds yet:

* **invoice payments**: every ``InvoiceAllocation`` to the brand's invoices made
  during the month, of any source but credit notes (a credit note lowers a debt,
  it collects nothing): payments, advances applied when an invoice was issued,
  transfers in (a suspense item assigned), and their reversals (negative);
* **debits**: the brand's own write-offs during the month, ``debit`` and
  ``hold_capture`` transactions, and (negative) the reversals of such
  write-offs;
* the **agents' commission** of each invoice payment that came through a
  registry (directly, or through suspense): the agent's commission on that
  payment, in proportion to the part of it the allocation carries (half up);
* the **operator's commission**: ``SettlementTerms.operator_commission_rate``
  percent of what was collected;
* **payable** = collected - agents' commission - operator's commission.

Every item is unique across settlements (a database constraint), so an amount
is counted in one settlement only, even when months are prepared again or late
allocations arrive: those land in the month they were made.
``settlement_pay`` marks a prepared settlement paid (with the payout reference)
under its row lock; a second payout is ``409 settlement_already_paid``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brands.models import Brand
from core.caller import SYSTEM, Caller
from core.errors import DomainError, ValidationFailed
from invoicing.models import InvoiceAllocation
from ledger.models import Transaction, TransactionKind
from payments.models import (
    AgentPayment,
    Settlement,
    SettlementItem,
    SettlementTerms,
    SuspenseItem,
)

CENT = Decimal("0.01")
ZERO = Decimal("0")
WRITE_OFFS = (TransactionKind.DEBIT, TransactionKind.HOLD_CAPTURE)


class SettlementAlreadyPaid(DomainError):
    code = "settlement_already_paid"
    status = 409
    default_message = "This settlement was paid out already."


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The month ``YYYY-MM`` as moments [start, end), refused unless it has ended."""
    try:
        first = datetime.strptime(period or "", "%Y-%m").date()
    except ValueError:
        raise ValidationFailed("A period is written YYYY-MM.", period=["YYYY-MM."]) from None
    after = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    if after > timezone.localdate():
        raise ValidationFailed(
            f"Period {period} has not ended yet.", period=["Only a month that has ended."]
        )
    start = timezone.make_aware(datetime.combine(first, time.min))
    return start, timezone.make_aware(datetime.combine(after, time.min))


def _registry_commissions(transaction_ids: set[int]) -> dict[int, tuple[Decimal, Decimal]]:
    """``{transaction id: (agent's commission, payment amount)}`` of the payments that came
    through a registry, directly or assigned from suspense."""
    out: dict[int, tuple[Decimal, Decimal]] = {}
    ids = list(transaction_ids)
    for start in range(0, len(ids), 50_000):
        chunk = ids[start : start + 50_000]
        for txn, commission, amount in AgentPayment.objects.filter(
            transaction_id__in=chunk
        ).values_list("transaction_id", "commission", "amount"):
            out[txn] = (commission, amount)
        for txn, commission, amount in SuspenseItem.objects.filter(
            resolution_transaction_id__in=chunk, agent_payment__isnull=False
        ).values_list(
            "resolution_transaction_id", "agent_payment__commission", "agent_payment__amount"
        ):
            out[txn] = (commission, amount)
    return out


def _reversed_originals(reversals: list[Transaction]) -> dict[int, Transaction]:
    originals = Transaction.objects.in_bulk([r.reversal_of_id for r in reversals])
    return originals


def _build_items(
    brand: Brand, currency: str, start: datetime, end: datetime
) -> list[SettlementItem]:
    items: list[SettlementItem] = []
    allocations = list(
        InvoiceAllocation.objects.filter(
            invoice__brand=brand,
            invoice__currency=currency,
            created_at__gte=start,
            created_at__lt=end,
        )
        .exclude(source=InvoiceAllocation.Source.CREDIT_NOTE)
        .exclude(
            pk__in=SettlementItem.objects.filter(allocation__isnull=False).values("allocation")
        )
        .values_list("pk", "transaction_id", "amount", "created_at")
    )
    commissions = _registry_commissions({txn for _, txn, _, _ in allocations if txn})
    for pk, txn, amount, at in allocations:
        share = ZERO
        if txn in commissions and commissions[txn][1]:
            commission, paid = commissions[txn]
            share = _cents(commission * amount / paid)
        items.append(
            SettlementItem(
                kind=SettlementItem.Kind.INVOICE_PAYMENT,
                allocation_id=pk,
                amount=amount,
                agent_commission=share,
                at=at,
            )
        )
    settled = SettlementItem.objects.filter(transaction__isnull=False).values("transaction")
    in_period = Q(created_at__gte=start, created_at__lt=end, currency=currency)
    write_offs = Transaction.objects.filter(in_period, brand=brand, kind__in=WRITE_OFFS).exclude(
        pk__in=settled
    )
    for txn in write_offs.values_list("pk", "amount", "created_at"):
        items.append(
            SettlementItem(
                kind=SettlementItem.Kind.DEBIT, transaction_id=txn[0], amount=txn[1], at=txn[2]
            )
        )
    reversals = list(
        Transaction.objects.filter(
            in_period,
            kind=TransactionKind.REVERSAL,
            reversal_of__brand=brand,
            reversal_of__kind__in=WRITE_OFFS,
        ).exclude(pk__in=settled)
    )
    for txn in reversals:
        items.append(
            SettlementItem(
                kind=SettlementItem.Kind.DEBIT,
                transaction_id=txn.pk,
                amount=-txn.amount,
                at=txn.created_at,
            )
        )
    items.sort(key=lambda item: item.at)
    return items


def _totals(settlement: Settlement, items: list[SettlementItem]) -> None:
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for item in items:
        sums[item.kind] += item.amount
        sums["agent"] += item.agent_commission
    settlement.invoice_payments = sums[SettlementItem.Kind.INVOICE_PAYMENT]
    settlement.debits = sums[SettlementItem.Kind.DEBIT]
    settlement.collected = settlement.invoice_payments + settlement.debits
    settlement.agent_commission = sums["agent"]
    settlement.operator_commission = _cents(
        settlement.collected * settlement.operator_commission_rate / 100
    )
    settlement.payable = (
        settlement.collected - settlement.agent_commission - settlement.operator_commission
    )


@transaction.atomic
def settlement_prepare(
    *, brand: Brand, period: str, currency: str = "RUB", caller: Caller = SYSTEM
) -> Settlement:
    """Prepare (or prepare again) the brand's settlement for an ended month; see above.
    Locks the settlement's row."""
    start, end = period_bounds(period)
    Settlement.objects.get_or_create(
        brand=brand,
        period=period,
        currency=currency,
        defaults={"operator_commission_rate": ZERO},
    )
    settlement = Settlement.objects.select_for_update().get(
        brand=brand, period=period, currency=currency
    )
    if settlement.status == Settlement.Status.PAID:
        raise SettlementAlreadyPaid(settlement=settlement.pk)
    settlement.items.all().delete()
    terms = SettlementTerms.objects.filter(brand=brand).first()
    settlement.operator_commission_rate = terms.operator_commission_rate if terms else ZERO
    items = _build_items(brand, currency, start, end)
    for item in items:
        item.settlement = settlement
    SettlementItem.objects.bulk_create(items, batch_size=5000)
    _totals(settlement, items)
    settlement.save()
    return settlement


@transaction.atomic
def settlement_pay(
    *, settlement: Settlement | int, reference: str, caller: Caller = SYSTEM
) -> Settlement:
    """Mark a prepared settlement paid out, once. Locks its row."""
    reference = (reference or "").strip()
    if not reference:
        raise ValidationFailed("A payout needs its payment reference.", reference=["Required."])
    pk = settlement.pk if isinstance(settlement, Settlement) else settlement
    locked = Settlement.objects.select_for_update().get(pk=pk)
    if locked.status == Settlement.Status.PAID:
        raise SettlementAlreadyPaid(settlement=pk, paid_at=locked.paid_at.isoformat())
    locked.status = Settlement.Status.PAID
    locked.paid_at = timezone.now()
    locked.paid_by = caller.user
    locked.payout_reference = reference[:100]
    locked.save()
    return locked


def settlement_summary(settlement: Settlement) -> dict[str, Any]:
    """The statement's figures and its items by kind, for the documents."""
    by_kind: dict[str, list[SettlementItem]] = defaultdict(list)
    for item in settlement.items.all():
        by_kind[item.kind].append(item)
    return {"settlement": settlement, "items": by_kind, "generated_on": date.today()}
