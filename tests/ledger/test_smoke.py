from decimal import Decimal

import pytest

from ledger.exceptions import InsufficientFunds
from ledger.models import Entry, Transaction
from ledger.services import debit_post


def test_debit_post_moves_money_to_revenue(account, brand, service, fund):
    fund(account, "100.00")
    txn = debit_post(account=account, amount="30.00", brand=brand, service=service)
    account.refresh_from_db()
    assert account.balance == Decimal("70.00")
    assert sorted(e.amount for e in Entry.objects.filter(transaction=txn)) == [
        Decimal("-30.00"),
        Decimal("30.00"),
    ]


def test_debit_post_refused_leaves_nothing(account, brand, fund):
    fund(account, "10.00")
    before = Transaction.objects.count()
    with pytest.raises(InsufficientFunds):
        debit_post(account=account, amount="10.01", brand=brand)
    account.refresh_from_db()
    assert account.balance == Decimal("10.00")
    assert Transaction.objects.count() == before
