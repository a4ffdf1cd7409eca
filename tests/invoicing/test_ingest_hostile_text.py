"""NUL characters, invalid UTF-8 and over-long text in usage and meter-reading input: a file
is refused naming the line, a record of an API batch is refused alone; never a 500 nor a
PostgreSQL "invalid byte sequence"."""

import io
import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from invoicing import services
from invoicing.exceptions import MalformedFile
from invoicing.ingest import (
    meter_readings_ingest_file,
    meter_readings_ingest_records,
    usage_ingest_file,
    usage_ingest_records,
)
from invoicing.ingest_parallel import usage_ingest_path
from invoicing.models import Meter, MeterReading, UsageRecord
from tests.api.conftest import make_side
from tests.api.helpers import error_of

USAGE_HEADER = b"account,service,quantity,occurred_at,external_id\n"


@pytest.fixture(autouse=True)
def subscribed(account, service, subscribe):
    """Usage needs a subscription on its day (``no_subscription``)."""
    return subscribe(account, service, price="1")


def subscribe_side(side):
    tariff = services.tariff_create(
        service=side.service, kind="per_unit", price="1", valid_from=date(2026, 1, 1)
    )
    services.subscription_create(account=side.account, tariff=tariff, starts_on=date(2026, 1, 1))


READINGS_HEADER = b"account,service,reading,taken_at,external_id,meter\n"


def usage_file(account, service, middle: bytes) -> bytes:
    good = f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,".encode()
    return USAGE_HEADER + good + b"u1\n" + good + middle + b"\n" + good + b"u3\n"


def readings_file(account, service, middle: bytes) -> bytes:
    good = f"{account.pk},{service.pk},".encode()
    return (
        READINGS_HEADER
        + good
        + b"10,2026-01-05T10:00:00+03:00,r1,M1\n"
        + good
        + b"20,2026-01-06T10:00:00+03:00,"
        + middle
        + b",M1\n"
    )


@pytest.mark.parametrize(
    ("middle", "reason"),
    [
        (b"u\x002", "nul_byte"),
        (b"u\xff2", "invalid_utf8"),
        (b"\xed\xa0\x80", "invalid_utf8"),  # an encoded surrogate is not UTF-8 either
        (b"\xd0", "invalid_utf8"),  # cut in the middle of a character
    ],
)
def test_a_usage_file_with_a_nul_byte_or_bad_utf8_is_refused_naming_the_line(
    account, service, middle, reason
):
    with pytest.raises(MalformedFile) as refused:
        usage_ingest_file(stream=io.BytesIO(usage_file(account, service, middle)))
    assert refused.value.code == "malformed_file"
    assert refused.value.details == {"line": 3, "reason": reason}
    assert "Line 3" in refused.value.message
    assert UsageRecord.objects.count() == 0


def test_a_readings_file_with_a_nul_byte_is_refused_naming_the_line(account, service):
    with pytest.raises(MalformedFile) as refused:
        meter_readings_ingest_file(stream=io.BytesIO(readings_file(account, service, b"r\x002")))
    assert refused.value.details == {"line": 3, "reason": "nul_byte"}
    assert MeterReading.objects.count() == 0 and Meter.objects.count() == 0


def test_a_header_with_invalid_utf8_is_refused(account, service):
    with pytest.raises(MalformedFile) as refused:
        usage_ingest_file(stream=io.BytesIO(b"acc\xffount,service\n1,2\n"))
    assert refused.value.details == {"line": 1, "reason": "invalid_utf8"}


def test_the_line_is_counted_across_blocks(account, service):
    """A bad byte far into a file (past the first 1 MB block) is named by its own line."""
    good = f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,".encode()
    rows = b"".join(good + f"u{i}\n".encode() for i in range(40_000))
    data = USAGE_HEADER + rows + good + b"\xff\n"
    assert len(data) > 1 << 20
    with pytest.raises(MalformedFile) as refused:
        usage_ingest_file(stream=io.BytesIO(data))
    assert refused.value.details["line"] == 40_002
    assert UsageRecord.objects.count() == 0


def test_an_over_long_meter_serial_in_a_file_is_a_row_error(account, service):
    data = readings_file(account, service, b"r2").replace(
        b"20,2026-01-06T10:00:00+03:00,r2,M1", b"20,2026-01-06T10:00:00+03:00,r2," + b"M" * 65
    )
    result = meter_readings_ingest_file(stream=io.BytesIO(data))
    assert result.accepted == 1
    assert [(e.index, e.code) for e in result.errors] == [(2, "invalid_meter")]


@pytest.mark.parametrize("command", ["ingest_usage", "ingest_meter_readings"])
@pytest.mark.parametrize("middle", [b"u\x002", b"u\xff2"])
def test_the_commands_refuse_such_a_file_with_a_clear_message(
    account, service, tmp_path, command, middle
):
    path = tmp_path / "input.csv"
    maker = usage_file if command == "ingest_usage" else readings_file
    path.write_bytes(maker(account, service, middle))
    with pytest.raises(CommandError, match=r"malformed_file: Line 3 of the file"):
        call_command(command, str(path))
    assert UsageRecord.objects.count() == 0 and MeterReading.objects.count() == 0


