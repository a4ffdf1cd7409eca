"""Meter readings are placed batch by batch (whole series per batch), streamed from a server
cursor: the outcome is the same as placing the whole file at once, and the process holds
one batch, not the file."""

import io
import tracemalloc
from decimal import Decimal

import pytest
from django.db import connection, transaction

from invoicing.ingest import meter_readings_ingest_file
from invoicing.ingest import readings as readings_module
from invoicing.models import Meter, MeterReading
from tests.factories import AccountFactory, accounts_bulk
from tests.invoicing.reads import rows_read


def csv_file(rows):
    lines = ["account,service,reading,taken_at,external_id"]
    lines += [",".join(str(value) for value in row) for row in rows]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def outcome(result):
    return (
        result.received,
        result.accepted,
        result.duplicates,
        [(error.index, error.code) for error in result.errors],
    )


def stored():
    return sorted(
        MeterReading.objects.values_list(
            "account_id", "service_id", "external_id", "reading", "consumption"
        )
    )


def day(number):
    return f"2026-01-{number:02d}T12:00:00+03:00"


@pytest.fixture
def accounts(service):
    return [AccountFactory(brands=[service.brand]) for _ in range(4)]


def mixed_rows(accounts, service):
    """Four series interleaved in the file (out of time order within a series), a reading
    going backwards, a bad value, an external id repeated in another series (later in the
    file, but in an earlier series), and one repeated within its own series."""
    a, b, c, d = accounts
    s = service.pk
    return [
        (d.pk, s, "10", day(1), "d1"),  # 0
        (a.pk, s, "100", day(5), "a2"),  # 1
        (a.pk, s, "90", day(1), "a1"),  # 2
        (b.pk, s, "5", day(1), "b1"),  # 3
        (c.pk, s, "7", day(3), "c1"),  # 4
        (b.pk, s, "4", day(9), "b2"),  # 5: backwards
        (a.pk, s, "x", day(7), "a3"),  # 6: invalid_reading
        (d.pk, s, "30", day(9), "d2"),  # 7
        (a.pk, s, "130", day(9), "d2"),  # 8: d2 again, in series a (placed before d)
        (c.pk, s, "9", day(8), "c1"),  # 9: c1 again in its own series
        (c.pk, s, "12", day(12), "c3"),  # 10
        (b.pk, s, "8", day(12), "b3"),  # 11
    ]


def test_batched_placement_equals_one_batch(accounts, service, monkeypatch, db):
    rows = mixed_rows(accounts, service)
    whole = meter_readings_ingest_file(stream=csv_file(rows))
    whole_rows = stored()
    # Errors name data rows (1-based).
    assert outcome(whole) == (12, 8, 2, [(6, "reading_backwards"), (7, "invalid_reading")])
    MeterReading.objects.all().delete()
    Meter.objects.all().delete()
    # Batches of at least one series each, fetched three rows at a time.
    monkeypatch.setattr(readings_module, "READINGS_BATCH", 1)
    monkeypatch.setattr(readings_module, "_FETCH", 3)
    batched = meter_readings_ingest_file(stream=csv_file(rows))
    assert outcome(batched) == outcome(whole)
    assert stored() == whole_rows
    d = accounts[3]
    consumption = {
        (account, ext): used for account, _s, ext, _r, used in stored() if account == d.pk
    }
    assert consumption == {(d.pk, "d1"): Decimal("0"), (d.pk, "d2"): Decimal("20")}
    # The file's first d2 (series d) is the one stored, not series a's later one.
    assert MeterReading.objects.get(external_id="d2").account_id == d.pk
    # A second load of the same file: every reading a duplicate or refused as before.
    again = meter_readings_ingest_file(stream=csv_file(rows))
    assert (again.accepted, again.duplicates) == (0, 10)
    assert stored() == whole_rows


