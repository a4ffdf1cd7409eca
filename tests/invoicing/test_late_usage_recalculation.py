"""Usage whose batch began before a run's recalculation check and committed after it.

The check cannot see such a batch (it had not committed), so a later run must. Comparing
the rows' insert time (their transaction's start, the database clock) with the check's
time (the application clock) missed it: the batch started before the check. The check
now records the oldest transaction still running when it began
(``pg_snapshot_xmin(pg_current_snapshot())``) and any row written by that transaction
or a later one counts as new for the next check, whatever the clocks say.
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import override_settings

from invoicing.ingest import usage_ingest_records
from invoicing.models import Invoice

pytestmark = pytest.mark.django_db(transaction=True)


def usage(account, service, quantity, ext, day=10):
    return {
        "account": account.pk,
        "service": service.pk,
        "quantity": quantity,
        "occurred_at": f"2026-01-{day:02d}T10:00:00+03:00",
        "external_id": ext,
    }


def adjustments(original):
    return sorted(
        Invoice.objects.filter(adjusts=original).values_list("total", flat=True), key=Decimal
    )


# No safety margin on insert times: the marker must not depend on one.
@override_settings(INVOICING_RECALC_MARGIN_MINUTES=0)
def test_usage_committed_after_a_run_checked_is_billed_by_the_next_run(
    account, service, subscribe, bill
):
    subscribe(account, service, "per_unit", price=Decimal("2.00"))
    assert usage_ingest_records(records=[usage(account, service, "10", "u1")]).accepted == 1
    bill("2026-01")
    original = Invoice.objects.get(kind="invoice")
    assert original.total == Decimal("20.00")
    # Late usage the next run will see, so that it re-checks the period.
    assert usage_ingest_records(records=[usage(account, service, "3", "u2")]).accepted == 1

    inserted, commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def late_batch():  # begins before the second run, commits after its check
        try:
            with transaction.atomic():
                result = usage_ingest_records(records=[usage(account, service, "5", "u3")])
                assert result.accepted == 1
                inserted.set()
                assert commit.wait(30)
        except BaseException as exc:  # reported below
            errors.append(exc)
            inserted.set()
        finally:
            connection.close()

    batch = threading.Thread(target=late_batch)
    batch.start()
    assert inserted.wait(30)
    try:
        bill("2026-01")  # sees u2 (a debit note of 6.00), cannot see u3
    finally:
        commit.set()
        batch.join(30)
    assert errors == []
    assert adjustments(original) == [Decimal("6.00")]

    bill("2026-01")  # u3 has committed since: billed now

    assert adjustments(original) == [Decimal("6.00"), Decimal("10.00")]
    bill("2026-01")  # and only once
    assert adjustments(original) == [Decimal("6.00"), Decimal("10.00")]
