from decimal import Decimal

import pytest

from ledger.exceptions import InvalidAmount
from ledger.selectors import account_balance
from ledger.services import MAX_AMOUNT, accrual_post, payment_post


def test_payment_post_refuses_a_balance_beyond_the_stored_range(account, refused):
    payment_post(account=account, amount=MAX_AMOUNT, channel="bank")
    with refused(InvalidAmount, "invalid_amount"):
        payment_post(account=account, amount="0.01", channel="bank")


def test_accrual_post_refuses_a_debt_beyond_the_stored_range(account, brand, refused):
    accrual_post(account=account, amount=MAX_AMOUNT, brand=brand)
    with refused(InvalidAmount, "invalid_amount"):
        accrual_post(account=account, amount="0.01", brand=brand)


def test_account_balance_available_is_never_negative_without_credit(account, brand):
    accrual_post(account=account, amount="40.00", brand=brand)
    view = account_balance(account)
    assert (view.balance, view.available, view.credit_available) == (
        Decimal("-40.00"),
        Decimal("0.00"),
        Decimal("0.00"),
    )


def test_account_set_parent_refused_while_the_account_has_active_holds(account, brand, fund):
    from accounts.exceptions import AccountHasFunds
    from accounts.services import account_create, account_set_parent
    from ledger.services import hold_create, hold_void

    fund(account, "100.00")
    sub = account_create(client=account.client, parent=account, brands=[brand])
    hold = hold_create(account=sub, amount="30.00", brand=brand)
    with pytest.raises(AccountHasFunds):
        account_set_parent(account=sub, parent=None)
    sub.refresh_from_db()
    assert sub.parent_id == account.pk
    hold_void(hold=hold)
    assert account_set_parent(account=sub, parent=None).parent_id is None
