"""Bulk ingest: per-record errors, duplicates, nothing else lost, never a half-written batch."""

import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account
from invoicing.exceptions import MalformedFile, TooManyRecords
from invoicing.ingest import (
    meter_readings_ingest_records,
    usage_ingest_file,
    usage_ingest_records,
)
from invoicing.models import MeterReading, UsageRecord
from tests.factories import AccountFactory, BrandFactory, ServiceFactory


def record(account, service, quantity="1.5", at="2026-01-10T10:00:00+03:00", ext="r1"):
    return {
        "account": account if isinstance(account, int | str) else account.pk,
        "service": service if isinstance(service, int | str) else service.pk,
        "quantity": quantity,
        "occurred_at": at,
        "external_id": ext,
    }


@pytest.fixture(autouse=True)
def subscribed(account, service, subscribe):
    """``account`` takes ``service`` on every day these tests use: usage needs a subscription
    (``no_subscription``, see test_usage_without_subscription.py)."""
    return subscribe(
        account, service, price="1", valid_from=date(2024, 1, 1), starts_on=date(2024, 1, 1)
    )


def codes(result):
    return [(error.index, error.code) for error in result.errors]


def test_usage_ingest_keeps_valid_records_and_reports_each_bad_one(account, service):
    other_brand_service = ServiceFactory(brand=BrandFactory())
    closed = AccountFactory(brands=[service.brand])
    Account.objects.filter(pk=closed.pk).update(status=Account.Status.CLOSED)
    records = [
        record(account, service, "10", ext="ok-1"),  # 0
        record("abc", service, ext="e1"),  # 1 wrong type
        record(999999999, service, ext="e2"),  # 2 unknown account
        record(account, 999999999, ext="e3"),  # 3 unknown service
        record(account, service, "-5", ext="e4"),  # 4 negative quantity
        record(account, service, "1.1234567", ext="e5"),  # 5 too many decimals
        record(account, service, 1.5, ext="e6"),  # 6 a float
        record(account, service, "abc", ext="e7"),  # 7 not a number
        record(account, service, at="2026-02-30T10:00:00+03:00", ext="e8"),  # 8 no such day
        record(account, service, at="yesterday", ext="e9"),  # 9
        record(account, service, ext=""),  # 10 no external id
        record(account, other_brand_service, ext="e11"),  # 11 brand not linked
        record(closed, service, ext="e12"),  # 12 closed account
        "not an object",  # 13
        record(account, service, "2.5", ext="ok-2"),  # 14
        record(account, service, "2.5", ext="ok-2"),  # 15 duplicate within the batch
        record(account, service, at="2099-01-01T00:00:00Z", ext="e16"),  # 16 future
        record(account, service, "0.000001", at="2026-01-10 10:00", ext="ok-3"),  # 17 local time
    ]
    result = usage_ingest_records(records=records)
    assert codes(result) == [
        (1, "invalid_account"),
        (2, "unknown_account"),
        (3, "unknown_service"),
        (4, "negative_quantity"),
        (5, "invalid_quantity"),
        (6, "invalid_quantity"),
        (7, "invalid_quantity"),
        (8, "invalid_timestamp"),
        (9, "invalid_timestamp"),
        (10, "invalid_external_id"),
        (11, "brand_not_linked"),
        (12, "account_closed"),
        (13, "invalid_record"),
        (16, "future_timestamp"),
    ]
    assert all(error.message for error in result.errors)
    assert (result.accepted, result.duplicates) == (3, 1)
    stored = {r.external_id: r for r in UsageRecord.objects.all()}
    assert set(stored) == {"ok-1", "ok-2", "ok-3"}
    assert stored["ok-1"].quantity == Decimal("10")
    assert stored["ok-3"].occurred_at.isoformat() == "2026-01-10T07:00:00+00:00"
    assert result.as_dict()["errors"][0] == {
        "index": 1,
        "code": "invalid_account",
        "message": "account must be an account id.",
    }


def test_usage_ingest_counts_duplicates_of_stored_records(account, service):
    first = usage_ingest_records(records=[record(account, service, ext=f"x{i}") for i in range(3)])
    again = usage_ingest_records(records=[record(account, service, ext=f"x{i}") for i in range(5)])
    assert (first.accepted, first.duplicates) == (3, 0)
    assert (again.accepted, again.duplicates, again.errors) == (2, 3, [])
    assert UsageRecord.objects.count() == 5


def test_usage_ingest_partner_scope_hides_other_brands(account, service):
    foreign = ServiceFactory(brand=BrandFactory())
    foreign_account = AccountFactory(brands=[foreign.brand])
    result = usage_ingest_records(
        records=[
            record(account, foreign, ext="a"),
            record(foreign_account, service, ext="b"),
            record(account, service, ext="c"),
        ],
        brand_ids=[service.brand_id],
    )
    assert codes(result) == [(0, "unknown_service"), (1, "unknown_account")]
    assert result.accepted == 1


