"""The hand-written transaction representation equals what DRF's field machinery builds."""

from decimal import Decimal

import pytest
from rest_framework import serializers

from accounts.services import account_create
from ledger.api.serializers import TransactionSerializer
from ledger.api.views import serialize_transaction, transactions_with_details
from ledger.models import Transaction
from ledger.services import (
    debit_post,
    hold_capture,
    hold_create,
    payment_post,
    transaction_reverse,
    transfer_post,
)
from tests.factories import AccountFactory, BrandFactory, ServiceFactory


def _reference(txn: Transaction) -> dict:
    serializer = TransactionSerializer(txn)
    return serializers.ModelSerializer.to_representation(serializer, txn)


@pytest.fixture
def postings(db):
    brand = BrandFactory()
    service = ServiceFactory(brand=brand)
    payer = AccountFactory(brands=[brand])
    other = AccountFactory(brands=[brand])
    sub = account_create(client=payer.client, parent=payer, brands=[brand])
    payment = payment_post(account=payer, amount="100.00", channel="bank", external_id="b-1")
    debit = debit_post(
        account=sub,
        amount=Decimal("12.34"),
        brand=brand,
        service=service,
        subject_type="order",
        subject_id="81723",
        metadata={"items": [1, 2], "note": "Борщ"},
        memo="lunch",
    )
    hold = hold_create(account=payer, amount="5.00", brand=brand)
    capture = hold_capture(hold=hold, amount="3.50")
    transfer = transfer_post(from_account=payer, to_account=other, amount="1.00")
    reversal = transaction_reverse(transaction_obj=payment, reason="duplicate")
    return [payment, debit, capture, transfer, reversal]


def test_transaction_representation_matches_drf_fields_for_stored_rows(postings):
    for txn in transactions_with_details(Transaction.objects.all()):
        assert TransactionSerializer(txn).data == _reference(txn)


def test_transaction_representation_of_a_fresh_posting_matches_the_stored_row(postings):
    for fresh in postings[1:]:  # the payment was reversed since it was posted
        stored = transactions_with_details(Transaction.objects.filter(pk=fresh.pk)).get()
        assert serialize_transaction(fresh) == _reference(stored)


def test_balance_representation_matches_drf_fields(postings):
    from accounts.models import Account
    from ledger.api.serializers import BalanceSerializer
    from ledger.selectors import account_balance

    for account in Account.objects.filter(kind="client"):
        view = account_balance(account)
        serializer = BalanceSerializer(view)
        assert serializer.data == serializers.Serializer.to_representation(serializer, view)
