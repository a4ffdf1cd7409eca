"""Recalculation: re-rate a billed (account, brand, period) with what is known now,
compare per service with the original plus its earlier adjustments, and issue any
difference as an adjustment invoice (a debit note, or a credit note whose credit pays
the original first). ``invoice_recalculate`` does it on demand; runs call
``_recalculate_changed`` for their accounts' billed periods whose usage or readings
are new to the last check, comparing set-based first. "New" is decided by commit
order, not by clocks: see ``inputs_xmin``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account
from brands.models import Brand
from core.db import bound_cursor
from invoicing.exceptions import PeriodNotBilled
from invoicing.meters import month_add
from invoicing.models import BillingPeriod, Invoice, InvoiceLine, InvoiceRun
from invoicing.rating import RATED_TABLE, rate_accounts
from invoicing.services.inputs import Q6, ZERO, _pk, _setting
from invoicing.services.issuing import ChunkOutcome, Failure, _issue
from invoicing.services.periods import billing_period_ended_get
from invoicing.services.status import S
from ledger import services as ledger
from ledger.exceptions import DomainError

# Runs look this many months back for billed periods whose inputs changed; older
# periods are recalculated on demand only.
RECALC_LOOKBACK_MONTHS = 12


def _recalc_margin() -> timedelta:
    # Only for rows stored before their writing transaction was recorded (``xact_id``
    # NULL) and invoices checked before the marker existed: those compare insert times
    # (a transaction's start, on the database clock) and look back this far.
    return timedelta(minutes=int(_setting("INVOICING_RECALC_MARGIN_MINUTES", 15)))


def inputs_xmin() -> str:
    """The marker a check records before it rates: the oldest transaction still running.

    Every transaction with a lower id had finished when this snapshot was taken, so
    the rating (later statements, later snapshots) sees what it committed. A usage
    batch that began before the check and commits after it has an id at or above
    this one (its id is assigned at its first write, while it runs), so the next
    check finds its rows ``xact_id >= inputs_xmin``, whatever the clocks say; rows
    of transactions that finished in between are merely re-checked.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        return cursor.fetchone()[0]


# Whether a stored input row is new to the invoice's last check (see ``inputs_xmin``).
_NEW_TO_CHECK = """
    CASE WHEN {row}.xact_id IS NOT NULL AND i.inputs_xmin IS NOT NULL
         THEN {row}.xact_id >= i.inputs_xmin
         ELSE {row}.created_at > i.inputs_checked_at - %(margin)s END
"""


