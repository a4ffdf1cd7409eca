"""Set-based rating: every subscription of a set of accounts for one period, in SQL.

``rate_accounts`` fills the temporary table ``invoicing_rated`` (dropped at
commit) with the invoice lines those accounts would get, already rounded:

1. *Segments*: each subscription is cut by the period and by the versions of
   its tariff plan, so a mid-period price change gives two segments, each
   covering ``days`` of the period's ``period_days``.
2. *Quantities* per segment: usage records that occurred on the segment's
   days (business time zone), plus the period's meter consumption spread over
   the (account, service)'s segments by days (computed in Python, see
   ``invoicing.meters``, passed in as arrays).
3. *Charges*: ``flat`` = price x days / period_days; ``per_unit`` = quantity x
   price; ``tiered`` = each band (bounds prorated by days for a partial
   segment) at its own price. Each line's amount is rounded half-up to the
   currency's minor unit; a ``minimum_charge`` (prorated like a flat fee) tops
   the segment up with one extra line when its lines add up to less.
4. *VAT* is the service's rate, included in the amount: ``vat = round(amount x
   rate / (100 + rate))`` per line.

The same function rates a run's chunk of a thousand accounts and a single
account for a recalculation, so both always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import connection

from core.db import bound_cursor
from invoicing.meters import LOOKBACK_MONTHS, consumption_by_month, month_add, monthly_anchor_sums
from invoicing.models import BillingPeriod
from ledger.services import CURRENCY_DECIMALS

RATED_TABLE = "invoicing_rated"


def _places_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{code}' THEN {places}" for code, places in CURRENCY_DECIMALS.items())
    return f"(CASE {column} {cases} ELSE 2 END)"


SEGMENTS_TABLE = "invoicing_segments"

# Step 1: segments, materialised and analysed so the planner sees real row counts
# (a CTE here would be estimated at one row and nested-loop joined quadratically).
# The chunk's subscriptions are found by account first (MATERIALIZED): left to itself the
# planner may scan every subscription of the brand's few tariffs and filter by account,
# which costs a chunk as much as the whole population (a run quadratic in its size).
_SEGMENTS_SQL = f"""
CREATE TEMP TABLE {SEGMENTS_TABLE} ON COMMIT DROP AS
WITH subs AS MATERIALIZED (
    SELECT s.id, s.account_id, s.service_id, s.tariff_id, s.starts_on, s.ends_on
    FROM invoicing_subscription s
    WHERE s.account_id = ANY(%(accounts)s::bigint[])
      AND s.starts_on <= %(pe)s::date AND (s.ends_on IS NULL OR s.ends_on >= %(ps)s::date)
),
seg AS (
    SELECT s.id AS subscription_id, s.account_id, s.service_id, sv.brand_id, sv.vat_rate,
           sv.name AS service_name, a.currency, t.id AS tariff_id, t.kind, t.price,
           t.minimum_charge,
           GREATEST(%(ps)s::date, s.starts_on, t.valid_from) AS starts_on,
           LEAST(%(pe)s::date, COALESCE(s.ends_on, %(pe)s::date),
                 COALESCE(t.valid_to, %(pe)s::date)) AS ends_on
    FROM subs s
    JOIN invoicing_tariff t0 ON t0.id = s.tariff_id
    JOIN invoicing_tariff t
      ON t.service_id = t0.service_id AND t.plan = t0.plan
     AND t.valid_from <= LEAST(%(pe)s::date, COALESCE(s.ends_on, %(pe)s::date))
     AND (t.valid_to IS NULL OR t.valid_to >= GREATEST(%(ps)s::date, s.starts_on))
    JOIN brands_service sv ON sv.id = s.service_id
    JOIN accounts_account a ON a.id = s.account_id
    WHERE (%(brand)s::bigint IS NULL OR sv.brand_id = %(brand)s::bigint)
)
SELECT seg.*, (seg.ends_on - seg.starts_on + 1) AS days,
       (seg.starts_on::timestamp AT TIME ZONE %(tz)s) AS t_from,
       ((seg.ends_on + 1)::timestamp AT TIME ZONE %(tz)s) AS t_to,
       SUM(seg.ends_on - seg.starts_on + 1) OVER (
           PARTITION BY seg.account_id, seg.service_id
           ORDER BY seg.starts_on, seg.subscription_id, seg.tariff_id
       ) AS cum_days,
       SUM(seg.ends_on - seg.starts_on + 1) OVER (
           PARTITION BY seg.account_id, seg.service_id
       ) AS all_days
