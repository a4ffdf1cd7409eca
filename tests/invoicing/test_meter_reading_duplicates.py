"""Meter readings with one external id, over HTTP: in one batch, and in parallel batches.

The contract (``POST /meter-readings/``): a known ``external_id`` is a duplicate, counted
in ``duplicates``; never a 500. Parallel batches used to check for duplicates before
taking any lock and then hit the unique constraint on insert.
"""

from decimal import Decimal

import pytest

from invoicing.models import MeterReading
from tests.api.conftest import api_client, make_side
from tests.api.helpers import post
from tests.factories import AccountFactory
from tests.ledger.concurrency import run_parallel

V1 = "/api/v1"
WORKERS = 8


def reading(account, service, value, external_id, day=10):
    return {
        "account": account.pk,
        "service": service.pk,
        "reading": value,
        "taken_at": f"2026-01-{day:02d}T12:00:00+03:00",
        "external_id": external_id,
    }


def test_meter_readings_one_external_id_twice_in_a_batch(db):
    side = make_side("Partner A", funds="0")
    response = post(
        side.api,
        f"{V1}/meter-readings/",
        {
            "readings": [
                reading(side.account, side.service, "100", "r-1", 5),
                reading(side.account, side.service, "120", "r-1", 6),
            ]
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["errors"]) == (1, 1, [])
    assert MeterReading.objects.filter(external_id="r-1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_meter_readings_parallel_batches_with_one_external_id():
    side = make_side("Partner A", funds="0")
    # The same external id on two accounts of the service (two meters, two locks) too.
    other = AccountFactory(brands=[side.brand])
    accounts = [side.account, other]

    def send(index):
        account = accounts[index % 2]
        response = post(
            api_client(side.raw_key),
            f"{V1}/meter-readings/",
            {"readings": [reading(account, side.service, str(100 + index), "shared-1")]},
        )
        return response.status_code, response.json()

    outcomes = run_parallel(send, WORKERS)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    statuses = [o.value[0] for o in outcomes]
    assert statuses == [200] * WORKERS, [o.value for o in outcomes]
    bodies = [o.value[1] for o in outcomes]
    assert sum(b["accepted"] for b in bodies) == 1
    assert sum(b["duplicates"] for b in bodies) == WORKERS - 1
    assert all(b["errors"] == [] for b in bodies), bodies
    stored = MeterReading.objects.get(external_id="shared-1")
    assert stored.consumption == Decimal("0")  # a meter's first reading is its baseline
