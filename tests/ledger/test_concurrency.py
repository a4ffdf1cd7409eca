"""Ledger services under real parallel transactions on PostgreSQL.

Every test starts its workers together (a barrier), lets PostgreSQL decide the
order, and then checks that the outcome is one that a serial order could have
produced: no overspending, no limit exceeded, no deadlock, one posting per
idempotency key, one winner per hold or reversal, nothing posted after a block.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Account
from accounts.services import account_block, account_create, account_set_parent, account_update
from ledger.exceptions import DomainError
from ledger.models import Entry, Hold, IdempotencyKey, Transaction, TransactionKind
from ledger.services import (
    Caller,
    business_date,
    debit_post,
    hold_capture,
    hold_create,
    hold_expire,
    hold_void,
    holds_expire_due,
    payment_post,
    transaction_reverse,
    transfer_post,
)
from ledger.verify import verify_ledger
from tests.factories import AccountFactory, ClientFactory
from tests.ledger.concurrency import codes, run_in_processes, run_in_threads, run_parallel

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
WORKERS = 20


def _fresh(account: Account) -> Account:
    return Account.objects.get(pk=account.pk)


def _sub_account(payer: Account, brand, **limits) -> Account:
    return account_create(client=ClientFactory(), parent=payer, brands=[brand], **limits)


def _spent_today(account: Account) -> tuple[Decimal, Decimal]:
    """The account's write-off counters (day, month) as they count today."""
    acc = _fresh(account)
    today = business_date(timezone.now())
    day = acc.spent_day if acc.spent_day_on == today else D("0.00")
    month = acc.spent_month if acc.spent_month_on == today.replace(day=1) else D("0.00")
    return day, month


def _assert_ledger_consistent() -> None:
    failures = verify_ledger()
    assert failures == [], "\n".join(map(str, failures))


# --------------------------------------------------------------------------- 1. overspending


def test_debit_post_20_workers_on_one_payer_with_credit_never_overspend(brand, service):
    payer = AccountFactory(brands=[brand], credit_limit=D("50.00"))
    payment_post(account=payer, amount="100.00", channel="bank")

    outcomes = run_parallel(
        lambda i: debit_post(account=payer.pk, amount="10.00", brand=brand.pk, service=service.pk),
        WORKERS,
    )

    # 100 of own money + 50 of credit allow exactly 15 debits of 10.
    assert codes(outcomes) == {None: 15, "insufficient_funds": 5}
    payer = _fresh(payer)
    assert payer.balance == D("-50.00")
    assert payer.balance >= -payer.credit_limit
    assert payer.negative_since is not None
    debits = Transaction.objects.filter(kind=TransactionKind.DEBIT)
    assert sorted(debits.values_list("id", flat=True)) == sorted(
        o.value.pk for o in outcomes if o.ok
    )
    # Each debit saw the balance the previous one left: the chain is 90, 80, ..., -50.
    afters = list(
        Entry.objects.filter(account=payer, transaction__kind=TransactionKind.DEBIT)
        .order_by("id")
        .values_list("balance_after", flat=True)
    )
    assert afters == [D(100 - 10 * n) for n in range(1, 16)]
    for outcome in outcomes:
        if not outcome.ok:
            assert D(outcome.error.details["requested"]) == D("10.00")
            assert D(outcome.error.details["available"]) < D("10.00")
    _assert_ledger_consistent()


def test_debits_and_holds_from_sub_accounts_never_overspend_the_payer(brand):
    payer = AccountFactory(brands=[brand], credit_limit=D("30.00"))
    payment_post(account=payer, amount="95.00", channel="bank")
    subs = [_sub_account(payer, brand) for _ in range(4)]

    def call(i: int):
        account = subs[i % len(subs)] if i % 5 else payer
        if i % 2:
            return hold_create(account=account.pk, amount="10.00", brand=brand.pk)
        return debit_post(account=account.pk, amount="10.00", brand=brand.pk)

    outcomes = run_parallel(call, WORKERS)

    # 95 + 30 of credit cover 12 postings of 10 (debits or holds), not 13.
    assert codes(outcomes) == {None: 12, "insufficient_funds": 8}
    payer = _fresh(payer)
    debited = sum(
        (o.value.amount for o in outcomes if o.ok and isinstance(o.value, Transaction)), D(0)
    )
    held = sum((o.value.amount for o in outcomes if o.ok and isinstance(o.value, Hold)), D(0))
    assert payer.balance == D("95.00") - debited
    assert payer.held == held
    assert payer.balance - payer.held >= -payer.credit_limit
    assert payer.balance - payer.held + payer.credit_limit == D("5.00")
    assert all(_fresh(sub).balance == 0 and _fresh(sub).held == 0 for sub in subs)
    _assert_ledger_consistent()


