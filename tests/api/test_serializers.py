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


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json; indent=4", "application/*"],
)
def test_rendered_now_is_what_drf_renders_later(rf, accept):
    """``rendered_now`` (the balance read's response) gives the bytes and headers DRF's
    deferred rendering of ``Response(data)`` gives, whatever the client accepts."""
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from core.api.views import rendered_now

    data = {"balance": "10.00", "text": "Ünïcode \u2028 line", "none": None, "n": [1, 2]}

    class Now(APIView):
        authentication_classes: list = []
        permission_classes: list = []

        def get(self, request):
            return rendered_now(request, data, status=203)

    class Later(Now):
        def get(self, request):
            return Response(data, status=203)

    headers = {"HTTP_ACCEPT": accept} if accept else {}
    now = Now.as_view()(rf.get("/x/", **headers))
    later = Later.as_view()(rf.get("/x/", **headers))
    later.render()
    assert now.status_code == later.status_code == 203
    assert now.content == later.content
    assert dict(now.items()) == dict(later.items())
    if accept and "indent" in accept:
        assert b"\n    " in now.content


def test_balance_of_the_account_funds_row_is_the_balance_of_the_account(postings):
    """The API's balance read selects ``AccountFunds`` instead of building an ``Account``:
    the same figures for payers and sub-accounts, with limits and credit."""
    from datetime import date, timedelta

    from accounts.models import Account
    from accounts.selectors import account_funds_in_scope
    from core.api.scope import Scope
    from core.caller import SYSTEM
    from ledger.api.serializers import BalanceSerializer
    from ledger.selectors import account_balance

    sub = Account.objects.filter(parent__isnull=False).get()
    Account.objects.filter(pk=sub.parent_id).update(
        credit_limit=Decimal("50.00"),
        credit_period_days=10,
        credit_expires_at=date.today() + timedelta(days=30),
    )
    Account.objects.filter(pk=sub.pk).update(
        write_off_limit_day=Decimal("20.00"), write_off_limit_month=Decimal("100.00")
    )
    staff = Scope(brand_ids=None, partner_id=None, caller=SYSTEM)
    accounts = Account.objects.filter(kind="client")
    assert accounts.count() == 3
    for account in accounts:
        funds = account_funds_in_scope(staff, account.pk)
        assert funds.pk == account.pk
        via_funds = BalanceSerializer().to_representation(account_balance(funds, refresh=False))
        via_model = BalanceSerializer().to_representation(account_balance(account))
        via_funds.pop("as_of"), via_model.pop("as_of")
        assert via_funds == via_model
        if account.pk == sub.pk:
            assert via_funds["payer"] == sub.parent_id
            assert via_funds["credit_limit"] == "50.00"
            assert via_funds["write_off_remaining"] is not None
    outside = Scope(brand_ids=frozenset({-1}), partner_id=1, caller=SYSTEM)
    assert account_funds_in_scope(outside, sub.pk) is None
