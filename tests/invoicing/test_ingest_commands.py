"""The ingest commands: the same report for usage and meter readings, JSON on request."""

import json

from django.core.management import call_command

from invoicing.models import MeterReading


def test_ingest_meter_readings_command_reports_rows_as_json(account, service, tmp_path, capsys):
    path = tmp_path / "readings.csv"
    path.write_text(
        "account,service,reading,taken_at,external_id\n"
        f"{account.pk},{service.pk},100,2026-01-01T10:00:00+03:00,m1\n"
        f"{account.pk},{service.pk},150,2026-02-01T10:00:00+03:00,m2\n"
        f"{account.pk},{service.pk},-3,2026-02-02T10:00:00+03:00,m3\n"
    )
    call_command("ingest_meter_readings", str(path), "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["received"], report["accepted"], report["errors"]) == (3, 2, 1)
    assert report["first_errors"][0]["index"] == 3
    assert MeterReading.objects.filter(account=account).count() == 2


def test_ingest_usage_command_takes_a_number_of_workers(
    account, service, subscribe, tmp_path, capsys
):
    subscribe(account, service, price="1")
    path = tmp_path / "usage.csv"
    path.write_text(
        "account,service,quantity,occurred_at,external_id\n"
        f"{account.pk},{service.pk},4,2026-01-05T10:00:00+03:00,u1\n"
    )
    call_command("ingest_usage", str(path), "--workers", "1", "--source", "agent-7")
    assert "1 rows: 1 accepted, 0 duplicates, 0 refused" in capsys.readouterr().out