def _debit_in_process(account_id: int, brand_id: int, index: int) -> int:
    return debit_post(account=account_id, amount="10.00", brand=brand_id).pk


def test_debit_post_20_processes_on_one_payer_never_overspend(brand):
    payer = AccountFactory(brands=[brand], credit_limit=D("25.00"))
    payment_post(account=payer, amount="100.00", channel="bank")

    results = run_in_processes(functools.partial(_debit_in_process, payer.pk, brand.pk), WORKERS)

    assert Counter(kind if kind != "ok" else None for kind, _ in results) == {
        None: 12,
        "domain_error": 8,
    }
    assert {value for kind, value in results if kind == "domain_error"} == {"insufficient_funds"}
    payer = _fresh(payer)
    assert payer.balance == D("-20.00")
    assert set(
        Transaction.objects.filter(kind=TransactionKind.DEBIT).values_list("id", flat=True)
    ) == {value for kind, value in results if kind == "ok"}
    _assert_ledger_consistent()


# --------------------------------------------------------------------------- 2. write-off limits


LIMIT_SCENARIOS = {
    # name: (payer limits, sub-account limits, expected successes per sub, expected total)
    "sub_day": ({}, {"write_off_limit_day": D("50.00")}, 5, 20),
    "sub_month": ({}, {"write_off_limit_month": D("30.00")}, 3, 12),
    "sub_day_and_month": (
        {},
        {"write_off_limit_day": D("70.00"), "write_off_limit_month": D("40.00")},
        4,
        16,
    ),
    "payer_day_as_ancestor": ({"write_off_limit_day": D("100.00")}, {}, None, 10),
    "payer_month_under_sub_day": (
        {"write_off_limit_month": D("90.00")},
        {"write_off_limit_day": D("30.00")},
        None,
        9,
    ),
}


