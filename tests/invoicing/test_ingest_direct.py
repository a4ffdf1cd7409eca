"""A clean usage file is COPYed straight into the table (``invoicing.ingest.direct``); any
other goes the staged way. Either way the outcome is the staged path's: the same rows
stored with the same values, the same errors, the same duplicates, whole file or nothing."""

import io
import threading
from datetime import date

import psycopg
import pytest
from django.db import connection, transaction

from accounts.models import Account
from invoicing import ingest_parallel, services
from invoicing.ingest import direct, usage_ingest_file
from invoicing.ingest import usage as usage_module
from invoicing.ingest_parallel import usage_ingest_path
from invoicing.models import UsageRecord
from tests.factories import AccountFactory, BrandFactory, ServiceFactory

HEADER = "account,service,quantity,occurred_at,external_id"


@pytest.fixture(autouse=True)
def subscribed(account, service, subscribe):
    return subscribe(
        account, service, price="1", valid_from=date(2024, 1, 1), starts_on=date(2024, 1, 1)
    )


@pytest.fixture
def taken(monkeypatch):
    """Whether each ingest's direct attempt took the file (True) or gave way (False)."""
    attempts: list[bool] = []
    real = usage_module.usage_direct_file

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        attempts.append(result is not None)
        return result

    monkeypatch.setattr(usage_module, "usage_direct_file", spy)
    return attempts


class _Undo(Exception):
    pass


def stored():
    """The stored rows (by external id: neither path promises the ids' order)."""
    return list(
        UsageRecord.objects.order_by("service_id", "external_id").values_list(
            "account_id", "service_id", "quantity", "occurred_at", "external_id", "source"
        )
    )


def outcome(text, *, direct_first, **kwargs):
    """The result and the table after ingesting ``text``, then undone."""
    try:
        with transaction.atomic():
            result = usage_ingest_file(
                stream=io.BytesIO(text.encode()), direct=direct_first, **kwargs
            )
            rows = stored()
            raise _Undo
    except _Undo:
        pass
    summary = (result.received, result.accepted, result.duplicates)
    return summary, [error.as_dict() for error in result.errors], rows


def assert_same_both_ways(text, taken, **kwargs):
    """The file gives the staged path's outcome when tried directly first; which path
    took it (True: direct) is returned."""
    before = stored()
    first = outcome(text, direct_first=True, **kwargs)
    assert len(taken) == 1
    staged = outcome(text, direct_first=False, **kwargs)
    assert len(taken) == 1  # the second one never tried
    assert first == staged
    assert stored() == before  # both undone
    return taken[0], staged


def lines(*rows, header=HEADER):
    return "\n".join([header, *rows]) + "\n"


def test_direct_ingest_takes_a_clean_file_and_stores_what_staging_would(account, service, taken):
    text = lines(
        f"{account.pk},{service.pk},10,2026-01-10T10:00:00+03:00,c1",
        f"{account.pk},{service.pk},0.000001,2026-01-10T07:00:00Z,c2",
        f"{account.pk},{service.pk},99999999999999.999999,2026-01-10 10:00,c3",  # local time
        f"{account.pk},{service.pk},2.5,2026-01-11T23:59:59.123456-05:00,c4",
        f"{account.pk},{service.pk},0,2026-01-12T00:30+03:00,with space and \\ / ;",
    )
    direct_taken, (summary, errors, rows) = assert_same_both_ways(text, taken)
    assert direct_taken
    assert (summary, errors) == ((5, 5, 0), [])
    assert [row[4] for row in rows] == ["c1", "c2", "c3", "c4", "with space and \\ / ;"]
    assert {row[5] for row in rows} == {"file"}


def test_direct_ingest_keeps_a_source_column_and_stores_the_file(account, service, taken):
    text = lines(
        f"s1,{service.pk},1,2026-01-10T10:00:00+03:00,{account.pk},meter-gateway",
        f"s2,{service.pk},2,2026-01-10T10:00:00+03:00,{account.pk},other",
        header="external_id,service,quantity,occurred_at,account,source",
    )
    direct_taken, (summary, _errors, rows) = assert_same_both_ways(text, taken, source="api")
    assert direct_taken
    assert summary == (2, 2, 0)
    assert [row[5] for row in rows] == ["meter-gateway", "other"]


def test_direct_ingest_of_an_empty_file_stores_nothing(taken):
    direct_taken, (summary, _errors, rows) = assert_same_both_ways(lines(), taken)
    assert direct_taken and summary == (0, 0, 0) and rows == []


def store(account, service, external_id):
    usage_ingest_file(
        stream=io.BytesIO(
            lines(f"{account.pk},{service.pk},7,2026-01-09T10:00:00+03:00,{external_id}").encode()
        )
    )


