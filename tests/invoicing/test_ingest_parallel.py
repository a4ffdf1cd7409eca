"""ingest_usage on a large file: parallel sessions, published by one transaction, same
result as one session."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper

from invoicing import ingest_parallel
from invoicing.exceptions import MalformedFile
from invoicing.ingest_parallel import usage_ingest_path
from invoicing.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = 2000


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    """Split even a test-sized file."""
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 1024)


@pytest.fixture(autouse=True)
def parts_only(monkeypatch):
    """These tests are about the parts and their publication: a clean file would otherwise
    be COPYed straight into the table by one session (test_ingest_direct.py)."""
    monkeypatch.setattr(ingest_parallel, "usage_ingest_file_direct", lambda **kwargs: None)


@pytest.fixture(autouse=True)
def subscribed(account, service, subscribe):
    """Usage needs a subscription on its day (``no_subscription``)."""
    return subscribe(account, service, price="1")


def write(path, account, service, rows):
    lines = ["account,service,quantity,occurred_at,external_id"]
    lines += [f"{account.pk},{service.pk},{q},2026-01-05T10:00:00+03:00,{ext}" for q, ext in rows]
    path.write_text("\n".join(lines) + "\n")


def test_parallel_ingest_reports_file_rows_and_stores_every_valid_record(
    account, service, tmp_path
):
    rows = [("1.5", f"r{i}") for i in range(ROWS)]
    rows[10] = ("-1", "bad-early")  # data row 11, first part
    rows[1990] = ("x", "bad-late")  # data row 1991, second part
    rows[1500] = ("2", "r1499")  # data row 1501 repeats row 1500's id: same part
    write(tmp_path / "usage.csv", account, service, rows)
    assert ingest_parallel._plan(tmp_path / "usage.csv", 2) is not None  # really split

    result = usage_ingest_path(path=tmp_path / "usage.csv", workers=2, source="t")

    assert [(e.index, e.code) for e in result.errors] == [
        (11, "negative_quantity"),
        (1991, "invalid_quantity"),
    ]
    assert (result.received, result.accepted, result.duplicates) == (ROWS, ROWS - 3, 1)
    assert UsageRecord.objects.count() == ROWS - 3


def test_parallel_ingest_stores_nothing_when_one_part_is_malformed(account, service, tmp_path):
    rows = [("1.5", f"r{i}") for i in range(ROWS)]
    write(tmp_path / "usage.csv", account, service, rows)
    with (tmp_path / "usage.csv").open("a") as out:
        out.write(f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,tail,extra,columns\n")

    with pytest.raises(MalformedFile):
        usage_ingest_path(path=tmp_path / "usage.csv", workers=2)
    assert UsageRecord.objects.count() == 0


def test_parallel_ingest_with_an_id_shared_across_parts_counts_a_duplicate(
    account, service, tmp_path
):
    rows = [("1.5", f"r{i}") for i in range(ROWS)]
    rows[ROWS - 1] = ("9", "r0")  # the last row (second part) repeats the first one's id
    write(tmp_path / "usage.csv", account, service, rows)

    result = usage_ingest_path(path=tmp_path / "usage.csv", workers=2)

    assert (result.accepted, result.duplicates, result.errors) == (ROWS - 1, 1, [])
    assert UsageRecord.objects.count() == ROWS - 1
    assert UsageRecord.objects.get(external_id="r0").quantity == Decimal("1.5")  # the first


@pytest.fixture(autouse=True)
def load_table_left_empty():
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM invoicing_usageload")
        assert cursor.fetchone()[0] == 0


def test_parallel_ingest_stores_nothing_when_a_part_dies_after_the_others_finished(
    account, service, tmp_path, monkeypatch
):
    """A worker dies (here: its commit raises) after the other part has finished and
    committed: nothing of the file is stored, and a rerun stores all of it once."""
    rows = [("1.5", f"r{i}") for i in range(ROWS)]
    write(tmp_path / "usage.csv", account, service, rows)
    real_ingest_file = ingest_parallel.usage_ingest_file
    last_part: list[int] = []
    committed = threading.Event()

    def ingest_part(*, stream, **kwargs):
        start = stream.raw._start
        if start == max(
            start for start, _end, _rows in ingest_parallel._plan(tmp_path / "usage.csv", 2)[1]
        ):
            last_part.append(threading.get_ident())
        return real_ingest_file(stream=stream, **kwargs)

    real_commit = BaseDatabaseWrapper.commit

    def commit(self):
        if last_part and threading.get_ident() == last_part[0]:
            committed.wait(10)  # the other part is done
            self.connection.rollback()  # the server ends the dead worker's transaction
            raise RuntimeError("worker killed")
        real_commit(self)
        if threading.current_thread() is not threading.main_thread():
            committed.set()

    monkeypatch.setattr(ingest_parallel, "usage_ingest_file", ingest_part)
    monkeypatch.setattr(BaseDatabaseWrapper, "commit", commit)
    with pytest.raises(RuntimeError, match="worker killed"):
        usage_ingest_path(path=tmp_path / "usage.csv", workers=2)
    assert last_part and committed.is_set()  # it really died after the other committed
    assert UsageRecord.objects.count() == 0

    monkeypatch.setattr(BaseDatabaseWrapper, "commit", real_commit)
    result = usage_ingest_path(path=tmp_path / "usage.csv", workers=2)
    assert (result.accepted, result.duplicates, result.errors) == (ROWS, 0, [])
    assert UsageRecord.objects.count() == ROWS