FROM seg
"""

# Step 2's usage is summed per segment by a key range scan (LATERAL with an aggregate, which
# the planner cannot flatten into a join): a chunk's cost follows the chunk, never the
# usage table. As a join, the planner hashed the chunk's segments and scanned the whole
# table whenever its statistics were behind (right after a month's ingest, or with
# autovacuum off): 660 ms a chunk at 3,000,000 usage records, a run quadratic in its size.
_RATE_SQL = f"""
CREATE TEMP TABLE {RATED_TABLE} ON COMMIT DROP AS
WITH params AS (
    SELECT %(pdays)s::numeric AS pdays
),
usage AS (
    SELECT g.subscription_id, g.tariff_id, u.quantity
    FROM {SEGMENTS_TABLE} g
    CROSS JOIN LATERAL (
        SELECT SUM(r.quantity) AS quantity
        FROM invoicing_usagerecord r
        WHERE r.account_id = g.account_id AND r.service_id = g.service_id
          AND r.occurred_at >= g.t_from AND r.occurred_at < g.t_to
    ) u
    WHERE u.quantity IS NOT NULL
),
meter AS (
    SELECT g.subscription_id, g.tariff_id, m.estimated,
           ROUND(m.quantity * g.cum_days / g.all_days, 6)
             - ROUND(m.quantity * (g.cum_days - g.days) / g.all_days, 6) AS quantity
    FROM {SEGMENTS_TABLE} g
    JOIN unnest(%(m_account)s::bigint[], %(m_service)s::bigint[], %(m_quantity)s::numeric[],
                %(m_estimated)s::boolean[]) AS m(account_id, service_id, quantity, estimated)
      ON m.account_id = g.account_id AND m.service_id = g.service_id
),
qty AS (
    SELECT g.*, COALESCE(u.quantity, 0) + COALESCE(m.quantity, 0) AS quantity,
           COALESCE(m.estimated, false) AS estimated, {_places_sql("g.currency")} AS places
    FROM {SEGMENTS_TABLE} g
    LEFT JOIN usage u ON u.subscription_id = g.subscription_id AND u.tariff_id = g.tariff_id
    LEFT JOIN meter m ON m.subscription_id = g.subscription_id AND m.tariff_id = g.tariff_id
),
charge AS (
    SELECT q.*, 0 AS band, 'charge'::text AS line_kind, q.service_name AS description,
           ROUND(q.days / p.pdays, 6) AS line_quantity, q.price AS unit_price,
           ROUND(q.price * q.days / p.pdays, q.places) AS amount
    FROM qty q CROSS JOIN params p
    WHERE q.kind = 'flat'
  UNION ALL
    SELECT q.*, 0, 'charge', q.service_name, q.quantity, q.price,
           ROUND(q.quantity * q.price, q.places)
    FROM qty q
    WHERE q.kind = 'per_unit' AND q.quantity > 0
  UNION ALL
    SELECT q.*, b.position, 'charge', q.service_name || ' (band ' || b.position || ')',
           bq.quantity, b.price, ROUND(bq.quantity * b.price, q.places)
    FROM qty q
    CROSS JOIN params p
    JOIN invoicing_tarifftier b ON b.tariff_id = q.tariff_id
    CROSS JOIN LATERAL (
        SELECT GREATEST(
            0,
            LEAST(q.quantity, COALESCE(ROUND(b.up_to * q.days / p.pdays, 6), q.quantity))
              - ROUND(b.from_quantity * q.days / p.pdays, 6)
        ) AS quantity
    ) bq
    WHERE q.kind = 'tiered' AND bq.quantity > 0
),
topup AS (
    SELECT q.*, 999 AS band, 'minimum'::text AS line_kind,
           q.service_name || ' (minimum charge)' AS description, 1::numeric AS line_quantity,
           m.amount AS unit_price, m.amount
    FROM qty q
    CROSS JOIN params p
    LEFT JOIN (
        SELECT subscription_id, tariff_id, SUM(amount) AS amount
        FROM charge GROUP BY subscription_id, tariff_id
    ) c ON c.subscription_id = q.subscription_id AND c.tariff_id = q.tariff_id
    CROSS JOIN LATERAL (
        SELECT ROUND(q.minimum_charge * q.days / p.pdays, q.places) - COALESCE(c.amount, 0)
            AS amount
    ) m
    WHERE q.minimum_charge IS NOT NULL AND m.amount > 0
),
lines AS (
    SELECT account_id, brand_id, currency, service_id, subscription_id, tariff_id, line_kind,
           description, starts_on, ends_on, line_quantity, unit_price, amount, vat_rate, places,
           estimated, band
    FROM charge
  UNION ALL
    SELECT account_id, brand_id, currency, service_id, subscription_id, tariff_id, line_kind,
           description, starts_on, ends_on, line_quantity, unit_price, amount, vat_rate, places,
           estimated, band
    FROM topup
)
SELECT account_id, brand_id, currency, service_id, subscription_id, tariff_id,
       line_kind AS kind, description, starts_on, ends_on,
       line_quantity AS quantity, unit_price, amount, vat_rate,
       ROUND(amount * vat_rate / (100 + vat_rate), places) AS vat, estimated,
       ROW_NUMBER() OVER (
           PARTITION BY account_id, brand_id
           ORDER BY service_id, starts_on, subscription_id, band
       ) AS position