def test_direct_ingest_gives_way_to_staging_for_a_duplicate_of_a_stored_record(
    account, service, taken, monkeypatch
):
    store(account, service, "stored")
    taken.clear()
    # Past the probed first lines: the COPY itself meets the unique constraint.
    monkeypatch.setattr(direct, "PROBE_LINES", 1)
    text = lines(
        f"{account.pk},{service.pk},1,2026-01-10T10:00:00+03:00,new-1",
        f"{account.pk},{service.pk},2,2026-01-10T11:00:00+03:00,stored",
        f"{account.pk},{service.pk},3,2026-01-10T12:00:00+03:00,new-2",
    )
    direct_taken, (summary, errors, rows) = assert_same_both_ways(text, taken)
    assert not direct_taken
    assert (summary, errors) == ((3, 2, 1), [])
    assert [row[4] for row in rows] == ["new-1", "new-2", "stored"]


def test_direct_ingest_probes_the_first_lines_for_a_file_sent_again(account, service, taken):
    store(account, service, "stored")
    taken.clear()
    text = lines(f"{account.pk},{service.pk},2,2026-01-10T11:00:00+03:00,stored")
    direct_taken, (summary, _errors, _rows) = assert_same_both_ways(text, taken)
    assert not direct_taken and summary == (1, 0, 1)


def test_direct_ingest_gives_way_to_staging_for_a_duplicate_within_the_file(
    account, service, taken
):
    text = lines(
        f"{account.pk},{service.pk},1,2026-01-10T10:00:00+03:00,twice",
        f"{account.pk},{service.pk},2,2026-01-10T11:00:00+03:00,once",
        f"{account.pk},{service.pk},3,2026-01-10T12:00:00+03:00,twice",
    )
    direct_taken, (summary, errors, rows) = assert_same_both_ways(text, taken)
    assert not direct_taken
    assert (summary, errors) == ((3, 2, 1), [])
    assert [(row[2], row[4]) for row in rows] == [(2, "once"), (1, "twice")]  # the first wins


def other_brand_service():
    return ServiceFactory(brand=BrandFactory())


@pytest.mark.parametrize(
    ("row", "code"),
    [
        ("{a},{s},1,2026-01-10T10:00:00+03:00,x", None),  # the valid neighbour alone
        ("999999999,{s},1,2026-01-10T10:00:00+03:00,x", "unknown_account"),
        ("{a},999999999,1,2026-01-10T10:00:00+03:00,x", "unknown_service"),
        ("{a},{other},1,2026-01-10T10:00:00+03:00,x", "brand_not_linked"),
        ("{closed},{s},1,2026-01-10T10:00:00+03:00,x", "account_closed"),
        ("{a},{unsubscribed},1,2026-01-10T10:00:00+03:00,x", "no_subscription"),
        ("{a},{s},abc,2026-01-10T10:00:00+03:00,x", "invalid_quantity"),
        ("{a},{s},-1,2026-01-10T10:00:00+03:00,x", "negative_quantity"),
        ("{a},{s},1.1234567,2026-01-10T10:00:00+03:00,x", "invalid_quantity"),
        ("{a},{s},100000000000000,2026-01-10T10:00:00+03:00,x", "invalid_quantity"),
        ("{a},{s},1e3,2026-01-10T10:00:00+03:00,x", None),  # valid, but staged
        ("{a},{s},007,2026-01-10T10:00:00+03:00,x", None),  # valid, but staged
        ("{a},{s},1,2026-02-30T10:00:00+03:00,x", "invalid_timestamp"),
        ("{a},{s},1,2026-01-10T24:00:00+03:00,x", None),  # midnight, read by PostgreSQL
        ("{a},{s},1,2026-01-10T25:00:00+03:00,x", "invalid_timestamp"),
        ("{a},{s},1,1899-12-31T23:00:00+03:00,x", "invalid_timestamp"),
        ("{a},{s},1,2099-01-01T00:00:00Z,x", "future_timestamp"),
        ("{a},{s},1,yesterday,x", "invalid_timestamp"),
        ("{a},{s},1,2026-01-10T10:00:00+03:00,", "invalid_external_id"),
        ("{a},{s},1,2026-01-10T10:00:00+03:00,ид-кириллицей", None),  # valid, but staged
        ('{a},{s},1,2026-01-10T10:00:00+03:00,"quoted, with a comma"', None),
        ("{a},{s},1,2026-01-10T10:00:00+03:00," + "x" * 101, "invalid_external_id"),
    ],
)
def test_direct_ingest_gives_way_to_staging_for_any_other_row(
    account, service, subscribe, taken, row, code
):
    closed = AccountFactory(brands=[service.brand])
    subscribe(closed, service, price="1", starts_on=date(2024, 1, 1))
    Account.objects.filter(pk=closed.pk).update(status=Account.Status.CLOSED)
    unsubscribed = ServiceFactory(brand=service.brand)
    values = {
        "a": account.pk,
        "s": service.pk,
        "other": other_brand_service().pk,
        "closed": closed.pk,
        "unsubscribed": unsubscribed.pk,
    }
    text = lines(
        f"{account.pk},{service.pk},5,2026-01-09T10:00:00+03:00,first",
        row.format(**values),
        f"{account.pk},{service.pk},6,2026-01-11T10:00:00+03:00,last",
    )
    direct_taken, (_summary, errors, rows) = assert_same_both_ways(text, taken)
    if code is None:
        assert errors == []
        assert len(rows) == 3
    else:
        assert not direct_taken
        assert [(error["index"], error["code"]) for error in errors] == [(2, code)]
        assert [row[4] for row in rows] == ["first", "last"]
    if row == "{a},{s},1,2026-01-10T10:00:00+03:00,x":
        assert direct_taken  # the plain row: only its neighbours' shapes matter
    elif code is None:
        assert not direct_taken