def _recalculate_changed(
    run: InvoiceRun, account_ids: Sequence[int], before: datetime
) -> ChunkOutcome:
    """Recalculate billed periods (up to the run's) of these accounts whose inputs changed."""
    outcome = ChunkOutcome()
    # Each account's invoices by the account's own index (a lateral subquery behind
    # OFFSET 0, which the planner cannot flatten): with ``account_id = ANY(chunk)`` and
    # statistics behind a month-end, it chose the (period, brand) index and filtered the
    # period's invoices by the chunk, a cost that grew with every chunk the run issued
    # (0.4-0.9 s a chunk at about 1,200,000 invoices, 2 ms now).
    with bound_cursor() as cursor:
        cursor.execute(
            f"""
            SELECT c.id, c.account_id, c.period_id
            FROM unnest(%(accounts)s::bigint[]) a(id)
            CROSS JOIN LATERAL (
                SELECT i.id, i.account_id, i.period_id FROM invoicing_invoice i
                JOIN invoicing_billingperiod p ON p.id = i.period_id
                WHERE i.account_id = a.id
                  AND i.kind = 'invoice' AND i.status NOT IN ('draft', 'void')
                  AND i.inputs_checked_at < %(before)s
                  AND p.starts_on <= %(period_start)s AND p.starts_on >= %(oldest)s
                  AND (%(brand)s::bigint IS NULL OR i.brand_id = %(brand)s::bigint)
                  AND (
                    EXISTS (
                        SELECT 1 FROM invoicing_usagerecord u
                        WHERE u.account_id = i.account_id
                          AND u.occurred_at >= (p.starts_on::timestamp AT TIME ZONE %(tz)s)
                          AND u.occurred_at < ((p.ends_on + 1)::timestamp AT TIME ZONE %(tz)s)
                          AND {_NEW_TO_CHECK.format(row="u")}
                    )
                    OR EXISTS (
                        SELECT 1 FROM invoicing_meterreading r
                        WHERE r.account_id = i.account_id
                          AND r.taken_at >= ((p.starts_on - interval '4 months')::timestamp
                                             AT TIME ZONE %(tz)s)
                          AND {_NEW_TO_CHECK.format(row="r")}
                    )
                  )
                OFFSET 0
            ) c
            ORDER BY c.id
            """,
            {
                "accounts": list(account_ids),
                "before": before,
                "period_start": run.period.starts_on,
                "oldest": month_add(run.period.starts_on, -RECALC_LOOKBACK_MONTHS),
                "brand": run.brand_id,
                "tz": settings.TIME_ZONE,
                "margin": _recalc_margin(),
            },
        )
        candidates = cursor.fetchall()
    # Re-rate all candidates of a period at once and compare set-based: most of them
    # (records that arrived just before the original rating) changed nothing.
    by_period: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for original_id, account_id, period_id in candidates:
        by_period[period_id].append((original_id, account_id))
    originals: list[int] = []
    for period_id, rows in sorted(by_period.items()):
        period = BillingPeriod.objects.get(pk=period_id)
        checked_at, xmin = timezone.now(), inputs_xmin()
        rate_accounts(sorted({account_id for _o, account_id in rows}), period, run.brand_id)
        ids = [original_id for original_id, _a in rows]
        with connection.cursor() as cursor:
            cursor.execute(_CHANGED_ORIGINALS_SQL, {"originals": ids})
            changed = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "UPDATE invoicing_invoice SET inputs_checked_at = %s, inputs_xmin = %s::xid8"
                " WHERE id = ANY(%s) AND NOT id = ANY(%s)",
                [checked_at, xmin, ids, changed],
            )
        originals.extend(changed)
    for original_id in sorted(originals):
        try:
            with transaction.atomic():
                adjustment = _recalculate_original(original_id)
        except DomainError as exc:
            row = Invoice.objects.values_list("account_id", "brand_id").get(pk=original_id)
            outcome.failures.append(Failure(row[0], row[1], exc.code, exc.message))
            continue
        if adjustment is not None:
            outcome.adjustments += 1
    return outcome


# Originals whose amounts per service differ from a fresh rating (in ``invoicing_rated``).
_CHANGED_ORIGINALS_SQL = f"""
WITH docs AS (
    SELECT o.original_id, d.invoice_id
    FROM unnest(%(originals)s::bigint[]) AS o(original_id)
    CROSS JOIN LATERAL (
        SELECT o.original_id AS invoice_id
      UNION ALL
        SELECT id FROM invoicing_invoice WHERE adjusts_id = o.original_id AND status <> 'void'
    ) d
),
billed AS (
    SELECT d.original_id, l.service_id, SUM(l.amount) AS amount
    FROM docs d JOIN invoicing_invoiceline l ON l.invoice_id = d.invoice_id
    GROUP BY 1, 2
),
rated AS (
    SELECT o.id AS original_id, r.service_id, SUM(r.amount) AS amount
    FROM invoicing_invoice o
    JOIN {RATED_TABLE} r ON r.account_id = o.account_id AND r.brand_id = o.brand_id
    WHERE o.id = ANY(%(originals)s::bigint[])
    GROUP BY 1, 2
)
SELECT DISTINCT COALESCE(b.original_id, r.original_id)
FROM billed b FULL JOIN rated r ON r.original_id = b.original_id AND r.service_id = b.service_id
WHERE COALESCE(b.amount, 0) <> COALESCE(r.amount, 0)
"""


def invoice_recalculate(
    *,
    account: Account | int,
    period: str | BillingPeriod,
    brand: Brand | int | None = None,
    brand_ids: Iterable[int] | None = None,
) -> list[Invoice]:
    """Re-rate a billed period with what is known now; issue the difference as adjustments.

    One adjustment per billed brand whose amounts changed (a debit note, or a
    credit note with a negative total); an empty list when nothing changed.
    ``brand`` / ``brand_ids`` limit it to those brands (a partner's). Refused
    with ``period_not_billed`` when the account has no issued invoice for the
    period (and brands); a period that has not ended is ``validation_error``.
    """
    period_obj = billing_period_ended_get(period)
    query = Invoice.objects.filter(
        account_id=_pk(account), period=period_obj, kind=Invoice.Kind.INVOICE
    ).exclude(status__in=[S.DRAFT, S.VOID])
    if brand is not None:
        query = query.filter(brand_id=_pk(brand))
    if brand_ids is not None:
        query = query.filter(brand_id__in=list(brand_ids))
    originals = list(query.order_by("brand_id").values_list("pk", flat=True))
    if not originals:
        raise PeriodNotBilled(account=_pk(account), period=period_obj.code)
    adjustments = []
    with transaction.atomic():
        for original_id in originals:
            adjustment = _recalculate_original(original_id)
            if adjustment is not None:
                adjustments.append(adjustment)
    return adjustments


