"""Billing periods ("YYYY-MM"): created open on first use, closed by the operator or by
a completed run over all brands. ``check_days_open`` is the guard every price-changing
service calls: tariffs, subscriptions and VAT rates cannot change on days of a closed
period, so billed prices stay billed (late usage and readings still recalculate).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone

from invoicing.exceptions import InvoicingValidationError, PeriodClosed
from invoicing.models import BillingPeriod

PERIOD_RE = re.compile(r"^((?:19|20|21)\d{2})-(0[1-9]|1[0-2])$")


def billing_period_get(code: str) -> BillingPeriod:
    """The period ``YYYY-MM`` (created on first use, open)."""
    match = PERIOD_RE.match(code or "")
    if not match:
        raise InvoicingValidationError("A period is written YYYY-MM.", field="period", value=code)
    year, month = int(match[1]), int(match[2])
    starts_on = date(year, month, 1)
    ends_on = (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
    period, _ = BillingPeriod.objects.get_or_create(
        code=code, defaults={"starts_on": starts_on, "ends_on": ends_on}
    )
    return period


def billing_period_for_day(day: date) -> BillingPeriod:
    return billing_period_get(f"{day.year:04d}-{day.month:02d}")


@transaction.atomic
def billing_period_close(*, period: BillingPeriod | str) -> BillingPeriod:
    """Close a period: its days can no longer be re-priced (late usage still recalculates)."""
    period = billing_period_get(period) if isinstance(period, str) else period
    BillingPeriod.objects.filter(pk=period.pk, status=BillingPeriod.Status.OPEN).update(
        status=BillingPeriod.Status.CLOSED, closed_at=timezone.now()
    )
    period.refresh_from_db()
    return period


def check_days_open(first_day: date) -> None:
    """Refuse a change that would re-price days from ``first_day`` on inside a closed period."""
    closed = (
        BillingPeriod.objects.filter(status=BillingPeriod.Status.CLOSED, ends_on__gte=first_day)
        .order_by("starts_on")
        .first()
    )
    if closed is not None:
        raise PeriodClosed(
            f"Period {closed.code} is closed; changes may start on {closed.ends_on + timedelta(1)}"
            " at the earliest.",
            period=closed.code,
        )
