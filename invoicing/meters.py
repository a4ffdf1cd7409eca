"""Meter readings: from cumulative register readings to consumption per billing period.

Per reading, ``consumption`` is the step from the previous reading of the same
meter: ``reading - previous``, or across a rollover ``reading + 10**digits -
previous`` when that is less than half a turn of the register; a meter's first
reading (installation, replacement) is its baseline and consumes nothing. A
reading below the previous one that is not a plausible rollover is refused
(``reading_backwards``), as is one that would make the next reading go backwards.

Per billing period (a calendar month) and (account, service), the consumption
of the readings taken in that month is attributed as follows:

* a month with readings is an *anchor*: when the previous anchor is the month
  before, the month's consumption is the sum of its readings' steps;
* when months without readings lie between two anchors, the later anchor's
  consumption covers the whole gap and is spread over the gap's months by days
  (cumulative rounding to six places, so the parts add up exactly);
* a month after the last anchor is *estimated* as the average of the three
  months before it (which may themselves be estimates; the month of the very
  first reading counts only when there is nothing else), zero without history.

So when a reading finally arrives, the months that were billed on an estimate
get their interpolated actual value instead, and recalculation bills the
difference as an adjustment; over any stretch of time, what is billed adds up
to the register's movement.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal("0")
Q6 = Decimal("0.000001")
LOOKBACK_MONTHS = 24


def month_add(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def month_days(month: date) -> int:
    return (month_add(month, 1) - month).days


def round6(value: Decimal) -> Decimal:
    return value.quantize(Q6, rounding=ROUND_HALF_UP)


def reading_step(previous: Decimal, reading: Decimal, digits: int | None) -> Decimal | None:
    """The consumption between two readings of one meter, or None when it went backwards."""
    if reading >= previous:
        return reading - previous
    if digits:
        capacity = Decimal(10) ** digits
        wrapped = reading + capacity - previous
        if wrapped < capacity / 2:
            return wrapped
    return None


@dataclass(frozen=True, slots=True)
class PeriodConsumption:
    quantity: Decimal
    estimated: bool


def consumption_by_month(anchors: dict[date, Decimal], target: date) -> PeriodConsumption | None:
    """Consumption attributed to the month ``target`` given the summed steps per anchor month.

    ``anchors`` maps the first day of each month that has readings to the sum of
    its readings' consumption. Returns None when the series starts after ``target``.
    """
    if not anchors:
        return None
    months = sorted(anchors)
    first = months[0]
    if target < first:
        return None
    values: dict[date, PeriodConsumption] = {}
    month = first
    while month <= target:
        values[month] = _attributed(anchors, months, values, month)
        month = month_add(month, 1)
    return values[target]


def _attributed(
    anchors: dict[date, Decimal],
    months: list[date],
    earlier: dict[date, PeriodConsumption],
    month: date,
) -> PeriodConsumption:
    position = bisect.bisect_left(months, month)
    if position == len(months):
        # After the last reading: the average of the three months before. The month of
        # the first reading only counts when there is nothing else: a meter's first
        # reading is a baseline, so that month's consumption is mostly unknown.
        first = months[0]
        back = [
            earlier[m].quantity
            for m in (month_add(month, -k) for k in (1, 2, 3))
            if m in earlier and m > first
        ]
        if not back:
            back = [earlier[first].quantity] if first in earlier else []
        if not back:
            return PeriodConsumption(ZERO, True)
        return PeriodConsumption(round6(sum(back, ZERO) / len(back)), True)
    following = months[position]
    if position == 0:
        # The first month with readings: its steps (a first reading is a baseline).
        return PeriodConsumption(anchors[following], False)
    previous = months[position - 1]
    gap_start = month_add(previous, 1)
    if gap_start == following:
        return PeriodConsumption(anchors[following], False)
    total_days = (month_add(following, 1) - gap_start).days
    done_days = (month - gap_start).days
    upto = done_days + month_days(month)
    share = anchors[following]
    return PeriodConsumption(
        round6(share * upto / total_days) - round6(share * done_days / total_days), False
    )


def monthly_anchor_sums(
    rows: Iterable[tuple[int, int, date, Decimal]],
) -> dict[tuple[int, int], dict[date, Decimal]]:
    """Group ``(account_id, service_id, month, consumption)`` rows per series."""
    series: dict[tuple[int, int], dict[date, Decimal]] = {}
    for account_id, service_id, month, consumption in rows:
        series.setdefault((account_id, service_id), {})[month] = consumption
    return series