def test_a_series_longer_than_a_batch_stays_whole(account, service, monkeypatch, db):
    monkeypatch.setattr(readings_module, "READINGS_BATCH", 2)
    monkeypatch.setattr(readings_module, "_FETCH", 2)
    # Out of time order across the fetches: placed together, nothing goes backwards.
    rows = [
        (account.pk, service.pk, str(value), day(number), f"r{number}")
        for number, value in [(5, 50), (1, 10), (3, 30), (2, 20), (4, 40)]
    ]
    result = meter_readings_ingest_file(stream=csv_file(rows))
    assert outcome(result) == (5, 5, 0, [])
    steps = list(MeterReading.objects.order_by("taken_at").values_list("consumption", flat=True))
    assert steps == [Decimal(0)] + [Decimal(10)] * 4


def test_batches_bound_the_memory_held(service, monkeypatch, db):
    """Python's peak allocation while placing 3,000 series: batches of 200 readings hold
    a fraction of what the whole file does (the file's rows never all live at once)."""
    created = accounts_bulk(service.brand, 3000, "MEM")
    accounts = [acc.pk for acc in created]
    rows = []
    for account_id in accounts:
        rows.append((account_id, service.pk, "1.000", day(1), f"m{account_id}-0"))
        rows.append((account_id, service.pk, "3.500", day(20), f"m{account_id}-1"))
    content = csv_file(rows).getvalue()

    def peak(batch: int) -> int:
        MeterReading.objects.all().delete()
        Meter.objects.all().delete()
        monkeypatch.setattr(readings_module, "READINGS_BATCH", batch)
        monkeypatch.setattr(readings_module, "_FETCH", min(batch, 5000))
        tracemalloc.start()
        try:
            result = meter_readings_ingest_file(stream=io.BytesIO(content))
            used = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (result.accepted, result.errors) == (6000, [])
        return used

    whole, batched = peak(100_000), peak(200)
    assert batched < whole / 3, (batched, whole)


def test_a_batch_reads_only_its_own_meters_and_readings(service, db):
    """A batch's meters and stored readings are found key by key: a batch of two series
    among 200 metered accounts reads a handful of rows, not every meter and reading. With
    nested loops off (as the planner chose when statistics lagged behind a month-end
    file), the joins to the batch's arrays scanned both tables whole, batch after batch."""
    created = accounts_bulk(service.brand, 202, "OWN")
    others, (first, second) = created[:200], created[200:]
    rows = []
    for account in others:
        rows.append((account.pk, service.pk, "1.000", day(1), f"o{account.pk}-0"))
        rows.append((account.pk, service.pk, "3.000", day(9), f"o{account.pk}-1"))
    assert meter_readings_ingest_file(stream=csv_file(rows)).accepted == 400
    # The second series already has a reading: the batch reads it as its predecessor.
    meter_readings_ingest_file(stream=csv_file([(second.pk, service.pk, "5", day(2), "s0")]))
    batch = [
        (first.pk, service.pk, "10", day(3), "f1"),
        (first.pk, service.pk, "12", day(4), "f2"),
        (second.pk, service.pk, "9", day(5), "s1"),
        (others[0].pk, service.pk, "1.000", day(1), f"o{others[0].pk}-0"),  # a duplicate
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = off")
        meters_before = rows_read(cursor, "invoicing_meter")
        readings_before = rows_read(cursor, "invoicing_meterreading")
        result = meter_readings_ingest_file(stream=csv_file(batch))
        meters_read = rows_read(cursor, "invoicing_meter") - meters_before
        readings_read = rows_read(cursor, "invoicing_meterreading") - readings_before
    assert outcome(result) == (4, 3, 1, [])
    assert {ext: used for _a, _s, ext, _r, used in stored() if ext in {"f1", "f2", "s0", "s1"}} == {
        "f1": Decimal(0),
        "f2": Decimal(2),
        "s0": Decimal(0),
        "s1": Decimal(4),
    }
    # The batch's own rows: its meters and the stored readings it meets (3 and 3 here;
    # the joins read 403 and 1,204).
    assert meters_read <= 6, meters_read
    assert readings_read <= 6, readings_read