@pytest.mark.parametrize("scenario", LIMIT_SCENARIOS)
def test_sub_accounts_racing_never_exceed_write_off_limits(brand, scenario):
    payer_limits, sub_limits, per_sub, total = LIMIT_SCENARIOS[scenario]
    payer = AccountFactory(brands=[brand], **payer_limits)
    payment_post(account=payer, amount="10000.00", channel="bank")
    subs = [
        _sub_account(payer, brand, write_off_limit_transaction=D("15.00"), **sub_limits)
        for _ in range(4)
    ]
    # 32 workers, 8 per sub-account: six debit 10.00, one holds 10.00, one tries 20.00,
    # which the per-transaction limit of 15.00 always refuses.
    plan = [
        (subs[i % 4], D("20.00") if i // 4 == 7 else D("10.00"), i // 4 == 6) for i in range(32)
    ]

    def call(i: int):
        account, amount, as_hold = plan[i]
        if as_hold:
            return hold_create(account=account.pk, amount=amount, brand=brand.pk)
        return debit_post(account=account.pk, amount=amount, brand=brand.pk)

    outcomes = run_parallel(call, len(plan))

    assert set(codes(outcomes)) <= {None, "write_off_limit_exceeded"}
    used: dict[int, Decimal] = defaultdict(lambda: D("0.00"))
    for outcome in outcomes:
        account, amount, _ = plan[outcome.index]
        if outcome.ok:
            used[account.pk] += amount
        elif amount > D("15.00"):
            assert outcome.error.details["period"] == "transaction"
        else:
            assert outcome.error.details["period"] in {"day", "month"}
    assert sum(used.values()) == D("10.00") * total
    for sub in subs:
        spent_day, spent_month = _spent_today(sub)
        assert spent_day == spent_month == used[sub.pk]
        for field in ("write_off_limit_day", "write_off_limit_month"):
            limit = sub_limits.get(field)
            if limit is not None:
                assert used[sub.pk] <= limit
        if per_sub is not None:
            assert used[sub.pk] == D("10.00") * per_sub
    spent_day, spent_month = _spent_today(payer)
    assert spent_day == spent_month == sum(used.values())
    for field in ("write_off_limit_day", "write_off_limit_month"):
        limit = payer_limits.get(field)
        if limit is not None:
            assert sum(used.values()) <= limit
    payer = _fresh(payer)
    assert payer.balance - payer.held == D("10000.00") - sum(used.values())
    _assert_ledger_consistent()


# --------------------------------------------------------------------------- 3. deadlocks


def _transfer_loop(source: Account, target: Account, times: int, amount: str = "5.00"):
    def run():
        return [
            transfer_post(from_account=source.pk, to_account=target.pk, amount=amount).pk
            for _ in range(times)
        ]

    return run


def test_transfers_both_ways_in_parallel_never_deadlock(brand):
    a = AccountFactory(brands=[brand])
    b = AccountFactory(brands=[brand])
    for acc in (a, b):
        payment_post(account=acc, amount="1000.00", channel="bank")

    calls = [_transfer_loop(a, b, 10) for _ in range(10)] + [
        _transfer_loop(b, a, 10) for _ in range(10)
    ]
    outcomes = run_in_threads(calls)

    assert codes(outcomes) == {None: 20}  # any deadlock would surface as a non-domain error
    assert Transaction.objects.filter(kind=TransactionKind.TRANSFER).count() == 200
    assert _fresh(a).balance == _fresh(b).balance == D("1000.00")
    _assert_ledger_consistent()


@pytest.mark.parametrize("through_sub_accounts", [False, True], ids=["payers", "sub_accounts"])
def test_transfers_in_a_three_cycle_never_deadlock_and_conserve_money(brand, through_sub_accounts):
    payers = [AccountFactory(brands=[brand]) for _ in range(3)]
    for acc in payers:
        payment_post(account=acc, amount="500.00", channel="bank")
    ends = [_sub_account(p, brand) for p in payers] if through_sub_accounts else payers
    # Workers move money A->B, B->C, C->A; some start from the sub-account, some
    # pay into it, so lock sets overlap in every order.
    calls = []
    for n in range(7):
        for k in range(3):
            source = ends[k] if n % 2 else payers[k]
            target = payers[(k + 1) % 3] if n % 2 else ends[(k + 1) % 3]
            calls.append(_transfer_loop(source, target, 8, amount=f"{k + 1}.00"))
    outcomes = run_in_threads(calls)

    assert codes(outcomes) == {None: 21}
    assert Transaction.objects.filter(kind=TransactionKind.TRANSFER).count() == 21 * 8
    balances = [_fresh(p).balance for p in payers]
    assert sum(balances) == D("1500.00")
    # Payer k sent 7 * 8 transfers of k+1 and received 7 * 8 from payer k-1.
    assert balances == [D("500.00") - 56 * (k + 1) + 56 * ((k - 1) % 3 + 1) for k in range(3)]
    _assert_ledger_consistent()


# --------------------------------------------------------------------------- 4. idempotency


@pytest.mark.parametrize("funds", ["ample", "exact"])
def test_debit_post_20_concurrent_uses_of_one_key_make_one_transaction(brand, funds):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="1000.00" if funds == "ample" else "25.00", channel="bank")
    caller = Caller.for_partner(7)

    outcomes = run_parallel(
        lambda i: debit_post(
            account=payer.pk,
            amount="25.00",
            brand=brand.pk,
            caller=caller,
            idempotency_key="order-1",
        ),
        WORKERS,
    )

    assert codes(outcomes) == {None: WORKERS}
    assert len({o.value.pk for o in outcomes}) == 1
    assert sorted(o.value.replayed for o in outcomes) == [False] + [True] * (WORKERS - 1)
    assert Transaction.objects.filter(kind=TransactionKind.DEBIT).count() == 1
    assert IdempotencyKey.objects.filter(caller=caller.ref, key="order-1").count() == 1
    assert _fresh(payer).balance == (D("975.00") if funds == "ample" else D("0.00"))
    _assert_ledger_consistent()


