"""Usage that no subscription covers would never be billed: it is refused per record with
``no_subscription`` (API response, ``ingest_usage`` output), never stored silently. Sent
again once the subscription exists, it is stored (and billed) once."""

import json
from datetime import date

from django.core.management import call_command

from invoicing.ingest import usage_ingest_records
from invoicing.models import UsageRecord
from tests.api.conftest import make_side
from tests.api.helpers import post


def record(account, service, ext, day=10, quantity="3"):
    return {
        "account": account.pk,
        "service": service.pk,
        "quantity": quantity,
        "occurred_at": f"2026-01-{day:02d}T10:00:00+03:00",
        "external_id": ext,
    }


def test_usage_without_a_subscription_on_its_day_is_refused_per_record(
    account, service, subscribe, bill
):
    subscribe(account, service, starts_on=date(2026, 1, 10), ends_on=date(2026, 1, 20), price="2")
    result = usage_ingest_records(
        records=[
            record(account, service, "before", day=9),  # 0: the subscription starts on the 10th
            record(account, service, "first", day=10),  # 1
            record(account, service, "last", day=20),  # 2
            record(account, service, "after", day=21),  # 3: it ended on the 20th
        ]
    )
    assert [(e.index, e.code) for e in result.errors] == [
        (0, "no_subscription"),
        (3, "no_subscription"),
    ]
    assert result.accepted == 2
    assert set(UsageRecord.objects.values_list("external_id", flat=True)) == {"first", "last"}
    run = bill("2026-01")
    assert run.invoices_issued == 1


def test_usage_sent_again_once_the_subscription_exists_is_stored_once(account, service, subscribe):
    early = [record(account, service, "early-1"), record(account, service, "early-2")]
    first = usage_ingest_records(records=early)
    assert (first.accepted, [e.code for e in first.errors]) == (0, ["no_subscription"] * 2)
    assert not UsageRecord.objects.exists()
    subscribe(account, service, price="2")
    again = usage_ingest_records(records=early)
    assert (again.accepted, again.duplicates, again.errors) == (2, 0, [])


def test_api_usage_reports_no_subscription(db):
    side = make_side("Partner A", funds="0")
    response = post(
        side.api, "/api/v1/usage/", {"records": [record(side.account, side.service, "x")]}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (0, 0)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(0, "no_subscription")]
    assert body["errors"][0]["message"]


def test_ingest_usage_command_reports_no_subscription(account, service, tmp_path, capsys):
    path = tmp_path / "usage.csv"
    path.write_text(
        "account,service,quantity,occurred_at,external_id\n"
        f"{account.pk},{service.pk},4,2026-01-05T10:00:00+03:00,u1\n"
    )
    call_command("ingest_usage", str(path), "--workers", "1", "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["accepted"], report["errors"]) == (0, 1)
    assert report["first_errors"][0]["code"] == "no_subscription"
    assert report["first_errors"][0]["index"] == 1
