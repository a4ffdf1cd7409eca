"""Money endpoints through the HTTP layer: happy paths and every documented refusal."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Account
from accounts.services import account_block, account_update
from core.db import as_database_owner
from ledger.models import Hold, Transaction
from tests.api.helpers import dumps, error_of, post, post_raw
from tests.factories import AccountFactory


def balance_of(account) -> Decimal:
    account.refresh_from_db()
    return account.balance


def debit_body(side, amount="10.00", **extra):
    return {"account": side.account.pk, "amount": amount, "brand": side.brand.pk, **extra}


# --------------------------------------------------------------------------- payments


def test_payment_credits_the_account(side_a):
    response = post(
        side_a.api,
        "/api/v1/payments/",
        {"account": side_a.account.pk, "amount": "250.50", "channel": "card", "external_id": "p1"},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "payment" and body["amount"] == "250.50"
    assert body["account"] == side_a.account.pk and body["reversed_by"] is None
    assert sorted(Decimal(e["amount"]) for e in body["entries"]) == [
        Decimal("-250.50"),
        Decimal("250.50"),
    ]
    assert balance_of(side_a.account) == Decimal("1250.50")
    assert Transaction.objects.get(pk=body["id"]).caller == f"partner:{side_a.partner.pk}"


def test_payment_unknown_channel_is_400(side_a):
    response = post(
        side_a.api,
        "/api/v1/payments/",
        {"account": side_a.account.pk, "amount": "1.00", "channel": "barter"},
    )
    assert error_of(response) == (400, "validation_error")
    assert "channel" in response.json()["details"]


def test_payment_to_closed_account_is_422(side_a):
    account = AccountFactory(brands=[side_a.brand])
    from accounts.services import account_close

    account_close(account=account)
    response = post(
        side_a.api,
        "/api/v1/payments/",
        {"account": account.pk, "amount": "1.00", "channel": "bank"},
    )
    assert error_of(response) == (422, "account_closed")


# --------------------------------------------------------------------------- debits


def test_debit_writes_off_and_records_subject_and_metadata(side_a):
    response = post(
        side_a.api,
        "/api/v1/debits/",
        debit_body(
            side_a,
            "30.00",
            service=side_a.service.pk,
            subject_type="order",
            subject_id="81723",
            metadata={"courier": "x", "weight": 1.5},
            memo="lunch",
        ),
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["kind"], body["subject_type"], body["subject_id"]) == ("debit", "order", "81723")
    assert body["metadata"] == {"courier": "x", "weight": 1.5}
    assert body["service"] == side_a.service.pk and body["brand"] == side_a.brand.pk
    assert balance_of(side_a.account) == Decimal("970.00")


def test_debit_over_available_funds_is_422_and_changes_nothing(side_a):
    before = Transaction.objects.count()
    response = post(side_a.api, "/api/v1/debits/", debit_body(side_a, "1000.01"))
    assert error_of(response) == (422, "insufficient_funds")
    assert response.json()["details"]["available"] == "1000.00"
    assert Transaction.objects.count() == before
    assert balance_of(side_a.account) == Decimal("1000.00")


def test_debit_on_blocked_account_is_422(side_a):
    account_block(account=side_a.account, reason="fraud check")
    response = post(side_a.api, "/api/v1/debits/", debit_body(side_a))
    assert error_of(response) == (422, "account_blocked")


def test_debit_over_write_off_limit_is_422(side_a):
    account_update(account=side_a.account, write_off_limit_transaction=Decimal("5.00"))
    response = post(side_a.api, "/api/v1/debits/", debit_body(side_a, "5.01"))
    assert error_of(response) == (422, "write_off_limit_exceeded")


def test_debit_after_credit_limit_expired_is_422(side_a):
    account = AccountFactory(brands=[side_a.brand])
    account_update(
        account=account,
        credit_limit=Decimal("100.00"),
        credit_expires_at=timezone.localdate() - timedelta(days=1),
    )
    response = post(
        side_a.api,
        "/api/v1/debits/",
        {"account": account.pk, "amount": "10.00", "brand": side_a.brand.pk},
    )
    assert error_of(response) == (422, "credit_limit_expired")


def test_debit_with_service_of_another_brand_is_404(side_a, side_b):
    response = post(side_a.api, "/api/v1/debits/", debit_body(side_a, service=side_b.service.pk))
    assert error_of(response) == (404, "not_found")
    assert "service" in response.json()["details"]


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        (1.5, "float"),
        (10, "integer"),
        ("0", "zero"),
        ("0.00", "zero"),
        ("-5.00", "negative"),
        ("1.001", "three decimals"),
        ("NaN", "nan string"),
        ("Infinity", "infinity string"),
        ("1e3", "exponent"),
        ("99999999999999999999999.00", "too large"),
        ("abc", "text"),
        ("", "empty"),
        (None, "null"),
        (["1.00"], "list"),
    ],
)
def test_debit_amount_must_be_a_positive_decimal_string(side_a, amount, why):
    response = post(side_a.api, "/api/v1/debits/", debit_body(side_a, amount))
    assert error_of(response) == (400, "validation_error"), why
    assert "amount" in response.json()["details"]
    assert balance_of(side_a.account) == Decimal("1000.00")


@pytest.mark.parametrize(
    "raw",
    [
        '{"account": 1, "amount": NaN}',
        '{"account": 1, "amount": Infinity}',
        '{"account": 1, "amount": "1.00"',
        "not json at all",
        '{"account": 1, "amount": "\\ud800"}',
        "[" * 100000,
    ],
)
def test_malformed_json_is_400(side_a, raw):
    response = post_raw(side_a.api, "/api/v1/debits/", raw)
    assert error_of(response) == (400, "validation_error")


@pytest.mark.parametrize(
    "body",
    [
        [],
        "a string",
        {"account": "x"},
        {"account": 10**30},
        {"account": True},
        {"account": 1.0},
        {"brand": "x"},
        {"metadata": "not an object"},
        {"metadata": {"a": "\x00"}},
        {"memo": "x" * 501},
        {"memo": "nul\x00"},
        {"subject_id": ["x"]},
    ],
)
def test_wrong_types_are_400(side_a, body):
    if isinstance(body, dict):
        body = {**debit_body(side_a, "1.00"), **body}
    response = post(side_a.api, "/api/v1/debits/", body)
    assert error_of(response) == (400, "validation_error")
    assert balance_of(side_a.account) == Decimal("1000.00")


def test_metadata_number_beyond_float_range_is_400(side_a):
    raw = dumps(debit_body(side_a))[:-1] + ', "metadata": {"n": 1e999}}'
    assert error_of(post_raw(side_a.api, "/api/v1/debits/", raw)) == (400, "validation_error")


def test_yen_account_refuses_decimals_with_400(side_a):
    yen = AccountFactory(brands=[side_a.brand], currency="JPY")
    response = post(
        side_a.api,
        "/api/v1/accruals/",
        {"account": yen.pk, "amount": "10.50", "brand": side_a.brand.pk},
    )
    assert error_of(response) == (400, "validation_error")
    assert "amount" in response.json()["details"]
    ok = post(
        side_a.api,
        "/api/v1/accruals/",
        {"account": yen.pk, "amount": "10", "brand": side_a.brand.pk},
    )
    assert ok.status_code == 201, ok.json()


@pytest.mark.parametrize("field", ["account", "brand"])
def test_unknown_ids_are_404(side_a, field):
    response = post(side_a.api, "/api/v1/debits/", debit_body(side_a, **{field: 987654321}))
    assert error_of(response) == (404, "not_found")


# --------------------------------------------------------------------------- accruals


def test_accrual_on_blocked_account_creates_debt(side_a):
    account = AccountFactory(brands=[side_a.brand])
    account_block(account=account, reason="debt")
    response = post(
        side_a.api,
        "/api/v1/accruals/",
        {"account": account.pk, "amount": "75.00", "brand": side_a.brand.pk},
    )
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "accrual"
    assert balance_of(account) == Decimal("-75.00")


def test_accrual_on_account_not_linked_to_the_brand_is_422(staff_api, side_a, side_b):
    response = post(
        staff_api,
        "/api/v1/accruals/",
        {"account": side_a.account.pk, "amount": "1.00", "brand": side_b.brand.pk},
    )
    assert error_of(response) == (422, "brand_not_linked")


# --------------------------------------------------------------------------- transfers, refunds


def test_transfer_moves_funds_between_accounts(side_a):
    target = AccountFactory(brands=[side_a.brand])
    response = post(
        side_a.api,
        "/api/v1/transfers/",
        {"from_account": side_a.account.pk, "to_account": target.pk, "amount": "100.00"},
    )
    assert response.status_code == 201, response.json()
    assert response.json()["counter_account"] == target.pk
    assert balance_of(side_a.account) == Decimal("900.00")
    assert balance_of(target) == Decimal("100.00")


def test_transfer_between_currencies_is_422(side_a):
    usd = AccountFactory(brands=[side_a.brand], currency="USD")
    response = post(
        side_a.api,
        "/api/v1/transfers/",
        {"from_account": side_a.account.pk, "to_account": usd.pk, "amount": "1.00"},
    )
    assert error_of(response) == (422, "currency_mismatch")


def test_transfer_to_itself_is_400(side_a):
    response = post(
        side_a.api,
        "/api/v1/transfers/",
        {"from_account": side_a.account.pk, "to_account": side_a.account.pk, "amount": "1.00"},
    )
    assert error_of(response) == (400, "validation_error")


def test_refund_pays_back_own_funds_only(side_a):
    response = post(
        side_a.api,
        "/api/v1/refunds/",
        {"account": side_a.account.pk, "amount": "400.00", "channel": "bank"},
    )
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "refund"
    too_much = post(
        side_a.api,
        "/api/v1/refunds/",
        {"account": side_a.account.pk, "amount": "600.01", "channel": "bank"},
    )
    assert error_of(too_much) == (422, "insufficient_funds")
    assert balance_of(side_a.account) == Decimal("600.00")


# --------------------------------------------------------------------------- holds


def hold_body(side, amount="100.00", **extra):
    return {"account": side.account.pk, "amount": amount, "brand": side.brand.pk, **extra}


def test_hold_partial_capture_releases_the_rest(side_a):
    created = post(side_a.api, "/api/v1/holds/", hold_body(side_a, subject_type="order"))
    assert created.status_code == 201, created.json()
    hold_id = created.json()["id"]
    assert created.json()["status"] == "active"
    side_a.account.refresh_from_db()
    assert side_a.account.held == Decimal("100.00")
    captured = post(side_a.api, f"/api/v1/holds/{hold_id}/capture/", {"amount": "60.00"})
    assert captured.status_code == 201, captured.json()
    assert captured.json()["kind"] == "hold_capture" and captured.json()["hold"] == hold_id
    side_a.account.refresh_from_db()
    assert (side_a.account.balance, side_a.account.held) == (Decimal("940.00"), Decimal("0.00"))
    read = side_a.api.get(f"/api/v1/holds/{hold_id}/")
    assert read.json()["status"] == "captured" and read.json()["captured_amount"] == "60.00"
    again = post(side_a.api, f"/api/v1/holds/{hold_id}/capture/", {})
    assert error_of(again) == (409, "hold_not_active")


def test_hold_full_capture_without_amount(side_a):
    hold_id = post(side_a.api, "/api/v1/holds/", hold_body(side_a)).json()["id"]
    captured = post(side_a.api, f"/api/v1/holds/{hold_id}/capture/")
    assert captured.status_code == 201
    assert captured.json()["amount"] == "100.00"


def test_hold_capture_more_than_held_is_400(side_a):
    hold_id = post(side_a.api, "/api/v1/holds/", hold_body(side_a)).json()["id"]
    response = post(side_a.api, f"/api/v1/holds/{hold_id}/capture/", {"amount": "100.01"})
    assert error_of(response) == (400, "validation_error")
    assert Hold.objects.get(pk=hold_id).status == Hold.Status.ACTIVE


def test_hold_void_releases_and_second_void_is_409(side_a):
    hold_id = post(side_a.api, "/api/v1/holds/", hold_body(side_a)).json()["id"]
    voided = post(side_a.api, f"/api/v1/holds/{hold_id}/void/")
    assert voided.status_code == 200
    assert voided.json()["status"] == "voided"
    side_a.account.refresh_from_db()
    assert side_a.account.held == 0
    assert error_of(post(side_a.api, f"/api/v1/holds/{hold_id}/void/")) == (409, "hold_not_active")


def test_hold_over_funds_is_422_and_past_expiry_is_400(side_a):
    assert error_of(post(side_a.api, "/api/v1/holds/", hold_body(side_a, "5000.00"))) == (
        422,
        "insufficient_funds",
    )
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = post(side_a.api, "/api/v1/holds/", hold_body(side_a, expires_at=past))
    assert error_of(response) == (400, "validation_error")
    assert "expires_at" in response.json()["details"]
    assert not Hold.objects.exists()


def test_expired_hold_reads_as_expired_and_cannot_be_captured(side_a):
    soon = timezone.now() + timedelta(seconds=1)
    hold_id = post(
        side_a.api, "/api/v1/holds/", hold_body(side_a, expires_at=soon.isoformat())
    ).json()["id"]
    with as_database_owner():  # back-dated (the runtime role may only close a hold)
        Hold.objects.filter(pk=hold_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert side_a.api.get(f"/api/v1/holds/{hold_id}/").json()["status"] == "expired"
    assert error_of(post(side_a.api, f"/api/v1/holds/{hold_id}/capture/")) == (
        409,
        "hold_not_active",
    )


def test_holds_list_filters_by_status(side_a):
    first = post(side_a.api, "/api/v1/holds/", hold_body(side_a, "1.00")).json()["id"]
    second = post(side_a.api, "/api/v1/holds/", hold_body(side_a, "2.00")).json()["id"]
    post(side_a.api, f"/api/v1/holds/{first}/void/")
    active = side_a.api.get("/api/v1/holds/?status=active").json()["results"]
    assert [h["id"] for h in active] == [second]


# --------------------------------------------------------------------------- reversals, reads


def test_reversal_restores_balance_once(side_a):
    debit = post(side_a.api, "/api/v1/debits/", debit_body(side_a, "40.00")).json()
    response = post(side_a.api, f"/api/v1/transactions/{debit['id']}/reverse/", {"reason": "dup"})
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "reversal" and response.json()["reversal_of"] == debit["id"]
    assert balance_of(side_a.account) == Decimal("1000.00")
    original = side_a.api.get(f"/api/v1/transactions/{debit['id']}/").json()
    assert original["reversed_by"] == response.json()["id"]
    again = post(side_a.api, f"/api/v1/transactions/{debit['id']}/reverse/", {"reason": "dup"})
    assert error_of(again) == (409, "already_reversed")


def test_reversal_needs_a_reason(side_a):
    debit = post(side_a.api, "/api/v1/debits/", debit_body(side_a)).json()
    response = post(side_a.api, f"/api/v1/transactions/{debit['id']}/reverse/", {"reason": ""})
    assert error_of(response) == (400, "validation_error")
    assert "reason" in response.json()["details"]


def test_transactions_list_filters_and_orders(side_a):
    post(
        side_a.api,
        "/api/v1/debits/",
        debit_body(side_a, "5.00", subject_type="order", subject_id="1"),
    )
    post(
        side_a.api,
        "/api/v1/debits/",
        debit_body(side_a, "50.00", subject_type="order", subject_id="2"),
    )
    api = side_a.api
    debits = api.get("/api/v1/transactions/?kind=debit").json()["results"]
    assert [t["amount"] for t in debits] == ["50.00", "5.00"]  # newest first
    by_amount = api.get("/api/v1/transactions/?kind=debit&ordering=amount").json()["results"]
    assert [t["amount"] for t in by_amount] == ["5.00", "50.00"]
    big = api.get("/api/v1/transactions/?amount_min=10&kind=debit").json()["results"]
    assert [t["subject_id"] for t in big] == ["2"]
    subject = api.get("/api/v1/transactions/?subject_type=order&subject_id=1").json()["results"]
    assert len(subject) == 1 and subject[0]["amount"] == "5.00"
    assert api.get(f"/api/v1/transactions/?account={side_a.account.pk}").json()["results"]
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert api.get("/api/v1/transactions/", {"created_after": future}).json()["results"] == []
    assert error_of(api.get("/api/v1/transactions/?amount_min=NaN")) == (400, "validation_error")
    assert error_of(api.get("/api/v1/transactions/?kind=bogus")) == (400, "validation_error")


def test_transactions_cursor_pagination(side_a):
    for _ in range(3):
        post(side_a.api, "/api/v1/debits/", debit_body(side_a, "1.00"))
    page = side_a.api.get("/api/v1/transactions/?page_size=2").json()
    assert set(page) == {"next", "previous", "results"} and len(page["results"]) == 2
    second = side_a.api.get(page["next"]).json()
    seen = [t["id"] for t in page["results"] + second["results"]]
    assert len(seen) == len(set(seen)) == 4  # three debits and the funding payment
    assert error_of(side_a.api.get("/api/v1/transactions/?cursor=garbage")) == (
        400,
        "validation_error",
    )


def test_sub_account_debit_uses_payer_funds(side_a):
    child = AccountFactory(brands=[side_a.brand], client=side_a.account.client)
    from accounts.services import account_set_parent

    account_set_parent(account=child, parent=side_a.account)
    response = post(
        side_a.api,
        "/api/v1/debits/",
        {"account": child.pk, "amount": "10.00", "brand": side_a.brand.pk},
    )
    assert response.status_code == 201, response.json()
    assert balance_of(side_a.account) == Decimal("990.00")
    assert Account.objects.get(pk=child.pk).balance == 0
