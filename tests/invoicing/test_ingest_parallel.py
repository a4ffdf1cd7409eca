"""ingest_usage on a large file: parallel sessions, committed together, same result as one."""

import pytest

from invoicing import ingest_parallel
from invoicing.exceptions import MalformedFile
from invoicing.ingest_parallel import usage_ingest_path
from invoicing.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)
ROWS = 2000


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    """Split even a test-sized file, and give up quickly on parts that cannot meet."""
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 1024)
    monkeypatch.setattr(ingest_parallel, "MIN_PATIENCE", 1.0)


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


def test_parallel_ingest_with_an_id_shared_across_parts_falls_back_to_one_session(
    account, service, tmp_path
):
    rows = [("1.5", f"r{i}") for i in range(ROWS)]
    rows[ROWS - 1] = ("1.5", "r0")  # the last row (second part) repeats the first one's id
    write(tmp_path / "usage.csv", account, service, rows)

    result = usage_ingest_path(path=tmp_path / "usage.csv", workers=2)

    assert (result.accepted, result.duplicates, result.errors) == (ROWS - 1, 1, [])
    assert UsageRecord.objects.count() == ROWS - 1