def _recalculate_original(original_id: int) -> Invoice | None:
    """Compare the original (plus its adjustments) with a fresh rating; issue the difference.

    Locks the account (as any posting would, first) and then the original
    invoice, so two recalculations of one period never both bill the difference.
    """
    account_id = Invoice.objects.values_list("account_id", flat=True).get(pk=original_id)
    ledger.lock_accounts([account_id])
    original = (
        Invoice.objects.select_for_update(of=("self",)).select_related("period").get(pk=original_id)
    )
    checked_at, xmin = timezone.now(), inputs_xmin()
    rate_accounts([original.account_id], original.period, original.brand_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH billed AS (
                SELECT l.service_id,
                       SUM(l.quantity) FILTER (WHERE l.kind <> 'minimum') AS quantity,
                       SUM(l.amount) AS amount, SUM(l.vat) AS vat, MAX(l.vat_rate) AS vat_rate
                FROM invoicing_invoiceline l
                WHERE l.invoice_id = ANY(ARRAY(
                    SELECT %(original)s::bigint
                    UNION ALL
                    SELECT id FROM invoicing_invoice
                    WHERE adjusts_id = %(original)s AND status <> 'void'
                ))
                GROUP BY l.service_id
            ),
            rated AS (
                SELECT service_id,
                       SUM(quantity) FILTER (WHERE kind <> 'minimum') AS quantity,
                       SUM(amount) AS amount, SUM(vat) AS vat, MAX(vat_rate) AS vat_rate,
                       bool_or(estimated) AS estimated
                FROM {RATED_TABLE}
                GROUP BY service_id
            )
            SELECT COALESCE(r.service_id, b.service_id),
                   COALESCE(r.quantity, 0) - COALESCE(b.quantity, 0),
                   COALESCE(r.amount, 0) - COALESCE(b.amount, 0),
                   COALESCE(r.vat, 0) - COALESCE(b.vat, 0),
                   COALESCE(r.vat_rate, b.vat_rate), COALESCE(r.estimated, false), sv.name
            FROM rated r FULL JOIN billed b ON b.service_id = r.service_id
            JOIN brands_service sv ON sv.id = COALESCE(r.service_id, b.service_id)
            ORDER BY 1
            """,
            {"original": original.pk},
        )
        differences = [row for row in cursor.fetchall() if row[2] != 0]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE invoicing_invoice SET inputs_checked_at = %s, inputs_xmin = %s::xid8"
            " WHERE id = %s",
            [checked_at, xmin, original.pk],
        )
    if not differences:
        return None
    total = sum((row[2] for row in differences), ZERO)
    vat = sum((row[3] for row in differences), ZERO)
    if total == 0:
        return None
    adjustment = Invoice.objects.create(
        account_id=original.account_id,
        brand_id=original.brand_id,
        period_id=original.period_id,
        kind=Invoice.Kind.ADJUSTMENT,
        adjusts=original,
        status=S.DRAFT,
        currency=original.currency,
        subtotal=total - vat,
        vat=vat,
        total=total,
        rated_at=checked_at,
        inputs_checked_at=checked_at,
        run=None,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=adjustment,
            position=position,
            kind=InvoiceLine.Kind.ADJUSTMENT,
            service_id=service_id,
            description=f"Recalculation of {original.period.code}: {name}"[:300],
            starts_on=original.period.starts_on,
            ends_on=original.period.ends_on,
            quantity=quantity.quantize(Q6),
            unit_price=None,
            amount=amount,
            vat_rate=vat_rate,
            vat=line_vat,
            estimated=estimated,
        )
        for position, (
            service_id,
            quantity,
            amount,
            line_vat,
            vat_rate,
            estimated,
            name,
        ) in enumerate(differences, start=1)
    )
    issued = _issue([adjustment.pk])
    if issued.failures:
        failure = issued.failures[0]
        raise _RecalculationRefused(failure.message, code=failure.code)
    adjustment.refresh_from_db()
    return adjustment


class _RecalculationRefused(DomainError):
    code = "recalculation_refused"

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