def test_payment_post_20_concurrent_uses_of_one_key_make_one_transaction(brand):
    payer = AccountFactory(brands=[brand])
    caller = Caller.for_partner(8)

    outcomes = run_parallel(
        lambda i: payment_post(
            account=payer.pk, amount="40.00", channel="agent", caller=caller, idempotency_key="p-1"
        ),
        WORKERS,
    )

    assert codes(outcomes) == {None: WORKERS}
    assert len({o.value.pk for o in outcomes}) == 1
    assert sorted(o.value.replayed for o in outcomes) == [False] + [True] * (WORKERS - 1)
    assert Transaction.objects.filter(kind=TransactionKind.PAYMENT).count() == 1
    assert _fresh(payer).balance == D("40.00")
    _assert_ledger_consistent()


@pytest.mark.parametrize("funds", ["ample", "exact"])
def test_hold_create_20_concurrent_uses_of_one_key_make_one_hold(brand, funds):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="500.00" if funds == "ample" else "60.00", channel="bank")
    caller = Caller.for_partner(9)

    outcomes = run_parallel(
        lambda i: hold_create(
            account=payer.pk, amount="60.00", brand=brand.pk, caller=caller, idempotency_key="h-1"
        ),
        WORKERS,
    )

    assert codes(outcomes) == {None: WORKERS}
    assert len({o.value.pk for o in outcomes}) == 1
    assert sorted(o.value.replayed for o in outcomes) == [False] + [True] * (WORKERS - 1)
    assert Hold.objects.count() == 1
    assert _fresh(payer).held == D("60.00")
    _assert_ledger_consistent()


def test_hold_capture_and_reversal_concurrent_uses_of_one_key_replay_the_winner(brand):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="100.00", channel="bank")
    hold = hold_create(account=payer, amount="30.00", brand=brand)
    caller = Caller.for_partner(10)

    captures = run_parallel(
        lambda i: hold_capture(hold=hold.pk, amount="20.00", caller=caller, idempotency_key="c-1"),
        10,
    )
    assert codes(captures) == {None: 10}
    capture_id = captures[0].value.pk
    assert {o.value.pk for o in captures} == {capture_id}

    reversals = run_parallel(
        lambda i: transaction_reverse(
            transaction_obj=capture_id,
            reason="customer complaint",
            caller=caller,
            idempotency_key="r-1",
        ),
        10,
    )
    assert codes(reversals) == {None: 10}
    assert len({o.value.pk for o in reversals}) == 1
    assert sorted(o.value.replayed for o in reversals) == [False] + [True] * 9
    payer = _fresh(payer)
    assert payer.balance == D("100.00")
    assert payer.held == D("0.00")
    _assert_ledger_consistent()


@pytest.mark.parametrize("funds", ["ample", "tight"])
def test_one_key_with_different_requests_in_parallel_one_wins_others_conflict(brand, funds):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="1000.00" if funds == "ample" else "10.19", channel="bank")
    caller = Caller.for_partner(11)

    outcomes = run_parallel(
        lambda i: debit_post(
            account=payer.pk,
            amount=D("10.00") + D(i) / 100,
            brand=brand.pk,
            caller=caller,
            idempotency_key="same-key",
        ),
        WORKERS,
    )

    assert codes(outcomes) == {None: 1, "idempotency_conflict": WORKERS - 1}
    (winner,) = [o.value for o in outcomes if o.ok]
    assert winner.replayed is False
    assert list(
        Transaction.objects.filter(kind=TransactionKind.DEBIT).values_list("id", flat=True)
    ) == [winner.pk]
    start = D("1000.00") if funds == "ample" else D("10.19")
    assert _fresh(payer).balance == start - winner.amount
    _assert_ledger_consistent()


def test_hold_create_and_payment_one_key_different_requests_one_wins(brand):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="100.00", channel="bank")
    caller = Caller.for_partner(12)

    def call(i: int):
        if i % 2:
            return payment_post(
                account=payer.pk, amount="5.00", caller=caller, idempotency_key="mixed"
            )
        return hold_create(
            account=payer.pk,
            amount=D(1 + i),
            brand=brand.pk,
            caller=caller,
            idempotency_key="mixed",
        )

    outcomes = run_parallel(call, WORKERS)

    result = codes(outcomes)
    assert result[None] >= 1 and result[None] + result["idempotency_conflict"] == WORKERS
    winners = {(type(o.value), o.value.pk) for o in outcomes if o.ok}
    assert len(winners) == 1  # only identical requests (the payments) may share the win
    assert Hold.objects.count() + Transaction.objects.filter(kind="payment").count() == 2
    _assert_ledger_consistent()


