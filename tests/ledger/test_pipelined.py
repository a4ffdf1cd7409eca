"""Single postings outside any transaction run pipelined (``core.pipeline``): the BEGIN
travels with the lock, the write with the COMMIT, and the ids come with the lock.

These tests run outside a test transaction (``transaction=True``), which is the only
place the pipelined path runs (inside an outer atomic block a posting is a savepoint).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction

from accounts.models import Account
from ledger.exceptions import InsufficientFunds, WriteOffLimitExceeded
from ledger.models import Entry, IdempotencyKey, Transaction
from ledger.services import debit_post
from ledger.verify import verify_ledger
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


def test_debit_post_pipelined_returns_the_rows_it_wrote(account, brand, fund, monkeypatch):
    from ledger.services import locking

    fund(account, "100.00")
    reserved = []
    lock_for_posting = locking.lock_for_posting

    def spy(*args, **kwargs):
        result = lock_for_posting(*args, **kwargs)
        reserved.append(result[1])
        return result

    monkeypatch.setattr("ledger.services.operations.lock_for_posting", spy)
    txn = debit_post(account=account, amount="30.00", brand=brand, idempotency_key="pipe-1")
    # The pipelined path ran: the ids came with the lock and are the rows' ids.
    assert reserved[0] is not None and reserved[0][0] == txn.pk
    assert not connection.in_atomic_block
    stored = Transaction.objects.get(pk=txn.pk)
    assert (stored.kind, stored.amount, stored.account_id) == ("debit", D("30.00"), account.pk)
    entries = list(Entry.objects.filter(transaction_id=txn.pk).order_by("id"))
    assert [(e.pk, e.amount, e.balance_after) for e in entries] == [
        (e.pk, e.amount, e.balance_after) for e in txn.entries.all()
    ]
    assert entries[0].balance_after == D("70.00")
    assert Account.objects.get(pk=account.pk).balance == D("70.00")
    assert IdempotencyKey.objects.get(key="pipe-1").transaction_id == txn.pk
    assert txn.replayed is False
    again = debit_post(account=account, amount="30.00", brand=brand, idempotency_key="pipe-1")
    assert again.pk == txn.pk and again.replayed is True
    assert verify_ledger() == []


def test_debit_post_pipelined_refusal_changes_nothing_and_the_next_posting_works(
    account, brand, fund, refused
):
    fund(account, "10.00")
    with refused(InsufficientFunds, "insufficient_funds") as info:
        debit_post(account=account, amount="50.00", brand=brand)
    assert info.value.details["available"] == "10.00"
    limited = AccountFactory(brands=[brand], write_off_limit_transaction=D("5.00"))
    fund(limited, "10.00")
    with refused(WriteOffLimitExceeded, "write_off_limit_exceeded"):
        debit_post(account=limited, amount="6.00", brand=brand)
    # The connection is clean: the next posting commits, and a plain atomic block that
    # fails after it still rolls back (psycopg's autocommit follows Django's again).
    debit_post(account=account, amount="4.00", brand=brand)
    assert Account.objects.get(pk=account.pk).balance == D("6.00")
    with pytest.raises(RuntimeError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(name="rolled back")
        raise RuntimeError
    assert Account.objects.get(pk=account.pk).name != "rolled back"
    assert verify_ledger() == []


def test_debit_post_pipelined_runs_on_commit_callbacks_after_the_commit(account, brand, fund):
    from ledger.signals import transaction_posted

    fund(account, "10.00")
    seen: list[tuple[int, bool]] = []

    def receiver(sender, transaction, **kwargs):
        # Inside the posting's transaction: the on_commit callback waits for the commit.
        from django.db import transaction as db_transaction

        db_transaction.on_commit(
            lambda: seen.append(
                (transaction.pk, Transaction.objects.filter(pk=transaction.pk).exists())
            )
        )

    transaction_posted.connect(receiver, dispatch_uid="test-pipelined")
    try:
        txn = debit_post(account=account, amount="1.00", brand=brand)
    finally:
        transaction_posted.disconnect(dispatch_uid="test-pipelined")
    assert seen == [(txn.pk, True)]


def test_debit_post_without_pipelining_reads_its_ids_back(
    account, brand, fund, settings, monkeypatch
):
    from ledger.services import locking

    settings.BILLING_PIPELINED_POSTINGS = False
    fund(account, "10.00")
    reserved = []
    lock_for_posting = locking.lock_for_posting

    def spy(*args, **kwargs):
        result = lock_for_posting(*args, **kwargs)
        reserved.append(result[1])
        return result

    monkeypatch.setattr("ledger.services.operations.lock_for_posting", spy)
    txn = debit_post(account=account, amount="4.00", brand=brand)
    assert reserved == [None]
    assert [e.balance_after for e in txn.entries.all() if e.account_id == account.pk] == [D("6.00")]
    assert Entry.objects.filter(transaction_id=txn.pk).count() == 2
    assert verify_ledger() == []