def test_usage_ingest_refuses_more_than_the_limit(account, service):
    with pytest.raises(TooManyRecords):
        usage_ingest_records(
            records=[record(account, service, ext=str(i)) for i in range(3)], max_records=2
        )
    assert UsageRecord.objects.count() == 0


def test_usage_ingest_file_reports_data_rows(account, service):
    csv = (
        "account,service,quantity,occurred_at,external_id\n"
        f"{account.pk},{service.pk},1.25,2026-01-05T10:00:00+03:00,f1\n"
        f"{account.pk},{service.pk},-1,2026-01-05T10:00:00+03:00,f2\n"
        f'"{account.pk}",{service.pk},"3",2026-01-05T10:00:00Z,"f,3"\n'
    )
    result = usage_ingest_file(stream=io.BytesIO(csv.encode()), source="test")
    assert (result.received, result.accepted) == (3, 2)
    assert codes(result) == [(2, "negative_quantity")]
    assert set(UsageRecord.objects.values_list("external_id", "source")) == {
        ("f1", "test"),
        ("f,3", "test"),
    }


def test_usage_ingest_malformed_file_writes_nothing(account, service):
    csv = (
        "account,service,quantity,occurred_at,external_id\n"
        f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,f1\n"
        f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,f2,surplus\n"
    )
    with pytest.raises(MalformedFile):
        usage_ingest_file(stream=io.BytesIO(csv.encode()))
    assert UsageRecord.objects.count() == 0
    with pytest.raises(MalformedFile):
        usage_ingest_file(stream=io.BytesIO(b"account,service,amount\n1,2,3\n"))


def test_ingest_usage_command(account, service, tmp_path, capsys):
    path = tmp_path / "usage.csv"
    path.write_text(
        "external_id,account,service,occurred_at,quantity\n"
        f"c1,{account.pk},{service.pk},2026-01-05T10:00:00+03:00,4\n"
        f"c2,{account.pk},{service.pk},2026-01-05T10:00:00+03:00,x\n"
    )
    call_command("ingest_usage", str(path))
    out = capsys.readouterr().out
    assert "2 rows: 1 accepted, 0 duplicates, 1 refused" in out
    assert "row 2: invalid_quantity" in out
    assert UsageRecord.objects.get().source == "file:usage.csv"
    with pytest.raises(CommandError):
        call_command("ingest_usage", str(tmp_path / "missing.csv"))


def reading(account, service, value, at, ext):
    return {
        "account": account.pk,
        "service": service.pk,
        "reading": value,
        "taken_at": at,
        "external_id": ext,
    }


def test_meter_readings_ingest_refuses_readings_going_backwards(account, service):
    first = meter_readings_ingest_records(
        records=[
            reading(account, service, "100", "2026-01-31T10:00:00+03:00", "m1"),
            reading(account, service, "150", "2026-02-28T10:00:00+03:00", "m2"),
        ]
    )
    assert (first.accepted, first.errors) == (2, [])
    result = meter_readings_ingest_records(
        records=[
            reading(account, service, "140", "2026-03-31T10:00:00+03:00", "m3"),  # below 150
            reading(account, service, "160", "2026-02-15T10:00:00+03:00", "m4"),  # above next
            reading(account, service, "120", "2026-02-15T10:00:00+03:00", "m5"),  # fits between
            reading(account, service, "-1", "2026-04-30T10:00:00+03:00", "m6"),
            reading(account, service, "170", "2026-04-30T10:00:00+03:00", "m1"),  # duplicate
            reading(account, service, "x", "2026-04-30T10:00:00+03:00", "m7"),
        ]
    )
    assert codes(result) == [
        (0, "reading_backwards"),
        (1, "reading_backwards"),
        (3, "negative_reading"),
        (5, "invalid_reading"),
    ]
    assert (result.accepted, result.duplicates) == (1, 1)
    series = list(MeterReading.objects.order_by("taken_at").values_list("reading", "consumption"))
    # The late reading of 15 Feb splits the step to 150: 20 then 30.
    assert series == [
        (Decimal("100"), Decimal("0")),
        (Decimal("120"), Decimal("20")),
        (Decimal("150"), Decimal("30")),
    ]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("occurred_at", "2026-01-10T25:00:00+03:00", "invalid_timestamp"),
        ("occurred_at", "2026-13-10T10:00:00+03:00", "invalid_timestamp"),
        ("occurred_at", "2026-01-00T10:00:00+03:00", "invalid_timestamp"),
        ("occurred_at", "2025-02-29T10:00:00+03:00", "invalid_timestamp"),
        ("occurred_at", "2026-01-10", "invalid_timestamp"),
        ("occurred_at", "2026-01-10T10:00:61Z", "invalid_timestamp"),
        ("occurred_at", "now", "invalid_timestamp"),
        ("quantity", "1.2.3", "invalid_quantity"),
        ("quantity", "NaN", "invalid_quantity"),
        ("quantity", "Infinity", "invalid_quantity"),
        ("quantity", "1e-7", "invalid_quantity"),
        ("occurred_at", "1899-12-31T10:00:00Z", "invalid_timestamp"),
        ("quantity", "", "invalid_quantity"),
        ("quantity", None, "invalid_quantity"),
        ("quantity", " -1", "negative_quantity"),
        ("quantity", "123456789012345", "invalid_quantity"),
        ("account", "12a", "invalid_account"),
        ("account", "", "invalid_account"),
        ("account", None, "invalid_account"),
        ("service", "-1", "invalid_service"),
    ],
)
def test_usage_ingest_refuses_malformed_values(account, service, field, value, code):
    bad = record(account, service, ext="bad")
    bad[field] = value
    result = usage_ingest_records(records=[bad, record(account, service, ext="good")])
    assert codes(result) == [(0, code)]
    assert result.accepted == 1
    assert list(UsageRecord.objects.values_list("external_id", flat=True)) == ["good"]