# --------------------------------------------------------------------------- 5. holds


def test_hold_capture_void_expire_race_on_a_live_hold_one_winner(brand):
    payer = AccountFactory(brands=[brand], write_off_limit_day=D("500.00"))
    payment_post(account=payer, amount="200.00", channel="bank")
    sub = _sub_account(payer, brand, write_off_limit_day=D("100.00"))
    other = hold_create(account=sub, amount="15.00", brand=brand)
    hold = hold_create(account=sub, amount="80.00", brand=brand)

    calls = (
        [lambda n=n: hold_capture(hold=hold.pk, amount=D(30 + n)) for n in range(5)]
        + [lambda: hold_capture(hold=hold.pk)]
        + [lambda: hold_void(hold=hold.pk) for _ in range(6)]
        + [lambda: hold_expire(hold=hold.pk) for _ in range(6)]
    )
    outcomes = run_in_threads(calls)

    assert codes(outcomes) == {None: 1, "hold_not_active": len(calls) - 1}
    (winner,) = [o for o in outcomes if o.ok]
    hold.refresh_from_db()
    payer = _fresh(payer)
    assert payer.held == other.amount  # the raced hold is released whoever won
    if isinstance(winner.value, Transaction):
        captured = winner.value.amount
        assert hold.status == Hold.Status.CAPTURED and hold.captured_amount == captured
    else:
        captured = D("0.00")
        assert hold.status == Hold.Status.VOIDED
    assert payer.balance == D("200.00") - captured
    # Limits keep only what was captured plus the other active hold.
    assert _spent_today(sub) == (captured + D("15.00"), captured + D("15.00"))
    assert _spent_today(payer)[0] == captured + D("15.00")
    assert Transaction.objects.filter(hold=hold).count() == (1 if captured else 0)
    _assert_ledger_consistent()


def test_hold_capture_void_expire_race_on_an_expired_hold_one_release(brand):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="100.00", channel="bank")
    hold = hold_create(
        account=payer,
        amount="40.00",
        brand=brand,
        expires_at=timezone.now() + timedelta(milliseconds=300),
    )
    while timezone.now() <= hold.expires_at:  # let the hold lapse for real
        time.sleep(0.05)

    calls = (
        [lambda: hold_capture(hold=hold.pk) for _ in range(5)]
        + [lambda: hold_void(hold=hold.pk) for _ in range(5)]
        + [lambda: hold_expire(hold=hold.pk) for _ in range(5)]
        + [lambda: holds_expire_due() for _ in range(3)]
    )
    outcomes = run_in_threads(calls)

    releases = [o for o in outcomes if o.ok and isinstance(o.value, Hold)]
    swept = sum(o.value for o in outcomes if o.ok and isinstance(o.value, int))
    assert len(releases) + swept == 1
    assert all(o.code == "hold_not_active" for o in outcomes[:5])  # an expired hold never captures
    assert {o.code for o in outcomes[5:15] if not o.ok} <= {"hold_not_active"}
    hold.refresh_from_db()
    assert hold.status in {Hold.Status.VOIDED, Hold.Status.EXPIRED}
    payer = _fresh(payer)
    assert payer.held == D("0.00")
    assert payer.balance == D("100.00")
    assert _spent_today(payer) == (D("0.00"), D("0.00"))
    _assert_ledger_consistent()


# --------------------------------------------------------------------------- 6. reversals


def test_transaction_reverse_by_10_workers_reverses_once(brand):
    payer = AccountFactory(brands=[brand], write_off_limit_day=D("100.00"))
    payment_post(account=payer, amount="100.00", channel="bank")
    debit = debit_post(account=payer, amount="70.00", brand=brand)

    outcomes = run_parallel(
        lambda i: transaction_reverse(transaction_obj=debit.pk, reason=f"duplicate order {i}"), 10
    )

    assert codes(outcomes) == {None: 1, "already_reversed": 9}
    (reversal,) = [o.value for o in outcomes if o.ok]
    assert list(Transaction.objects.filter(reversal_of=debit).values_list("id", flat=True)) == [
        reversal.pk
    ]
    payer = _fresh(payer)
    assert payer.balance == D("100.00")
    assert _spent_today(payer) == (D("0.00"), D("0.00"))  # the write-off room came back once
    _assert_ledger_consistent()