def test_the_parallel_usage_ingest_names_the_line_in_the_whole_file(account, service, tmp_path):
    good = f"{account.pk},{service.pk},1,2026-01-05T10:00:00+03:00,".encode()
    rows = [good + f"p{i}\n".encode() for i in range(120_000)]
    rows[100_000] = good + b"p\x00\n"
    path = tmp_path / "big.csv"
    path.write_bytes(USAGE_HEADER + b"".join(rows))
    assert path.stat().st_size > 4 << 20  # large enough for parallel parts
    with pytest.raises(MalformedFile) as refused:
        usage_ingest_path(path=path, workers=2)
    assert refused.value.details == {"line": 100_002, "reason": "nul_byte"}
    assert UsageRecord.objects.count() == 0


# --------------------------------------------------------------------------- API records


def _record(owner, service, **fields):
    return {
        "account": owner.pk,
        "service": service.pk,
        "quantity": "1",
        "occurred_at": "2026-01-05T10:00:00+03:00",
        "external_id": "ok-1",
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"external_id": "a\x00b"}, "invalid_external_id"),
        ({"account": "1\x00"}, "invalid_account"),
        ({"quantity": "1\x00"}, "invalid_quantity"),
        ({"occurred_at": "2026-01-05\x00"}, "invalid_timestamp"),
        ({"external_id": "a\ud800"}, "invalid_external_id"),  # from Python callers
        ({"external_id": {"id": 1}}, "invalid_external_id"),
        ({"external_id": True}, "invalid_external_id"),
        ({"source": "s" * 101}, "invalid_source"),
        ({"source": ["x"]}, "invalid_source"),
    ],
)
def test_a_usage_record_with_unstorable_text_is_refused_alone(account, service, fields, code):
    records = [_record(account, service, external_id="good"), _record(account, service, **fields)]
    result = usage_ingest_records(records=records)
    assert result.accepted == 1
    assert [(e.index, e.code) for e in result.errors] == [(1, code)]
    assert list(UsageRecord.objects.values_list("external_id", flat=True)) == ["good"]


def test_an_integer_external_id_is_still_accepted(account, service):
    result = usage_ingest_records(records=[_record(account, service, external_id=12345)])
    assert (result.accepted, result.errors) == (1, [])
    assert UsageRecord.objects.get().external_id == "12345"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"meter": "M" * 65}, "invalid_meter"),
        ({"meter": "M\x00"}, "invalid_meter"),
        ({"external_id": "r\x00"}, "invalid_external_id"),
        ({"reading": "1\x00"}, "invalid_reading"),
    ],
)
def test_a_reading_with_unstorable_text_is_refused_alone(account, service, fields, code):
    reading = {
        "account": account.pk,
        "service": service.pk,
        "reading": "10",
        "taken_at": "2026-01-05T10:00:00+03:00",
        "external_id": "r1",
        **fields,
    }
    result = meter_readings_ingest_records(records=[reading])
    assert result.accepted == 0
    assert [(e.index, e.code) for e in result.errors] == [(0, code)]
    assert MeterReading.objects.count() == 0 and Meter.objects.count() == 0


def test_over_http_a_nul_in_a_usage_record_is_a_record_error_not_a_500(db):
    side = make_side("Ingest", funds="0")
    subscribe_side(side)
    good = _record(side.account, side.service, external_id="h1")
    bad = _record(side.account, side.service, external_id="h\x002")
    response = side.api.post("/api/v1/usage/", {"records": [good, bad]}, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "errors": [
            {
                "index": 1,
                "code": "invalid_external_id",
                "message": "external_id: Null characters are not allowed.",
            }
        ],
    }
    readings = {
        "readings": [
            {
                "account": side.account.pk,
                "service": side.service.pk,
                "reading": "1",
                "taken_at": "2026-01-05T10:00:00+03:00",
                "external_id": "m\x00",
            }
        ]
    }
    response = side.api.post("/api/v1/meter-readings/", readings, format="json")
    assert response.status_code == 200 and response.json()["errors"][0]["index"] == 0
    assert MeterReading.objects.count() == 0


def test_over_http_a_lone_surrogate_refuses_the_batch_naming_the_record(db):
    side = make_side("Ingest", funds="0")
    body = json.dumps({"records": [_record(side.account, side.service, external_id="a\ud800")]})
    response = side.api.post("/api/v1/usage/", body, content_type="application/json")
    assert error_of(response) == (400, "validation_error")
    assert response.json()["details"] == {
        "records": [
            "records[0].external_id: Unpaired surrogate characters are not allowed "
            "(the text is not valid Unicode)."
        ]
    }
    assert UsageRecord.objects.count() == 0
