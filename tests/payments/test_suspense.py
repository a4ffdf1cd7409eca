"""Suspense: assign to an account (a transfer from suspense) or return (a refund), once."""

from decimal import Decimal

import pytest
from django.db.models import Sum

from accounts.models import Account
from accounts.services import account_close
from core.errors import DomainError
from ledger.models import Entry, Transaction
from payments.models import SuspenseItem
from payments.selectors import suspense_queue_totals
from payments.services import registry_import, suspense_assign, suspense_return
from tests.factories import AccountFactory
from tests.ledger.concurrency import run_in_threads
from tests.payments.conftest import Pay, sber_txt
from tests.payments.helpers import issue_invoice


def system_sum(kind: str) -> Decimal:
    return Entry.objects.filter(account__kind=kind).aggregate(s=Sum("amount"))["s"] or Decimal("0")


@pytest.fixture
def item(sber):
    registry_import(agent=sber, file_name="s", content=sber_txt([Pay("1", "0000000000", "75.00")]))
    return SuspenseItem.objects.get()


def test_assign_moves_the_money_from_suspense_to_the_account(item, accounts):
    a = accounts[0]
    assert system_sum(Account.Kind.SUSPENSE) == Decimal("75.00")
    done = suspense_assign(item=item.pk, account=a)
    assert (done.status, done.assigned_account_id) == ("assigned", a.pk)
    a.refresh_from_db()
    assert a.balance == Decimal("75.00")
    assert system_sum(Account.Kind.SUSPENSE) == 0
    txn = Transaction.objects.get(pk=done.resolution_transaction_id)
    assert (txn.kind, txn.counter_account_id) == ("transfer", a.pk)


def test_an_assigned_payment_pays_open_invoices(item, accounts, brand):
    a = accounts[0]
    invoice = issue_invoice(a, brand, "50.00")
    suspense_assign(item=item, account=a)
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_return_refunds_it_with_a_reason(item):
    done = suspense_return(item=item, reason="Payer asked for the money back")
    assert done.status == "returned"
    assert system_sum(Account.Kind.SUSPENSE) == 0
    assert system_sum(Account.Kind.REFUNDS) == Decimal("75.00")


@pytest.mark.parametrize(
    "move, code",
    [
        (lambda item, acc: suspense_return(item=item, reason="  "), "validation_error"),
        (lambda item, acc: suspense_assign(item=item, account=acc), "account_closed"),
    ],
)
def test_refusals_change_nothing(item, accounts, move, code):
    account_close(account=accounts[0])
    before = Transaction.objects.count()
    with pytest.raises(DomainError) as info:
        move(item, accounts[0])
    assert info.value.code == code
    item.refresh_from_db()
    assert item.status == "open" and Transaction.objects.count() == before


def test_a_resolved_item_is_not_resolved_again(item, accounts):
    suspense_assign(item=item, account=accounts[0])
    with pytest.raises(DomainError) as info:
        suspense_return(item=item, reason="late")
    assert info.value.code == "suspense_not_open"
    assert system_sum(Account.Kind.REFUNDS) == 0


def test_queue_totals_count_open_items_and_their_age(item):
    totals = suspense_queue_totals()
    assert totals["open_count"] == 1 and totals["open_amount"] == Decimal("75.00")
    assert totals["oldest_received_at"] == item.received_at


@pytest.mark.django_db(transaction=True)
def test_two_staff_resolving_one_item_at_once_resolve_it_once():
    from payments.services import payment_agent_create

    agent = payment_agent_create(code="SB", name="Sber", format="sber-txt")
    registry_import(agent=agent, file_name="s", content=sber_txt([Pay("1", "0000000000", "9.00")]))
    item = SuspenseItem.objects.get()
    account = AccountFactory()
    outcomes = run_in_threads(
        [
            lambda: suspense_assign(item=item.pk, account=account.pk),
            lambda: suspense_return(item=item.pk, reason="duplicate"),
        ]
    )
    assert sorted(o.code or "ok" for o in outcomes) == ["ok", "suspense_not_open"]
    assert system_sum(Account.Kind.SUSPENSE) == 0
    account.refresh_from_db()
    assert account.balance + system_sum(Account.Kind.REFUNDS) == Decimal("9.00")
