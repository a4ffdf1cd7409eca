"""Payment intents over the API, scoped to a partner's brands, against the real sandbox."""

import pytest

from payments.services.gateway import gateway_calls_due
from tests.api.conftest import make_side


def test_a_partner_creates_follows_and_refunds_an_intent(sandbox, side_a):
    body = {"account": side_a.account.pk, "amount": "75.00", "return_url": "https://a.example/"}
    created = side_a.api.post("/api/v1/payment-intents/", body, format="json")
    assert created.status_code == 201, created.json()
    intent = created.json()
    assert (intent["status"], intent["redirect_url"], intent["amount"]) == ("created", "", "75.00")
    sandbox.sandbox.set_switches({"auto_complete": "succeeded"})
    gateway_calls_due()
    shown = side_a.api.get(f"/api/v1/payment-intents/{intent['id']}/").json()
    assert shown["status"] == "succeeded" and shown["transaction"] is not None
    refund = side_a.api.post(
        f"/api/v1/payment-intents/{intent['id']}/refund/",
        {"amount": "80.00", "reason": "too much"},
        format="json",
    )
    assert (refund.status_code, refund.json()["code"]) == (422, "refund_exceeds_payment")
    refund = side_a.api.post(
        f"/api/v1/payment-intents/{intent['id']}/refund/",
        {"amount": "5.00", "reason": "broken item"},
        format="json",
    )
    assert refund.status_code == 202
    assert [r["status"] for r in refund.json()["refunds"]] == ["started"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"amount": "1.00", "return_url": "https://a.example/"}, 400),
        ({"amount": "-1.00", "return_url": "https://a.example/"}, 400),
        ({"amount": 1.5, "return_url": "https://a.example/"}, 400),
        ({"amount": "2.00", "return_url": "javascript:alert(1)"}, 400),
    ],
)
def test_bad_intents_are_refused(sandbox, side_a, body, status):
    if body["amount"] != "1.00":
        body = {"account": side_a.account.pk, **body}  # the first one lacks the account
    response = side_a.api.post("/api/v1/payment-intents/", body, format="json")
    assert response.status_code == status


def test_another_partners_account_and_intents_are_not_found(sandbox, side_a):
    side_b = make_side("Partner B")
    response = side_b.api.post(
        "/api/v1/payment-intents/",
        {"account": side_a.account.pk, "amount": "5.00", "return_url": "https://b.example/"},
        format="json",
    )
    assert response.status_code == 404
    created = side_a.api.post(
        "/api/v1/payment-intents/",
        {"account": side_a.account.pk, "amount": "5.00", "return_url": "https://a.example/"},
        format="json",
    ).json()
    assert side_b.api.get(f"/api/v1/payment-intents/{created['id']}/").status_code == 404
    assert side_b.api.get("/api/v1/payment-intents/").json()["results"] == []
