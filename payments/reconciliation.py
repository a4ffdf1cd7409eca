"""Reconciliation: what a registry file says against what the ledger holds for it.

``registry_reconciliation(registry)`` reads the stored file again and sets, line
by line, what it says beside what was done with it:

* **file**: the control line's count and total (and commission, when the format
  carries one), and what its payment lines add up to;
* **posted**: the payments the ledger holds for the registry's claimed lines
  (amounts read from the ledger's transactions, not from the file);
* **suspense**: the suspense receipts, and how many of them are still open,
  assigned or returned;
* **duplicates**: lines whose payment id was claimed before (an earlier file, or
  an earlier line of this one), which posted nothing;
* **commission**: the agent's commission on the lines it claimed;
* **differences**: everything that does not add up, each with a stable code:

  ==========================  ===============================================
  code                        meaning
  ==========================  ===============================================
  ``not_applied``             the registry is still a preview
  ``control_count_mismatch``  the control line's count differs from the lines
  ``control_total_mismatch``  the control line's total differs from the lines
  ``unaccounted``             file total <> posted + suspense + duplicates
  ``duplicate_differs``       a payment id sent again with another account or
                              amount than the first time
  ``ledger_amount_differs``   a transaction's amount differs from its line
  ``reversed``                a posted payment was reversed since
  ==========================  ===============================================

``agent_day_reconciliation(agent, day)`` adds up the registries the agent's
files applied on that business day, with their differences.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.utils import timezone

from ledger.models import Transaction
from payments.exceptions import RegistryRefused
from payments.formats import ZERO, commission_of, parse_registry
from payments.models import AgentPayment, PaymentAgent, Registry, SuspenseItem
from payments.services.registries import layout_of


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _amounts(transaction_ids: list[int]) -> tuple[dict[int, Decimal], set[int]]:
    """The ledger's amounts of these transactions, and which of them were reversed."""
    amounts: dict[int, Decimal] = {}
    reversed_ids: set[int] = set()
    for start in range(0, len(transaction_ids), 50_000):
        chunk = transaction_ids[start : start + 50_000]
        amounts.update(Transaction.objects.filter(pk__in=chunk).values_list("pk", "amount"))
        reversed_ids.update(
            Transaction.objects.filter(reversal_of_id__in=chunk).values_list(
                "reversal_of_id", flat=True
            )
        )
    return amounts, reversed_ids


