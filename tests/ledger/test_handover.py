"""Work handed over to a posting (``core.handover``): it runs once, inside the posting's
own transaction, right after the write; never for a replay or a refusal."""

from decimal import Decimal

import pytest
from django.db import connection

from core.handover import handed_over, run_handed_over
from ledger.exceptions import InsufficientFunds
from ledger.models import Transaction
from ledger.services import Caller, debit_post, hold_create, hold_void

pytestmark = pytest.mark.django_db

CALLER = Caller(ref="partner:7")


def _debit(account, brand, key, amount="10.00"):
    return debit_post(
        account=account, amount=Decimal(amount), brand=brand, caller=CALLER, idempotency_key=key
    )


def test_work_runs_once_in_the_postings_transaction(account, brand, fund):
    fund(account)
    seen = []

    def work(result):
        # Inside the posting's transaction: the row is there, and the block is still open.
        seen.append(
            (
                result.pk,
                connection.in_atomic_block,
                Transaction.objects.filter(pk=result.pk).exists(),
            )
        )

    with handed_over(work) as handover:
        txn = _debit(account, brand, "h-1")
        run_handed_over(txn)  # a second call in the block runs nothing
    assert handover.ran
    assert seen == [(txn.pk, True, True)]


def test_a_replay_or_a_refusal_runs_nothing(account, brand, fund, refused):
    fund(account)
    _debit(account, brand, "h-2")
    with handed_over(lambda result: pytest.fail("ran for a replay")) as handover:
        again = _debit(account, brand, "h-2")
    assert again.replayed and not handover.ran
    with (
        handed_over(lambda result: pytest.fail("ran for a refusal")) as handover,
        refused(InsufficientFunds, "insufficient_funds"),
    ):
        _debit(account, brand, "h-3", amount="1000.00")
    assert not handover.ran


def test_an_error_in_the_work_takes_the_posting_back(account, brand, fund, snapshot):
    fund(account)
    before = snapshot()

    def work(result):
        raise RuntimeError("cannot keep it")

    with pytest.raises(RuntimeError), handed_over(work) as handover:
        _debit(account, brand, "h-4")
    assert not handover.ran
    assert snapshot() == before
    # Nothing of it was kept: the same key posts afresh.
    assert not _debit(account, brand, "h-4").replayed


def test_holds_hand_over_too_and_blocks_nest(account, brand, fund):
    fund(account)
    outer_seen, inner_seen = [], []
    with handed_over(outer_seen.append) as outer:
        with handed_over(inner_seen.append) as inner:
            hold = hold_create(
                account=account,
                amount=Decimal("5.00"),
                brand=brand,
                caller=CALLER,
                idempotency_key="h-5",
            )
        voided = hold_void(hold=hold.pk, caller=CALLER, idempotency_key="h-6")
    assert inner.ran and inner_seen == [hold]
    assert outer.ran and outer_seen == [voided]
    # Outside any block a posting hands nothing over.
    run_handed_over(voided)