def test_direct_ingest_checks_a_subscription_that_starts_within_the_file_row_by_row(
    account, service, make_service, subscribe, taken
):
    late = make_service()
    subscribe(account, late, price="1", starts_on=date(2026, 1, 10), ends_on=date(2026, 1, 20))
    inside = lines(
        f"{account.pk},{service.pk},1,2026-01-01T10:00:00+03:00,u1",
        f"{account.pk},{late.pk},2,2026-01-10T00:00:00+03:00,u2",  # its first day
        f"{account.pk},{late.pk},3,2026-01-20T23:59:59+03:00,u3",  # its last day
        f"{account.pk},{service.pk},4,2026-01-31T10:00:00+03:00,u4",
    )
    direct_taken, (summary, errors, _rows) = assert_same_both_ways(inside, taken)
    assert direct_taken and (summary, errors) == ((4, 4, 0), [])

    taken.clear()
    outside = lines(
        f"{account.pk},{service.pk},1,2026-01-01T10:00:00+03:00,u1",
        f"{account.pk},{late.pk},2,2026-01-09T23:59:59+03:00,u2",  # a second too early
        f"{account.pk},{late.pk},3,2026-01-20T21:00:00Z,u3",  # 00:00 on the 21st in Moscow
        f"{account.pk},{service.pk},4,2026-01-31T10:00:00+03:00,u4",
    )
    direct_taken, (summary, errors, _rows) = assert_same_both_ways(outside, taken)
    assert not direct_taken
    assert [(error["index"], error["code"]) for error in errors] == [
        (2, "no_subscription"),
        (3, "no_subscription"),
    ]


def test_direct_ingest_keeps_to_the_brand_scope(account, service, taken):
    text = lines(f"{account.pk},{service.pk},1,2026-01-10T10:00:00+03:00,x")
    direct_taken, (_summary, errors, _rows) = assert_same_both_ways(
        text, taken, brand_ids=[service.brand_id]
    )
    assert direct_taken and errors == []
    taken.clear()
    direct_taken, (_summary, errors, _rows) = assert_same_both_ways(
        text, taken, brand_ids=[BrandFactory().pk]
    )
    assert not direct_taken and [error["code"] for error in errors] == ["unknown_service"]


def test_direct_ingest_leaves_the_session_time_zone_as_it_was(account, service, taken):
    with connection.cursor() as cursor:
        cursor.execute("SHOW TimeZone")
        zone = cursor.fetchone()[0]
        usage_ingest_file(
            stream=io.BytesIO(lines(f"{account.pk},{service.pk},1,2026-01-10 10:00,x").encode())
        )
        cursor.execute("SHOW TimeZone")
        assert cursor.fetchone()[0] == zone
    assert taken == [True]
    assert UsageRecord.objects.get().occurred_at.isoformat() == "2026-01-10T07:00:00+00:00"


@pytest.mark.django_db(transaction=True)
def test_ingest_path_copies_a_large_clean_file_directly_with_the_parts_outcome(
    account, service, tmp_path, monkeypatch
):
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 1024)
    path = tmp_path / "usage.csv"
    path.write_text(
        lines(
            *(
                f"{account.pk},{service.pk},{i % 7}.5,2026-01-05T10:{i % 60:02d}:00+03:00,r{i}"
                for i in range(3000)
            )
        )
    )
    assert ingest_parallel._plan(path, 2) is not None
    direct_result = usage_ingest_path(path=path, workers=2)
    direct_rows = stored()
    UsageRecord.objects.all().delete()
    monkeypatch.setattr(ingest_parallel, "usage_ingest_file_direct", lambda **kwargs: None)
    parts_result = usage_ingest_path(path=path, workers=2)
    assert direct_result == parts_result
    assert (direct_result.accepted, direct_result.errors) == (3000, [])
    assert direct_rows == stored()