def registry_reconciliation(registry: Registry) -> dict[str, Any]:
    """See the module docstring. Reads the file and the registry's claims; writes nothing."""
    agent = registry.agent
    differences: list[dict[str, Any]] = []
    try:
        parsed = parse_registry(layout_of(agent), bytes(registry.content))
    except RegistryRefused as exc:  # a preview is never stored for such a file
        return {"registry": registry.pk, "differences": [{"code": exc.details.get("reason")}]}
    if registry.status != Registry.Status.APPLIED:
        differences.append({"code": "not_applied", "message": "The registry is a preview."})
    claims = {
        c.payment_id: c
        for c in AgentPayment.objects.filter(registry=registry).only(
            "payment_id",
            "row",
            "amount",
            "account_number",
            "outcome",
            "transaction_id",
            "commission",
        )
    }
    ids = list({row.payment_id for row in parsed.rows})
    earlier: dict[str, AgentPayment] = {}
    for start in range(0, len(ids), 50_000):
        chunk = ids[start : start + 50_000]
        for claim in (
            AgentPayment.objects.filter(agent=agent, payment_id__in=chunk)
            .exclude(registry=registry)
            .only("payment_id", "amount", "account_number", "registry_id", "row")
        ):
            earlier[claim.payment_id] = claim
    amounts, reversed_ids = _amounts(
        [c.transaction_id for c in claims.values() if c.transaction_id]
    )

    posted = [ZERO, 0]
    suspense = [ZERO, 0]
    duplicates = [ZERO, 0]
    commission = ZERO
    for row in parsed.rows:
        claim = claims.get(row.payment_id)
        if claim is not None and claim.row == row.row:
            commission += claim.commission
            amount = amounts.get(claim.transaction_id, ZERO)
            bucket = posted if claim.outcome == AgentPayment.Outcome.POSTED else suspense
            bucket[0] += amount
            bucket[1] += 1
            if amount != row.amount:
                differences.append(
                    {
                        "code": "ledger_amount_differs",
                        "row": row.row,
                        "payment_id": row.payment_id,
                        "file": _money(row.amount),
                        "ledger": _money(amount),
                    }
                )
            if claim.transaction_id in reversed_ids:
                differences.append(
                    {
                        "code": "reversed",
                        "row": row.row,
                        "payment_id": row.payment_id,
                        "transaction": claim.transaction_id,
                        "amount": _money(amount),
                    }
                )
            continue
        first = claim if claim is not None else earlier.get(row.payment_id)
        if first is None:
            continue  # a preview: nothing claimed yet (reported as not_applied)
        duplicates[0] += row.amount
        duplicates[1] += 1
        if first.amount != row.amount or first.account_number != row.account:
            differences.append(
                {
                    "code": "duplicate_differs",
                    "row": row.row,
                    "payment_id": row.payment_id,
                    "file": {"account": row.account, "amount": _money(row.amount)},
                    "first": {
                        "registry": first.registry_id,
                        "row": first.row,
                        "account": first.account_number,
                        "amount": _money(first.amount),
                    },
                }
            )
    if parsed.control_count != parsed.lines:
        differences.append(
            {"code": "control_count_mismatch", "file": parsed.control_count, "lines": parsed.lines}
        )
    if parsed.control_total != parsed.total:
        differences.append(
            {
                "code": "control_total_mismatch",
                "file": _money(parsed.control_total),
                "lines": _money(parsed.total),
            }
        )
    accounted = posted[0] + suspense[0] + duplicates[0]
    if registry.status == Registry.Status.APPLIED and accounted != parsed.total:
        differences.append(
            {
                "code": "unaccounted",
                "file": _money(parsed.total),
                "accounted": _money(accounted),
                "difference": _money(parsed.total - accounted),
            }
        )
    suspense_status = dict(
        SuspenseItem.objects.filter(registry=registry)
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    file_commission = (
        parsed.control_commission
        if parsed.control_commission is not None
        else sum(
            (
                r.commission
                if r.commission is not None
                else commission_of(r.amount, agent.commission_rate)
                for r in parsed.rows
            ),
            ZERO,
        )
    )
    return {
        "registry": registry.pk,
        "agent": agent.code,
        "file_name": registry.file_name,
        "status": registry.status,
        "applied_at": registry.applied_at,
        "file": {
            "count": parsed.control_count,
            "total": parsed.control_total,
            "commission": file_commission,
            "lines": parsed.lines,
            "lines_total": parsed.total,
        },
        "posted": {"count": posted[1], "amount": posted[0]},
        "suspense": {
            "count": suspense[1],
            "amount": suspense[0],
            **{status: suspense_status.get(status, 0) for status in SuspenseItem.Status.values},
        },
        "duplicates": {"count": duplicates[1], "amount": duplicates[0]},
        "commission": commission,
        "differences": differences,
        "balanced": not differences,
    }


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = timezone.make_aware(datetime.combine(day, time.min))
    return start, timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def agent_day_reconciliation(agent: PaymentAgent, day: date) -> dict[str, Any]:
    """The registries of ``agent`` applied on business day ``day``, added up."""
    start, end = _day_bounds(day)
    registries = list(
        Registry.objects.filter(
            agent=agent, status=Registry.Status.APPLIED, applied_at__gte=start, applied_at__lt=end
        )
        .select_related("agent")
        .order_by("pk")
    )
    per_registry = [registry_reconciliation(r) for r in registries]
    zero = {"count": 0, "amount": ZERO}
    totals: dict[str, Any] = {
        "file": {"count": 0, "total": ZERO, "commission": ZERO},
        "posted": dict(zero),
        "suspense": dict(zero),
        "duplicates": dict(zero),
        "commission": ZERO,
    }
    differences = []
    for rec in per_registry:
        totals["file"]["count"] += rec["file"]["count"]
        totals["file"]["total"] += rec["file"]["total"]
        totals["file"]["commission"] += rec["file"]["commission"]
        for name in ("posted", "suspense", "duplicates"):
            totals[name]["count"] += rec[name]["count"]
            totals[name]["amount"] += rec[name]["amount"]
        totals["commission"] += rec["commission"]
        differences += [{"registry": rec["registry"], **d} for d in rec["differences"]]
    # What the agent keeps of the day and what it owes the operator.
    net = totals["posted"]["amount"] + totals["suspense"]["amount"] - totals["commission"]
    claimed = AgentPayment.objects.filter(registry__in=registries).aggregate(
        n=Count("id"), amount=Sum("amount")
    )
    return {
        "agent": agent.code,
        "date": day,
        "registries": [
            {k: rec[k] for k in ("registry", "file_name", "balanced")} for rec in per_registry
        ],
        **totals,
        "payable_by_agent": net,
        "claimed": {"count": claimed["n"], "amount": claimed["amount"] or ZERO},
        "differences": differences,
        "balanced": not differences,
    }