def test_transaction_reverse_of_a_transfer_by_10_workers_reverses_once(brand):
    a, b = AccountFactory(brands=[brand]), AccountFactory(brands=[brand])
    payment_post(account=a, amount="50.00", channel="bank")
    transfer = transfer_post(from_account=a, to_account=b, amount="50.00")
    debit_post(account=b, amount="20.00", brand=brand)  # the reversal may put B into debt

    outcomes = run_parallel(
        lambda i: transaction_reverse(transaction_obj=transfer.pk, reason="sent by mistake"), 10
    )

    assert codes(outcomes) == {None: 1, "already_reversed": 9}
    assert _fresh(a).balance == D("50.00")
    assert _fresh(b).balance == D("-20.00")
    assert Transaction.objects.filter(kind=TransactionKind.REVERSAL).count() == 1
    _assert_ledger_consistent()


# --------------------------------------------------------------------------- 7. blocking


BLOCK_SCENARIOS = ["payer_blocked", "payer_blocked_sub_debits", "sub_blocked_sub_debits"]


@pytest.mark.parametrize("scenario", BLOCK_SCENARIOS)
def test_account_block_vs_concurrent_debits_nothing_posted_after_the_block(brand, scenario):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="100000.00", channel="bank")
    sub = _sub_account(payer, brand)
    debit_from = payer if scenario == "payer_blocked" else sub
    to_block = sub if scenario == "sub_blocked_sub_debits" else payer
    first_debit_done = threading.Event()
    max_attempts = 400

    def debit_until_blocked():
        attempts = []
        for _ in range(max_attempts):
            try:
                txn = debit_post(account=debit_from.pk, amount="1.00", brand=brand.pk)
            except DomainError as exc:
                attempts.append(exc.code)
                if exc.code == "account_blocked":
                    break
            else:
                attempts.append(txn.pk)
                first_debit_done.set()
        return attempts

    def block():
        first_debit_done.wait(timeout=10)  # block in the middle of the stream of debits
        return account_block(account=to_block, reason="fraud suspected")

    outcomes = run_in_threads([block] + [debit_until_blocked for _ in range(8)])

    assert codes(outcomes) == {None: 9}
    blocked = _fresh(to_block)
    assert blocked.status == Account.Status.BLOCKED
    posted: list[int] = []
    for outcome in outcomes[1:]:
        attempts = outcome.value
        # Each worker saw successes, then the block, and nothing else.
        assert attempts[-1] == "account_blocked"
        assert all(isinstance(a, int) for a in attempts[:-1])
        posted += attempts[:-1]
    assert posted, "the block should land among the debits"
    debits = Transaction.objects.filter(kind=TransactionKind.DEBIT)
    assert sorted(debits.values_list("id", flat=True)) == sorted(posted)
    # Every debit took its lock, and its timestamp, before the block took its own.
    assert debits.filter(created_at__gte=blocked.status_changed_at).count() == 0
    with pytest.raises(DomainError) as refused:
        debit_post(account=debit_from, amount="1.00", brand=brand)
    assert refused.value.code == "account_blocked"
    payer = _fresh(payer)
    assert payer.balance == D("100000.00") - len(posted)
    assert Entry.objects.filter(account=payer).aggregate(total=Sum("amount"))["total"] == (
        payer.balance
    )
    _assert_ledger_consistent()


# ------------------------------------------------------------------- 8. structure and limits


def _debit_stream(account: Account, brand, stop_code: str, started: threading.Event, cap=400):
    """Debit 1.00 again and again; stop at the first refusal with ``stop_code``."""

    def run():
        attempts: list[int | str] = []
        for _ in range(cap):
            try:
                txn = debit_post(account=account.pk, amount="1.00", brand=brand.pk)
            except DomainError as exc:
                attempts.append(exc.code)
                started.set()
                if exc.code == stop_code:
                    break
            else:
                attempts.append(txn.pk)
                started.set()
        return attempts

    return run


