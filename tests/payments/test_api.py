"""The payment-intake endpoints: registries, agents and suspense over HTTP, for staff."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from ledger.models import Transaction
from payments.models import AgentPayment, Registry, SuspenseItem
from tests.api.test_permissions import staff_client
from tests.payments.conftest import Pay, csv_total, sber_txt


def upload(api, agent_code, data, dry_run=False, name="registry.txt"):
    return api.post(
        "/api/v1/registries/",
        {
            "agent": agent_code,
            "file": SimpleUploadedFile(name, data),
            "dry_run": "true" if dry_run else "false",
        },
        format="multipart",
    )


def balance(account):
    account.refresh_from_db()
    return account.balance


def test_post_registry_applies_it_and_answers_the_figures(staff_api, sber, accounts):
    a, b, _ = accounts
    data = sber_txt(
        [
            Pay("1", a.number, "100.00", commission="1.00"),
            Pay("2", b.number, "50.00"),
            Pay("3", "0000000000", "7.00"),
        ]
    )
    response = upload(staff_api, "SBER", data)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in ("agent", "status", "rows", "posted", "suspense")} == {
        "agent": "SBER",
        "status": "applied",
        "rows": 3,
        "posted": 2,
        "suspense": 1,
    }
    assert (body["posted_amount"], body["suspense_amount"], body["commission"]) == (
        "150.00",
        "7.00",
        "1.00",
    )
    assert body["duplicates"] == 0 and body["errors"] == []
    assert balance(a) == Decimal("100.00")
    again = upload(staff_api, "SBER", data).json()
    assert (again["posted"], again["duplicates"]) == (0, 3)
    assert staff_api.get(f"/api/v1/registries/{body['id']}/").json()["posted"] == 2
    listed = staff_api.get("/api/v1/registries/?agent=SBER").json()["results"]
    assert [r["id"] for r in listed] == [again["id"], body["id"]]


def test_dry_run_previews_with_row_errors_and_apply_posts_later(staff_api, post_office, accounts):
    a = accounts[0]
    good = csv_total([Pay("A", a.number, "10.00")])
    preview = upload(staff_api, "POST", good, dry_run=True).json()
    assert preview["status"] == "previewed" and preview["posted"] == 1
    assert balance(a) == 0
    applied = staff_api.post(f"/api/v1/registries/{preview['id']}/apply/")
    assert applied.status_code == 200 and applied.json()["status"] == "applied"
    assert balance(a) == Decimal("10.00")
    twice = staff_api.post(f"/api/v1/registries/{preview['id']}/apply/")
    assert (twice.status_code, twice.json()["code"]) == (409, "registry_already_applied")

    broken = csv_total([Pay("B", a.number, "1.00")]).replace(b",1.00,", b",1.0x,")
    shown = upload(staff_api, "POST", broken, dry_run=True).json()
    assert shown["errors"] == [
        {
            "row": 3,
            "column": "amount",
            "code": "invalid_amount",
            "message": shown["errors"][0]["message"],
        }
    ]
    refused = upload(staff_api, "POST", broken)
    assert refused.status_code == 422
    assert refused.json()["code"] == "registry_refused"
    assert refused.json()["details"]["reason"] == "row_errors"
    assert balance(a) == Decimal("10.00")


@pytest.mark.parametrize(
    "data, reason",
    [
        (sber_txt([Pay("1", "0000000018", "10.00")], total="10.01"), "control_total_mismatch"),
        (
            sber_txt([Pay("1", "0000000018", "10.00")]).decode("cp1251").encode("utf-8"),
            "wrong_encoding",
        ),
        (b"garbage\r\n", "control_line_missing"),
    ],
)
def test_refused_files_answer_422_and_post_nothing(staff_api, sber, data, reason):
    response = upload(staff_api, "SBER", data)
    assert response.status_code == 422
    assert response.json()["code"] == "registry_refused"
    assert response.json()["details"]["reason"] == reason
    assert Registry.objects.count() == 0 and Transaction.objects.count() == 0


def test_unknown_agent_and_missing_file_are_clear_errors(staff_api, sber):
    assert upload(staff_api, "NOPE", b"x").status_code == 404
    response = staff_api.post("/api/v1/registries/", {"agent": "SBER"}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["details"]


def test_an_api_key_may_not_touch_payment_intake(side_a, sber, accounts):
    data = sber_txt([Pay("1", accounts[0].number, "10.00")])
    response = upload(side_a.api, "SBER", data)
    assert response.status_code == 403
    assert side_a.api.get("/api/v1/suspense/").json()["results"] == []
    assert side_a.api.get("/api/v1/registries/").json()["results"] == []
    assert AgentPayment.objects.count() == 0 and balance(accounts[0]) == 0


def test_view_only_staff_reads_but_never_imports(sber, accounts):
    viewer = staff_client("payments.view_registry")
    data = sber_txt([Pay("1", accounts[0].number, "10.00")])
    response = upload(viewer, "SBER", data)
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert viewer.get("/api/v1/registries/").status_code == 200
    assert balance(accounts[0]) == 0


def test_payment_agents_are_listed_and_created(staff_api, sber):
    created = staff_api.post(
        "/api/v1/payment-agents/",
        {"code": "MTS", "name": "MTS Bank", "format": "csv-total", "commission_rate": "0.80"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["commission_rate"] == "0.80"
    codes = [a["code"] for a in staff_api.get("/api/v1/payment-agents/").json()["results"]]
    assert codes == ["SBER", "MTS"]
    for bad in (
        {"code": "X", "name": "x", "format": "pdf"},
        {"code": "Y", "name": "y", "format": "csv-total", "commission_rate": "150"},
        {"code": "Z", "name": "z", "format": "csv-total", "commission_rate": 1.5},
        {"code": "SBER", "name": "again", "format": "sber-txt"},
        {"code": "C", "name": "c", "format": "custom"},
    ):
        response = staff_api.post("/api/v1/payment-agents/", bad, format="json")
        assert response.status_code == 400, (bad, response.json())


@pytest.fixture
def queue(staff_api, sber):
    data = sber_txt([Pay("1", "0000000000", "30.00"), Pay("2", "0000000001", "12.00")])
    assert upload(staff_api, "SBER", data).status_code == 201
    return list(SuspenseItem.objects.order_by("row"))


def test_suspense_queue_lists_open_items_with_age_and_totals(staff_api, queue):
    listed = staff_api.get("/api/v1/suspense/?status=open").json()["results"]
    assert [(i["row"], i["account_number"], i["amount"], i["status"]) for i in listed] == [
        (1, "0000000000", "30.00", "open"),
        (2, "0000000001", "12.00", "open"),
    ]
    received = queue[0].received_at  # the day the file says the payer paid
    assert listed[0]["age_days"] == (timezone.now() - received).days
    assert listed[0]["payer"] and listed[0]["raw"]
    totals = staff_api.get("/api/v1/suspense/totals/").json()
    assert (totals["open_count"], totals["open_amount"]) == (2, "42.00")


def test_assign_and_return_over_the_api(staff_api, queue, accounts):
    a = accounts[0]
    first, second = queue
    url = f"/api/v1/suspense/{first.pk}/assign/"
    response = staff_api.post(url, {"account": a.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "assigned"
    replay = staff_api.post(url, {"account": a.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    again = staff_api.post(url, {"account": a.pk}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "suspense_not_open")
    assert balance(a) == Decimal("30.00")

    returned = staff_api.post(
        f"/api/v1/suspense/{second.pk}/return/", {"reason": "no such payer"}, format="json"
    )
    assert returned.status_code == 200 and returned.json()["status"] == "returned"
    assert staff_api.get("/api/v1/suspense/?status=open").json()["results"] == []
    missing = staff_api.post(f"/api/v1/suspense/{second.pk}/return/", {}, format="json")
    assert missing.status_code == 400


def test_assign_to_an_unknown_account_is_404_and_moves_nothing(staff_api, queue):
    response = staff_api.post(
        f"/api/v1/suspense/{queue[0].pk}/assign/", {"account": 999_999_999}, format="json"
    )
    assert response.status_code == 404
    queue[0].refresh_from_db()
    assert queue[0].status == "open"


def test_reconciliation_endpoints(staff_api, sber, accounts, side_a):

    from ledger.services import business_date

    data = sber_txt(
        [Pay("1", accounts[0].number, "10.00", commission="0.10"), Pay("2", "0000000000", "3.00")]
    )
    registry = upload(staff_api, "SBER", data).json()
    rec = staff_api.get(f"/api/v1/registries/{registry['id']}/reconciliation/").json()
    assert rec["posted"] == {"count": 1, "amount": "10.00"}
    assert (rec["suspense"]["amount"], rec["suspense"]["open"]) == ("3.00", 1)
    assert rec["commission"] == "0.10" and rec["balanced"] is True
    day = business_date(timezone.now()).isoformat()
    (daily,) = staff_api.get(f"/api/v1/reconciliation/?agent=SBER&date={day}").json()["results"]
    assert daily["posted"]["amount"] == "10.00" and daily["payable_by_agent"] == "12.90"
    assert [r["registry"] for r in daily["registries"]] == [registry["id"]]
    today = staff_api.get("/api/v1/reconciliation/").json()
    assert [r["agent"] for r in today["results"]] == ["SBER"]
    bad = staff_api.get("/api/v1/reconciliation/?agent=SBER&date=yesterday")
    assert bad.status_code == 400 and "date" in bad.json()["details"]
    assert staff_api.get(f"/api/v1/reconciliation/?agent=NOPE&date={day}").status_code == 404
    assert side_a.api.get(f"/api/v1/reconciliation/?agent=SBER&date={day}").status_code == 404
    assert side_a.api.get("/api/v1/reconciliation/").json()["results"] == []


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"agent": "SB\x00ER"}, "agent"),
        ({"agent": "x" * 1000}, "agent"),
        ({"dry_run": "perhaps"}, "dry_run"),
        ({"file": "not a file"}, "file"),
    ],
)
def test_a_hostile_upload_is_a_400_naming_the_field_and_writes_nothing(
    staff_api, sber, accounts, fields, named
):
    body = {
        "agent": "SBER",
        "file": SimpleUploadedFile("s.txt", sber_txt([Pay("1", accounts[0].number, "1.00")])),
        "dry_run": "false",
        **fields,
    }
    response = staff_api.post("/api/v1/registries/", body, format="multipart")
    assert response.status_code == 400, response.content[:200]
    assert named in response.json()["details"]
    assert Registry.objects.count() == 0 and Transaction.objects.count() == 0