FROM lines
"""


@dataclass(frozen=True)
class MeterQuantities:
    account_ids: list[int]
    service_ids: list[int]
    quantities: list[Decimal]
    estimated: list[bool]


def meter_quantities(account_ids: Sequence[int], period: BillingPeriod) -> MeterQuantities:
    """The period's consumption per (account, service) from meter readings (see ``meters``)."""
    target = period.starts_on
    since = month_add(target, -LOOKBACK_MONTHS)
    with bound_cursor() as cursor:
        cursor.execute(
            # Each account's readings by a key range scan (LATERAL with an aggregate: see
            # _RATE_SQL's usage), never a scan of every reading filtered by the chunk.
            """
            SELECT a.id, r.service_id, r.month, r.consumption
            FROM unnest(%s::bigint[]) AS a(id)
            CROSS JOIN LATERAL (
                SELECT service_id,
                       date_trunc('month', taken_at AT TIME ZONE %s)::date AS month,
                       SUM(consumption) AS consumption
                FROM invoicing_meterreading
                WHERE account_id = a.id AND taken_at >= (%s::timestamp AT TIME ZONE %s)
                GROUP BY 1, 2
            ) r
            """,
            [list(account_ids), settings.TIME_ZONE, since, settings.TIME_ZONE],
        )
        rows = cursor.fetchall()
    result = MeterQuantities([], [], [], [])
    for (account_id, service_id), anchors in monthly_anchor_sums(rows).items():
        consumption = consumption_by_month(anchors, target)
        if consumption is None:
            continue
        result.account_ids.append(account_id)
        result.service_ids.append(service_id)
        result.quantities.append(consumption.quantity)
        result.estimated.append(consumption.estimated)
    return result


def rate_accounts(
    account_ids: Sequence[int], period: BillingPeriod, brand_id: int | None = None
) -> None:
    """Rate the accounts for the period into the temp table ``invoicing_rated`` (see above).

    Must run inside a transaction (the table is dropped at commit); calling it
    again in the same transaction replaces the table.
    """
    meters = meter_quantities(account_ids, period)
    params = {
        "ps": period.starts_on,
        "pe": period.ends_on,
        "pdays": (period.ends_on - period.starts_on).days + 1,
        "accounts": list(account_ids),
        "brand": brand_id,
        "tz": settings.TIME_ZONE,
        "m_account": meters.account_ids,
        "m_service": meters.service_ids,
        "m_quantity": meters.quantities,
        "m_estimated": meters.estimated,
    }
    with bound_cursor() as cursor:  # the chunk's arrays bound, not quoted into the SQL
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{RATED_TABLE}, pg_temp.{SEGMENTS_TABLE}")
        cursor.execute("SET LOCAL jit = off")  # compiling costs more than these statements
        cursor.execute(_SEGMENTS_SQL, params)
        cursor.execute(f"ANALYZE {SEGMENTS_TABLE}")
        cursor.execute(_RATE_SQL, params)


@dataclass(frozen=True)
class RatedLine:
    account_id: int
    brand_id: int
    currency: str
    service_id: int
    subscription_id: int | None
    tariff_id: int | None
    kind: str
    description: str
    starts_on: date | None
    ends_on: date | None
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal
    vat_rate: Decimal
    vat: Decimal
    estimated: bool
    position: int


def rated_lines() -> list[RatedLine]:
    """The rows of ``invoicing_rated`` (for previews, recalculation and tests)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT account_id, brand_id, currency, service_id, subscription_id, tariff_id,
                       kind, description, starts_on, ends_on, quantity, unit_price, amount,
                       vat_rate, vat, estimated, position
                FROM {RATED_TABLE} ORDER BY account_id, brand_id, position"""
        )
        return [RatedLine(*row) for row in cursor.fetchall()]
