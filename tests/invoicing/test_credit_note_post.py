"""``ledger.services.credit_note_post``: an accrual's mirror for credit notes."""

from decimal import Decimal

import pytest

from accounts.models import Account
from ledger.exceptions import AccountClosed
from ledger.models import Entry, Transaction
from ledger.selectors import system_account_balance
from ledger.services import accrual_post, credit_note_post, system_account_id


def test_credit_note_post_credits_client_and_debits_revenue(account, brand, service):
    accrual_post(account=account, amount="100.00", brand=brand, service=service)
    txn = credit_note_post(
        account=account,
        amount="30.00",
        brand=brand,
        service=service,
        subject_type="invoice",
        subject_id="7",
        idempotency_key="invoice:7",
    )
    account.refresh_from_db()
    assert txn.kind == "credit_note"
    assert account.balance == Decimal("-70.00")
    revenue = Account.objects.get(
        pk=system_account_id("revenue", "RUB", brand_id=brand.pk, service_id=service.pk)
    )
    assert system_account_balance(revenue) == Decimal("70.00")
    assert sorted(Entry.objects.filter(transaction=txn).values_list("amount", flat=True)) == [
        Decimal("-30.00"),
        Decimal("30.00"),
    ]
    again = credit_note_post(
        account=account,
        amount="30.00",
        brand=brand,
        service=service,
        subject_type="invoice",
        subject_id="7",
        idempotency_key="invoice:7",
    )
    assert again.pk == txn.pk and again.replayed


def test_credit_note_post_refused_on_closed_account(account, brand):
    Account.objects.filter(pk=account.pk).update(status=Account.Status.CLOSED)
    before = Transaction.objects.count()
    with pytest.raises(AccountClosed):
        credit_note_post(account=account, amount="5.00", brand=brand)
    assert Transaction.objects.count() == before