@pytest.mark.django_db(transaction=True)
def test_direct_ingests_of_overlapping_files_in_parallel_store_each_record_once(
    account, service, taken
):
    """Two sessions COPY overlapping files at once: the second to reach a shared external
    id waits for the first; when it commits, the waiter gives way to staging and counts
    the shared records as duplicates."""

    def text(first, last):
        return lines(
            *(
                f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,p{i:05d}"
                for i in range(first, last)
            )
        ).encode()

    files = [text(0, 3000), text(2000, 5000)]
    results = [None, None]
    failures = []
    start = threading.Barrier(2)

    def run(number):
        try:
            start.wait(10)
            results[number] = usage_ingest_file(stream=io.BytesIO(files[number]))
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(number,)) for number in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert sum(result.accepted for result in results) == 5000
    assert sum(result.duplicates for result in results) == 1000
    assert all(result.errors == [] for result in results)
    assert UsageRecord.objects.count() == 5000
    assert UsageRecord.objects.values("external_id").distinct().count() == 5000
    assert True in taken  # at least one of them went straight in


def test_direct_ingest_gives_way_before_copying_when_the_first_lines_break_a_rule(
    account, service, taken, monkeypatch
):
    """A file of the wrong brand (or sent again) costs no COPY into the table."""
    statements = []
    real_copy = psycopg.Cursor.copy

    def copy(self, statement, *args, **kwargs):
        statements.append(str(statement))
        return real_copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", copy)
    text = lines(
        f"{account.pk},{other_brand_service().pk},1,2026-01-10T10:00:00+03:00,x",
        f"{account.pk},{service.pk},1,2026-01-10T11:00:00+03:00,y",
    )
    direct_taken, (_summary, errors, _rows) = assert_same_both_ways(text, taken)
    assert not direct_taken
    assert [(error["index"], error["code"]) for error in errors] == [(1, "brand_not_linked")]
    assert not any("invoicing_usagerecord" in statement for statement in statements)
    assert any("invoicing_stage" in statement for statement in statements)  # staged


def test_direct_ingest_checks_the_pairs_a_batch_at_a_time(
    account, service, make_service, subscribe, subscribed, taken, monkeypatch
):
    """The (account, service) pairs are checked against links and subscriptions a batch
    at a time (a month's file names every account of a brand): every batch counts, the
    last as much as the first, for the refusals and for the row-by-row subscriptions."""
    monkeypatch.setattr(direct, "PAIRS_BATCH", 2)
    monkeypatch.setattr(direct, "PROBE_LINES", 1)  # the rules after the COPY only
    others = [AccountFactory(brands=[service.brand]) for _ in range(4)]
    for other in others:
        services.subscription_create(
            account=other, tariff=subscribed.tariff, starts_on=date(2024, 1, 1)
        )
    rows = [
        f"{who.pk},{service.pk},{n},2026-01-{n:02d}T10:00:00+03:00,u{n}"
        for n, who in enumerate([account, *others], start=1)
    ]
    direct_taken, (summary, errors, stored_rows) = assert_same_both_ways(lines(*rows), taken)
    assert direct_taken and (summary, errors) == ((5, 5, 0), [])
    assert len(stored_rows) == 5

    # The last pair's account closed: refused, whichever batch holds it.
    taken.clear()
    Account.objects.filter(pk=others[-1].pk).update(status=Account.Status.CLOSED)
    direct_taken, (summary, errors, _rows) = assert_same_both_ways(lines(*rows), taken)
    assert not direct_taken
    assert [(error["index"], error["code"]) for error in errors] == [(5, "account_closed")]

    # A subscription starting within the file, in any batch, is checked row by row.
    taken.clear()
    late = make_service()
    subscribe(others[0], late, price="1", starts_on=date(2026, 1, 10))
    rows[-1] = f"{others[0].pk},{late.pk},9,2026-01-09T10:00:00+03:00,early"
    direct_taken, (summary, errors, _rows) = assert_same_both_ways(lines(*rows), taken)
    assert not direct_taken
    assert [(error["index"], error["code"]) for error in errors] == [(5, "no_subscription")]
    taken.clear()
    rows[-1] = f"{others[0].pk},{late.pk},9,2026-01-10T10:00:00+03:00,in-time"
    direct_taken, (summary, errors, _rows) = assert_same_both_ways(lines(*rows), taken)
    assert direct_taken and (summary, errors) == ((5, 5, 0), [])
