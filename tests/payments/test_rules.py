"""Payment rules per brand or client: checked at the API, in registries; overpayments."""

from decimal import Decimal

import pytest

from accounts.services import account_block
from ledger.models import Transaction
from ledger.services import payment_post
from payments.models import SuspenseItem
from payments.rules import PaymentRefused
from payments.services import payment_rule_set, registry_import
from tests.factories import AccountFactory, ClientFactory
from tests.payments.conftest import Pay, sber_txt
from tests.payments.helpers import issue_invoice


def balance(account):
    account.refresh_from_db()
    return account.balance


@pytest.mark.parametrize(
    "rule, payment, code, field",
    [
        ({"min_amount": Decimal("10.00")}, {"amount": "9.99"}, "amount_below_minimum", "amount"),
        ({"max_amount": Decimal("100.00")}, {"amount": "100.01"}, "amount_above_maximum", "amount"),
        (
            {"allowed_channels": ["bank", "agent"]},
            {"channel": "cash"},
            "channel_not_allowed",
            "channel",
        ),
    ],
)
def test_a_brand_rule_refuses_single_payments_with_a_code_and_field(
    brand, accounts, rule, payment, code, field
):
    payment_rule_set(brand=brand, **rule)
    with pytest.raises(PaymentRefused) as info:
        payment_post(account=accounts[0], **{"amount": "50.00", "channel": "bank", **payment})
    assert (info.value.code, info.value.details["field"]) == (code, field)
    assert Transaction.objects.count() == 0
    payment_post(account=accounts[0], amount="50.00", channel="bank")
    assert balance(accounts[0]) == Decimal("50.00")


def test_allowed_statuses_refuse_payments_to_blocked_accounts(brand, accounts):
    payment_rule_set(brand=brand, allowed_statuses=["open"])
    account_block(account=accounts[0], reason="fraud check")
    with pytest.raises(PaymentRefused) as info:
        payment_post(account=accounts[0], amount="5.00", channel="bank")
    assert info.value.code == "account_status_not_allowed"


def test_a_client_rule_replaces_the_brands(brand):
    client = ClientFactory()
    account = AccountFactory(client=client, brands=[brand])
    payment_rule_set(brand=brand, max_amount=Decimal("10.00"))
    payment_rule_set(client=client, max_amount=Decimal("1000.00"))
    payment_post(account=account, amount="500.00", channel="bank")
    with pytest.raises(PaymentRefused):
        payment_post(account=AccountFactory(brands=[brand]), amount="500.00", channel="bank")


def test_setting_a_rule_again_replaces_it(brand, accounts):
    payment_rule_set(brand=brand, max_amount=Decimal("10.00"))
    payment_rule_set(brand=brand, max_amount=Decimal("100.00"))
    payment_post(account=accounts[0], amount="50.00", channel="bank")
    assert balance(accounts[0]) == Decimal("50.00")


def test_invalid_rules_are_refused(brand):
    from core.errors import ValidationFailed

    for bad in (
        {"min_amount": Decimal("10"), "max_amount": Decimal("5")},
        {"allowed_channels": ["pigeon"]},
        {"allowed_statuses": ["closed"]},
        {"overpayment": "burn"},
    ):
        with pytest.raises(ValidationFailed):
            payment_rule_set(brand=brand, **bad)


def test_api_payment_refused_by_a_rule_answers_422(side_a):
    payment_rule_set(brand=side_a.brand, min_amount=Decimal("100.00"))
    before = balance(side_a.account)
    response = side_a.api.post(
        "/api/v1/payments/",
        {"account": side_a.account.pk, "amount": "5.00", "channel": "bank"},
        format="json",
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "amount_below_minimum" and body["details"]["field"] == "amount"
    assert balance(side_a.account) == before


def test_registry_lines_refused_by_a_rule_go_to_suspense(sber, brand, accounts):
    payment_rule_set(brand=brand, max_amount=Decimal("100.00"))
    data = sber_txt([Pay("1", accounts[0].number, "50.00"), Pay("2", accounts[1].number, "500.00")])
    registry = registry_import(agent=sber, file_name="s", content=data)
    assert (registry.posted, registry.suspense) == (1, 1)
    item = SuspenseItem.objects.get()
    assert item.reason == "refused_by_rule" and "amount_above_maximum" in item.reason_detail
    assert balance(accounts[1]) == 0


def test_overpayment_refunded_when_the_rule_says_so(brand, accounts):
    a = accounts[0]
    payment_rule_set(brand=brand, overpayment="refund")
    issue_invoice(a, brand, "30.00")  # a owes 30.00
    payment = payment_post(account=a, amount="50.00", channel="bank")
    assert balance(a) == 0  # 30.00 paid the invoice, 20.00 refunded
    refund = Transaction.objects.get(kind="refund")
    assert (refund.amount, refund.metadata["overpayment_of"]) == (Decimal("20.00"), payment.pk)


def test_overpayment_kept_as_advance_by_default(brand, accounts):
    payment_rule_set(brand=brand, max_amount=Decimal("1000.00"))
    payment_post(account=accounts[0], amount="50.00", channel="bank")
    assert balance(accounts[0]) == Decimal("50.00")
    assert not Transaction.objects.filter(kind="refund").exists()


def test_registry_overpayments_are_refunded_too(sber, brand, accounts):
    payment_rule_set(brand=brand, overpayment="refund")
    registry_import(
        agent=sber, file_name="s", content=sber_txt([Pay("1", accounts[0].number, "40.00")])
    )
    assert balance(accounts[0]) == 0
    assert Transaction.objects.get(kind="refund").amount == Decimal("40.00")