@pytest.mark.parametrize(
    ("moment", "utc"),
    [
        ("2024-02-29T10:00:00+03:00", "2024-02-29T07:00:00+00:00"),
        ("2026-01-10T10:00:00.123456Z", "2026-01-10T10:00:00.123456+00:00"),
        ("2026-01-10 10:00", "2026-01-10T07:00:00+00:00"),
        ("2026-01-10T10:00:00-0230", "2026-01-10T12:30:00+00:00"),
        ("2026-01-10T10:00+05", "2026-01-10T05:00:00+00:00"),
    ],
)
def test_usage_ingest_reads_iso_timestamps(account, service, moment, utc):
    result = usage_ingest_records(records=[record(account, service, at=moment, ext="t")])
    assert result.errors == []
    assert UsageRecord.objects.get().occurred_at.isoformat() == utc


@pytest.mark.parametrize(
    ("quantity", "stored"),
    [("1.", "1"), (".5", "0.5"), ("1e3", "1000"), (" 12 ", "12"), ("+7.25", "7.25")],
)
def test_usage_ingest_reads_numbers_as_postgresql_does(account, service, quantity, stored):
    clean = usage_ingest_records(records=[record(account, service, quantity, ext="clean")])
    # The same value in a batch with an unreadable one (read value by value): same outcome.
    dirty = usage_ingest_records(
        records=[record(account, service, quantity, ext="dirty"), record("x1", service, ext="x")]
    )
    assert (clean.accepted, clean.errors) == (1, [])
    assert (dirty.accepted, codes(dirty)) == (1, [(1, "invalid_account")])
    values = set(UsageRecord.objects.values_list("quantity", flat=True))
    assert values == {Decimal(stored)}


def test_usage_ingest_reads_zone_names(account, service):
    result = usage_ingest_records(
        records=[record(account, service, at="2026-01-10T10:00:00 Asia/Yekaterinburg", ext="z")]
    )
    assert result.errors == []
    assert UsageRecord.objects.get().occurred_at.isoformat() == "2026-01-10T05:00:00+00:00"


def test_usage_ingest_file_with_an_unreadable_value_keeps_the_rest(account, service):
    csv = (
        "account,service,quantity,occurred_at,external_id\n"
        f"{account.pk},{service.pk},1.25,2026-01-05T10:00:00+03:00,f1\n"
        f"{account.pk},{service.pk},abc,2026-01-05T10:00:00+03:00,f2\n"
        f"{account.pk},{service.pk},2,2026-01-05T25:00:00+03:00,f3\n"
        f"{account.pk},{service.pk},1e3,2026-01-06T10:00:00+03:00,f4\n"
    )
    result = usage_ingest_file(stream=io.BytesIO(csv.encode()))
    assert (result.received, result.accepted) == (4, 2)
    assert codes(result) == [(2, "invalid_quantity"), (3, "invalid_timestamp")]
    assert set(UsageRecord.objects.values_list("external_id", flat=True)) == {"f1", "f4"}


def _own_locks() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.parametrize("kind", ["readings", "usage"])
def test_batches_in_one_transaction_take_no_more_locks_as_they_go(account, service, kind):
    """A spreadsheet imported row by row runs one ingest per row in one transaction (as
    this test does, inside the test's): the staging table is reused, not created anew
    each time, so the locks held do not grow with the rows (they filled the server's
    lock table at 10,000 rows and broke every other session)."""

    def ingest(n: int) -> None:
        day = f"{date(2026, 1, 1) + timedelta(days=n)}T10:00:00+03:00"
        if kind == "readings":
            meter_readings_ingest_records(
                records=[reading(account, service, str(10 + n), day, f"r{n}")]
            )
        else:
            usage_ingest_records(records=[record(account, service, at=day, ext=f"u{n}")])

    ingest(0)
    before = _own_locks()
    for n in range(1, 41):
        ingest(n)
    assert _own_locks() - before < 5
    model = MeterReading if kind == "readings" else UsageRecord
    assert model.objects.count() == 41
