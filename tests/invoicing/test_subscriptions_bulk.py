"""subscriptions_create_bulk: subscription_create's rules over many rows; any refusal, none."""

from datetime import date

import pytest

from invoicing import services
from invoicing.exceptions import SubscriptionOverlap
from invoicing.models import Subscription
from ledger.exceptions import AccountClosed
from ledger.services import BrandNotLinked
from tests.factories import AccountFactory


@pytest.fixture
def tariff(service):
    return services.tariff_create(
        service=service, kind="per_unit", price="2.00", valid_from=date(2026, 1, 1)
    )


def test_subscriptions_create_bulk_subscribes_every_row(make_account, tariff):
    accounts = [make_account() for _ in range(3)]
    made = services.subscriptions_create_bulk(
        subscriptions=[(a.pk, tariff, date(2026, 2, 1), None) for a in accounts]
    )
    assert len(made) == 3
    assert set(Subscription.objects.values_list("account_id", flat=True)) == {
        a.pk for a in accounts
    }


@pytest.mark.parametrize("problem", ["not_linked", "closed", "overlap"])
def test_subscriptions_create_bulk_refuses_all_rows(make_account, tariff, problem):
    good = make_account()
    other = make_account()
    rows = [(good.pk, tariff, date(2026, 2, 1), None)]
    if problem == "not_linked":
        rows.append((AccountFactory().pk, tariff, date(2026, 2, 1), None))
        expected = BrandNotLinked
    elif problem == "closed":
        from accounts.services import account_close

        account_close(account=other)
        rows.append((other.pk, tariff, date(2026, 2, 1), None))
        expected = AccountClosed
    else:
        rows.append((good.pk, tariff, date(2026, 3, 1), None))
        expected = SubscriptionOverlap
    with pytest.raises(expected):
        services.subscriptions_create_bulk(subscriptions=rows)
    assert not Subscription.objects.exists()
