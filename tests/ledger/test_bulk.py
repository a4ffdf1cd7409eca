from decimal import Decimal

import pytest

from accounts.services import account_close, account_create
from ledger.exceptions import AccountClosed, IdempotencyConflict, InvalidAmount
from ledger.models import Entry, IdempotencyKey, Transaction
from ledger.services import AccrualItem, BrandNotLinked, accruals_post_bulk
from tests.factories import AccountFactory, BrandFactory


def _item(account, brand, amount="10.00", key=None, **kw):
    return AccrualItem(
        account_id=account.pk,
        amount=Decimal(amount),
        brand_id=brand.pk,
        subject_type="invoice",
        idempotency_key=key,
        **kw,
    )


def test_accruals_post_bulk_posts_each_item_with_running_balance(account, brand, fund):
    fund(account, "15.00")
    sub = account_create(client=account.client, parent=account, brands=[brand])
    results = accruals_post_bulk(
        items=[
            _item(account, brand, "10.00"),
            _item(sub, brand, "7.25"),
            _item(account, brand, "1"),
        ]
    )
    assert all(isinstance(r, Transaction) for r in results)
    account.refresh_from_db()
    assert account.balance == Decimal("-3.25")
    assert account.negative_since is not None
    afters = list(
        Entry.objects.filter(account=account, transaction__kind="accrual")
        .order_by("id")
        .values_list("balance_after", "subaccount_id")
    )
    assert afters == [(Decimal("5.00"), None), (Decimal("-2.25"), sub.pk), (Decimal("-3.25"), None)]


def test_accruals_post_bulk_refuses_bad_items_alone(account, brand):
    closed = AccountFactory(brands=[brand])
    account_close(account=closed)
    other_brand = BrandFactory()
    results = accruals_post_bulk(
        items=[
            _item(closed, brand),
            _item(account, brand, "0"),
            _item(account, other_brand),
            _item(account, brand, "2.00"),
        ]
    )
    assert isinstance(results[0], AccountClosed)
    assert isinstance(results[1], InvalidAmount)
    assert isinstance(results[2], BrandNotLinked)
    assert isinstance(results[3], Transaction)
    assert Transaction.objects.filter(kind="accrual").count() == 1
    closed.refresh_from_db()
    assert closed.balance == 0


def test_accruals_post_bulk_replays_keys_and_refuses_conflicts(account, brand):
    items = [_item(account, brand, "3.00", key="inv-1"), _item(account, brand, "4.00", key="inv-2")]
    first = accruals_post_bulk(items=items)
    again = accruals_post_bulk(
        items=[
            _item(account, brand, "3.00", key="inv-1"),
            _item(account, brand, "5.00", key="inv-2"),
        ]
    )
    assert again[0].pk == first[0].pk and again[0].replayed
    assert isinstance(again[1], IdempotencyConflict)
    assert IdempotencyKey.objects.count() == 2
    account.refresh_from_db()
    assert account.balance == Decimal("-7.00")


@pytest.mark.parametrize("count", [1, 250])
def test_accruals_post_bulk_many_accounts(brand, count):
    accounts = [AccountFactory(brands=[brand]) for _ in range(count)]
    results = accruals_post_bulk(items=[_item(a, brand, "1.10") for a in accounts])
    assert len({r.pk for r in results}) == count
    assert Entry.objects.filter(transaction__in=[r.pk for r in results]).count() == 2 * count