def test_detaching_a_sub_account_during_its_debits_switches_payer_atomically(brand):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="5000.00", channel="bank")
    sub = _sub_account(payer, brand)
    started = threading.Event()

    def detach():
        started.wait(timeout=10)
        return account_set_parent(account=sub, parent=None)

    outcomes = run_in_threads(
        [detach] + [_debit_stream(sub, brand, "insufficient_funds", started) for _ in range(8)]
    )

    assert codes(outcomes) == {None: 9}
    detached = _fresh(sub)
    assert detached.parent_id is None
    posted = []
    for outcome in outcomes[1:]:
        # Drawn on the payer until the detach, then on its own empty balance.
        assert outcome.value[-1] == "insufficient_funds"
        assert all(isinstance(a, int) for a in outcome.value[:-1])
        posted += outcome.value[:-1]
    assert posted
    entries = Entry.objects.filter(transaction_id__in=posted, balance_after__isnull=False)
    assert set(entries.values_list("account_id", "subaccount_id")) == {(payer.pk, sub.pk)}
    assert not Transaction.objects.filter(pk__in=posted, created_at__gte=detached.updated_at)
    assert _fresh(payer).balance == D("5000.00") - len(posted)
    assert detached.balance == 0
    _assert_ledger_consistent()


def test_attaching_an_account_during_its_debits_switches_payer_atomically(brand):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="5000.00", channel="bank")
    newcomer = AccountFactory(brands=[brand])  # no money of its own: refused until attached
    refused_once = threading.Event()

    def attach():
        refused_once.wait(timeout=10)
        with transaction.atomic():
            account_set_parent(account=newcomer, parent=payer)
            return timezone.now()  # still under the row lock: between the two kinds of debit

    def stream():
        attempts: list[int | str] = []
        for _ in range(400):
            try:
                attempts.append(debit_post(account=newcomer.pk, amount="1.00", brand=brand.pk).pk)
            except DomainError as exc:
                attempts.append(exc.code)
                refused_once.set()
                continue
            if len([a for a in attempts if isinstance(a, int)]) == 5:
                break
        return attempts

    outcomes = run_in_threads([attach] + [stream for _ in range(8)])

    assert codes(outcomes) == {None: 9}
    attached, attached_at = _fresh(newcomer), outcomes[0].value
    assert attached.parent_id == payer.pk
    posted = []
    for outcome in outcomes[1:]:
        attempts = outcome.value
        first_success = next(i for i, a in enumerate(attempts) if isinstance(a, int))
        # Refused while it paid for itself, then drawn on the payer, never back.
        assert set(attempts[:first_success]) <= {"insufficient_funds"}
        assert all(isinstance(a, int) for a in attempts[first_success:])
        posted += attempts[first_success:]
    assert len(posted) == 8 * 5
    entries = Entry.objects.filter(transaction_id__in=posted, balance_after__isnull=False)
    assert set(entries.values_list("account_id", "subaccount_id")) == {(payer.pk, newcomer.pk)}
    assert not Transaction.objects.filter(pk__in=posted, created_at__lte=attached_at)
    assert _fresh(payer).balance == D("5000.00") - 40
    assert attached.balance == 0
    _assert_ledger_consistent()


def test_lowering_a_day_limit_during_debits_is_respected_from_its_commit_on(brand):
    payer = AccountFactory(brands=[brand])
    payment_post(account=payer, amount="5000.00", channel="bank")
    sub = _sub_account(payer, brand, write_off_limit_day=D("1000.00"))
    started = threading.Event()
    new_limit = D("60.00")

    def lower_limit():
        started.wait(timeout=10)
        with transaction.atomic():
            account_update(account=sub, write_off_limit_day=new_limit)
            return timezone.now()  # still under the row lock: between the two kinds of debit

    outcomes = run_in_threads(
        [lower_limit]
        + [_debit_stream(sub, brand, "write_off_limit_exceeded", started) for _ in range(8)]
    )

    assert codes(outcomes) == {None: 9}
    changed_at = outcomes[0].value
    posted = []
    for outcome in outcomes[1:]:
        assert outcome.value[-1] == "write_off_limit_exceeded"
        assert all(isinstance(a, int) for a in outcome.value[:-1])
        posted += outcome.value[:-1]
    debits = Transaction.objects.filter(pk__in=posted)
    before = debits.filter(created_at__lt=changed_at).count()
    after = debits.filter(created_at__gt=changed_at).count()
    assert before + after == len(posted) > 0
    # Whatever went through before the change stays; after it, only up to the new limit.
    assert before + after == max(before, int(new_limit))
    assert _spent_today(sub)[0] == len(posted)
    _assert_ledger_consistent()
