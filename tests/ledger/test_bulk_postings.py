"""``post_bulk``: many postings of every common kind in one call, under the single services' rules.

The main test posts the same scripted history twice, on two populations built
alike: one item at a time through the single services with the clock set to
each item's moment, and as one ``post_bulk`` call with ``at=`` moments. Every
outcome (result kind, replay flag, refusal code), every account's running
state, every ``balance_after`` chain, hold, idempotency key and signal must be
the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from accounts.services import account_block, account_close
from core.caller import Caller
from ledger.exceptions import DomainError
from ledger.models import Entry, Hold, IdempotencyKey, Transaction
from ledger.services import (
    MAX_AMOUNT,
    AccrualItem,
    AdjustmentItem,
    DebitItem,
    HoldCaptureItem,
    HoldCreateItem,
    HoldExpireItem,
    HoldVoidItem,
    PaymentItem,
    RefundItem,
    ReversalItem,
    TransferItem,
    accrual_post,
    adjustment_post,
    debit_post,
    hold_capture,
    hold_create,
    hold_expire,
    hold_void,
    payment_post,
    post_bulk,
    posted_balance_after,
    posted_payer,
    refund_post,
    take_transaction_ids,
    transaction_reverse,
    transfer_post,
)
from ledger.signals import hold_changed, transaction_posted
from ledger.verify import verify_ledger
from tests.factories import AccountFactory, LegalEntityFactory

D = Decimal
MSK = ZoneInfo("Europe/Moscow")
START = datetime(2026, 3, 30, 10, 0, tzinfo=MSK)  # two days before a new month
GATEWAY = Caller.system("gateway")

# (hours after START, operation, arguments). Accounts by name; ``hold`` / ``txn`` name
# the index of an earlier item. Keys are made unique per population by a prefix.
SCRIPT: list[tuple[float, str, dict[str, Any]]] = [
    (0, "payment", {"account": "P1", "amount": "100.00", "channel": "bank"}),
    (1, "payment", {"account": "P2", "amount": "50.00", "channel": "gateway", "key": "pay-1"}),
    (2, "debit", {"account": "S1", "amount": "30.00"}),
    (3, "debit", {"account": "S1", "amount": "30.00"}),  # day limit of S1
    (4, "hold_create", {"account": "S2", "amount": "15.00"}),
    (5, "hold_capture", {"hold": 4, "amount": "10.00"}),  # partial: 5.00 of room back
    (6, "debit", {"account": "P2", "amount": "60.00"}),  # no credit line
    (7, "transfer", {"source": "P1", "target": "P2", "amount": "20.00"}),
    (8, "debit", {"account": "P1", "amount": "150.00"}),  # beyond the credit line
    (9, "debit", {"account": "P1", "amount": "120.00"}),  # into the credit line
    (10, "payment", {"account": "P3", "amount": "10.00"}),  # blocked accounts may pay
    (11, "debit", {"account": "P3", "amount": "5.00"}),  # ... not spend
    (12, "accrual", {"account": "P2", "amount": "20.00"}),
    (13, "reverse", {"txn": 2}),  # the S1 debit, the same day: its room comes back
    (14, "payment", {"account": "P2", "amount": "50.00", "channel": "gateway", "key": "pay-1"}),
    (15, "payment", {"account": "P2", "amount": "51.00", "channel": "gateway", "key": "pay-1"}),
    (16, "hold_create", {"account": "P2", "amount": "10.00", "key": "h-1"}),
    (17, "hold_void", {"hold": 16}),
    (18, "hold_create", {"account": "S1", "amount": "5.00", "expires_in": 1}),
    (20, "hold_capture", {"hold": 18}),  # expired an hour ago
    (21, "hold_expire", {"hold": 18}),
    (22, "hold_void", {"hold": 18}),  # no longer active
    (26, "debit", {"account": "S1", "amount": "40.00"}),  # the next day
    (27, "payment", {"account": "P1", "amount": "30.00"}),
    (28, "debit", {"account": "S2", "amount": "25.00"}),
    (29, "refund", {"account": "P2", "amount": "5.00"}),
    (30, "refund", {"account": "S1", "amount": "5.00"}),  # not from a sub-account
    (31, "adjustment", {"account": "P1", "amount": "-50.00"}),
    (33, "debit", {"account": "S2", "amount": "1.00"}),  # P1 negative for over a day
    (34, "reverse", {"txn": 9}),
    (35, "reverse", {"txn": 9}),  # already reversed
    (36, "reverse", {"txn": 13}),  # a reversal is not reversed
    (37, "transfer", {"source": "P2", "target": "P4", "amount": "1.00"}),  # closed
    (38, "debit", {"account": "P5", "amount": "30.00"}),  # credit line expired
    (39, "debit", {"account": "P1", "amount": "1.00", "currency": "USD"}),
    (40, "hold_create", {"account": "S1", "amount": "20.00"}),
    (62, "hold_capture", {"hold": 35}),  # 1 April: reserved in March
    (63, "debit", {"account": "S1", "amount": "40.00"}),  # the month counter starts again
    (64, "payment", {"account": "P1", "amount": "0.001"}),
    (65, "debit", {"account": "S2", "amount": "31.00"}),  # S2's transaction limit
    (66, "hold_create", {"account": "P2", "amount": "5.00", "key": "h-1"}),
    (67, "hold_create", {"account": "P2", "amount": "10.00", "key": "h-1"}),
    (68, "transfer", {"source": "P2", "target": "S2", "amount": "2.00"}),
    (69, "reverse", {"txn": 5}),  # a capture: room back to the day the hold reserved
    (70, "payment", {"account": "P4", "amount": "1.00"}),
]
EXPECTED_CODES = {
    "write_off_limit_exceeded",
    "insufficient_funds",
    "account_blocked",
    "account_closed",
    "idempotency_conflict",
    "hold_not_active",
    "invalid_operation",
    "already_reversed",
    "credit_period_expired",
    "credit_limit_expired",
    "currency_mismatch",
    "invalid_amount",
}


@dataclass
class Population:
    accounts: dict[str, Account]
    prefix: str

    def name_of(self, account_id: int | None) -> str | None:
        for name, account in self.accounts.items():
            if account.pk == account_id:
                return name
        return None if account_id is None else "system"


def build_population(brand, prefix: str) -> Population:
    company = LegalEntityFactory()
    p1 = AccountFactory(
        client=company,
        brands=[brand],
        credit_limit=D("100.00"),
        credit_period_days=1,
        write_off_limit_month=D("400.00"),
    )
    s1 = AccountFactory(
        client=company,
        parent=p1,
        brands=[brand],
        write_off_limit_transaction=D("40.00"),
        write_off_limit_day=D("50.00"),
    )
    s2 = AccountFactory(
        parent=s1,
        brands=[brand],
        write_off_limit_transaction=D("30.00"),
        write_off_limit_day=D("30.00"),
    )
    p2 = AccountFactory(brands=[brand])
    p3 = AccountFactory(brands=[brand])
    account_block(account=p3, reason="test")
    p4 = AccountFactory(brands=[brand])
    account_close(account=p4)
    p5 = AccountFactory(
        brands=[brand], credit_limit=D("50.00"), credit_expires_at=date(2026, 3, 29)
    )
    accounts = {"P1": p1, "S1": s1, "S2": s2, "P2": p2, "P3": p3, "P4": p4, "P5": p5}
    return Population(accounts, prefix)


def moment(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def run_single(pop: Population, script, brand, service, staff, clock) -> list[Any]:
    """Post the script one item at a time through the single services."""
    results: list[Any] = []
    for hours, op, args in script:
        clock.now = moment(hours)
        try:
            results.append(single_call(pop, results, hours, op, args, brand, service, staff))
        except DomainError as exc:
            results.append(exc)
    return results


def single_call(pop: Population, results, hours, op, args, brand, service, staff) -> Any:
    acc = {name: account.pk for name, account in pop.accounts.items()}
    key = f"{pop.prefix}{args['key']}" if "key" in args else None
    ref = results[args["hold"] if "hold" in args else args.get("txn", 0)] if results else None
    charge = {"brand": brand, "service": service, "currency": args.get("currency")}
    if op == "payment":
        return payment_post(
            account=acc[args["account"]],
            amount=args["amount"],
            channel=args.get("channel", "other"),
            idempotency_key=key,
            caller=GATEWAY if key else Caller(),
        )
    if op == "debit":
        return debit_post(account=acc[args["account"]], amount=args["amount"], **charge)
    if op == "accrual":
        return accrual_post(account=acc[args["account"]], amount=args["amount"], **charge)
    if op == "hold_create":
        expires = moment(hours + args["expires_in"]) if "expires_in" in args else None
        return hold_create(
            account=acc[args["account"]],
            amount=args["amount"],
            expires_at=expires,
            idempotency_key=key,
            **charge,
        )
    if op == "hold_capture":
        return hold_capture(hold=ref.pk, amount=args.get("amount"))
    if op == "hold_void":
        return hold_void(hold=ref.pk)
    if op == "hold_expire":
        return hold_expire(hold=ref.pk)
    if op == "transfer":
        return transfer_post(
            from_account=acc[args["source"]],
            to_account=acc[args["target"]],
            amount=args["amount"],
        )
    if op == "refund":
        return refund_post(account=acc[args["account"]], amount=args["amount"])
    if op == "adjustment":
        return adjustment_post(
            account=acc[args["account"]], amount=args["amount"], reason="fix", caller=staff
        )
    return transaction_reverse(transaction_obj=ref.pk, reason="undo")


def bulk_items(pop: Population, script, brand, service, staff) -> list[Any]:
    """The same script as ``post_bulk`` items, each at its moment."""
    items: list[Any] = []
    acc = {name: account.pk for name, account in pop.accounts.items()}
    for hours, op, args in script:
        at = moment(hours)
        key = f"{pop.prefix}{args['key']}" if "key" in args else None
        ref = items[args["hold"] if "hold" in args else args.get("txn", 0)] if items else None
        charge = {"brand_id": brand.pk, "service_id": service.pk, "currency": args.get("currency")}
        if op == "payment":
            item = PaymentItem(
                account_id=acc[args["account"]],
                amount=args["amount"],
                channel=args.get("channel", "other"),
                idempotency_key=key,
                caller=GATEWAY if key else None,
                at=at,
            )
        elif op in ("debit", "accrual"):
            cls = DebitItem if op == "debit" else AccrualItem
            item = cls(account_id=acc[args["account"]], amount=args["amount"], at=at, **charge)
        elif op == "hold_create":
            expires = moment(hours + args["expires_in"]) if "expires_in" in args else None
            item = HoldCreateItem(
                account_id=acc[args["account"]],
                amount=args["amount"],
                expires_at=expires,
                idempotency_key=key,
                at=at,
                **charge,
            )
        elif op == "hold_capture":
            item = HoldCaptureItem(hold=ref, amount=args.get("amount"), at=at)
        elif op == "hold_void":
            item = HoldVoidItem(hold=ref, at=at)
        elif op == "hold_expire":
            item = HoldExpireItem(hold=ref, at=at)
        elif op == "transfer":
            item = TransferItem(
                from_account_id=acc[args["source"]],
                to_account_id=acc[args["target"]],
                amount=args["amount"],
                at=at,
            )
        elif op == "refund":
            item = RefundItem(account_id=acc[args["account"]], amount=args["amount"], at=at)
        elif op == "adjustment":
            item = AdjustmentItem(
                account_id=acc[args["account"]],
                amount=args["amount"],
                reason="fix",
                caller=staff,
                at=at,
            )
        else:
            item = ReversalItem(transaction=ref, reason="undo", at=at)
        items.append(item)
    return items


def outcome(result: Any) -> tuple:
    if isinstance(result, DomainError):
        return ("refused", result.code)
    return ("ok", type(result).__name__, getattr(result, "replayed", False))


def picture(pop: Population) -> dict[str, Any]:
    """Everything the postings left on this population, named rather than numbered."""
    ids = [a.pk for a in pop.accounts.values()]
    name = pop.name_of
    accounts = {}
    for account_name, account in pop.accounts.items():
        account.refresh_from_db()
        accounts[account_name] = (
            account.balance,
            account.held,
            account.negative_since,
            account.spent_day,
            account.spent_day_on,
            account.spent_month,
            account.spent_month_on,
        )
    entries = [
        (name(e.account_id), name(e.subaccount_id), e.amount, e.balance_after, e.created_at)
        for e in Entry.objects.filter(account_id__in=ids).order_by("id")
    ]
    txns = list(Transaction.objects.filter(account_id__in=ids).order_by("id"))
    position = {t.pk: n for n, t in enumerate(txns)}
    transactions = [
        (
            t.kind,
            name(t.account_id),
            name(t.counter_account_id),
            t.amount,
            t.currency,
            t.created_at,
            t.caller,
            t.metadata,
            t.memo,
            t.channel,
            position.get(t.reversal_of_id),
            t.hold.reserved_on if t.hold_id else None,
        )
        for t in txns
    ]
    holds = [
        (
            name(h.account_id),
            name(h.payer_id),
            h.amount,
            h.status,
            h.captured_amount,
            h.reserved_on,
            h.expires_at,
            h.created_at,
            h.closed_at,
        )
        for h in Hold.objects.filter(account_id__in=ids).order_by("id")
    ]
    keys = sorted(
        (k.caller, k.key.removeprefix(pop.prefix), k.operation, k.created_at)
        for k in IdempotencyKey.objects.filter(key__startswith=pop.prefix)
    )
    return {
        "accounts": accounts,
        "entries": entries,
        "transactions": transactions,
        "holds": holds,
        "keys": keys,
    }


class Signals:
    """Records ``transaction_posted`` and ``hold_changed`` as (what, account name, ...)."""

    def __init__(self, pop: Population) -> None:
        self.pop, self.seen = pop, []

    def posted(self, sender, transaction, **kwargs):
        self.seen.append(("txn", transaction.kind, self.pop.name_of(transaction.account_id)))

    def hold(self, sender, hold, previous_status, **kwargs):
        name = self.pop.name_of(hold.account_id)
        self.seen.append(("hold", name, hold.status, previous_status, hold.pk is not None))

    def __enter__(self) -> Signals:
        transaction_posted.connect(self.posted)
        hold_changed.connect(self.hold)
        return self

    def __exit__(self, *exc) -> None:
        transaction_posted.disconnect(self.posted)
        hold_changed.disconnect(self.hold)


def test_post_bulk_matches_one_by_one_postings(brand, service, staff_user, clock):
    staff = Caller.for_user(staff_user)
    single_pop = build_population(brand, "a-")
    bulk_pop = build_population(brand, "b-")
    with Signals(single_pop) as single_signals:
        single = run_single(single_pop, SCRIPT, brand, service, staff, clock)
    clock.now = moment(80)
    with Signals(bulk_pop) as bulk_signals:
        bulk = post_bulk(bulk_items(bulk_pop, SCRIPT, brand, service, staff))

    assert [outcome(r) for r in bulk] == [outcome(r) for r in single]
    codes = {r.code for r in single if isinstance(r, DomainError)}
    assert codes == EXPECTED_CODES  # the script exercises every rule it claims to
    assert sum(1 for r in single if not isinstance(r, DomainError)) >= 25
    assert picture(bulk_pop) == picture(single_pop)
    assert bulk_signals.seen == single_signals.seen
    # Replays return the very rows the first items wrote.
    assert bulk[14].pk == bulk[1].pk and bulk[14].replayed and not bulk[1].replayed
    assert bulk[41].pk == bulk[16].pk and isinstance(bulk[41], Hold) and bulk[41].replayed
    # Results are the rows as written, ids included.
    for result in bulk:
        if isinstance(result, Transaction):
            stored = Transaction.objects.get(pk=result.pk)
            assert (stored.kind, stored.amount, stored.created_at) == (
                result.kind,
                result.amount,
                result.created_at,
            )
    assert Hold.objects.get(pk=bulk[4].pk).status == Hold.Status.CAPTURED
    assert bulk[4].status == Hold.Status.ACTIVE  # as the item left it
    assert verify_ledger() == []


def test_post_bulk_refused_item_changes_nothing_while_the_rest_post(
    make_account, brand, fund, clock
):
    """A transfer that fails after it moved the sender's state in memory (the receiver's
    balance would leave the stored range) leaves no trace: not in the sender's balance or
    counters, not in the rows, and the next item sees the state as it was."""
    sender = make_account(write_off_limit_day=D("100.00"))
    full = make_account()
    fund(sender, "100.00")
    fund(full, str(MAX_AMOUNT - D("1.00")))
    results = post_bulk(
        [
            TransferItem(from_account_id=sender.pk, to_account_id=full.pk, amount="5.00"),
            DebitItem(account_id=sender.pk, amount="100.00", brand_id=brand.pk),
            DebitItem(account_id=sender.pk, amount="0.01", brand_id=brand.pk),
            PaymentItem(account_id=sender.pk, amount="7.00"),
        ]
    )
    assert [outcome(r) for r in results] == [
        ("refused", "invalid_amount"),
        ("ok", "Transaction", False),
        ("refused", "write_off_limit_exceeded"),
        ("ok", "Transaction", False),
    ]
    sender.refresh_from_db()
    full.refresh_from_db()
    assert sender.balance == D("7.00")
    assert (sender.spent_day, sender.spent_month) == (D("100.00"), D("100.00"))
    assert full.balance == MAX_AMOUNT - D("1.00")
    assert not Transaction.objects.filter(kind="transfer").exists()
    assert list(
        Entry.objects.filter(account=sender).order_by("id").values_list("balance_after", flat=True)
    ) == [D("100.00"), D("0.00"), D("7.00")]


def test_post_bulk_history_in_the_past_keeps_the_ledger_consistent(
    make_account, brand, service, clock
):
    """Two months of history posted with past moments: rows carry their moments, counters
    and ``negative_since`` are those of the moments, and every ledger check passes."""
    payer = make_account(
        client=LegalEntityFactory(), credit_limit=D("500.00"), credit_period_days=20
    )
    employee = make_account(parent=payer, write_off_limit_day=D("300.00"))
    first = clock.now - timedelta(days=60)
    items: list[Any] = []
    for day in range(60):
        at = first + timedelta(days=day)
        if day % 10 == 0:
            items.append(PaymentItem(account_id=payer.pk, amount="400.00", channel="bank", at=at))
        debit = DebitItem(
            account_id=employee.pk, amount="55.00", brand_id=brand.pk, at=at + timedelta(hours=1)
        )
        items.append(debit)
        hold = HoldCreateItem(
            account_id=employee.pk, amount="20.00", brand_id=brand.pk, service_id=service.pk,
            at=at + timedelta(hours=2), expires_at=at + timedelta(hours=2, minutes=30),
        )  # fmt: skip
        items.append(hold)
        if day % 3 == 0:
            capture = HoldCaptureItem(hold=hold, amount="12.50", at=at + timedelta(hours=2.25))
            items.append(capture)
        elif day % 3 == 1:
            items.append(HoldVoidItem(hold=hold, at=at + timedelta(hours=3)))
        else:  # left to expire
            items.append(HoldExpireItem(hold=hold, at=at + timedelta(hours=2, minutes=31)))
        if day % 7 == 0:
            items.append(ReversalItem(transaction=debit, reason="back", at=at + timedelta(hours=5)))
        if day % 21 == 0:
            items.append(
                ReversalItem(transaction=capture, reason="back", at=at + timedelta(hours=6))
            )
    results = post_bulk(items)
    refused = [r for r in results if isinstance(r, DomainError)]
    posted = [r for r in results if not isinstance(r, DomainError)]
    assert len(posted) > 150
    # The payer runs into debt and its credit period runs out: debits and holds are then
    # refused, and so are the captures, voids and expiries of the holds that were not made.
    assert {r.code for r in refused} <= {
        "credit_period_expired",
        "insufficient_funds",
        "invalid_operation",
    }
    assert refused
    assert verify_ledger() == []
    for item, result in zip(items, results, strict=True):
        if isinstance(result, Transaction):
            assert result.created_at == item.at
            assert set(result.entries.values_list("created_at", flat=True)) == {item.at}
    payer.refresh_from_db()
    employee.refresh_from_db()
    last_write_off = max(
        item.at for item, r in zip(items, results, strict=True)
        if isinstance(item, DebitItem | HoldCreateItem) and not isinstance(r, DomainError)
    )  # fmt: skip
    assert employee.spent_day_on == last_write_off.astimezone(MSK).date()
    if payer.balance < 0:
        went_negative = Entry.objects.filter(account=payer, balance_after__lt=0)
        assert payer.negative_since <= clock.now
        assert payer.negative_since in set(went_negative.values_list("created_at", flat=True))
    assert Transaction.objects.filter(created_at__gte=clock.now).count() == 0


def test_post_bulk_idempotency_keys_behave_like_the_single_path(account, brand, clock):
    gateway = Caller.system("gateway")
    single = payment_post(account=account, amount="10.00", idempotency_key="k1", caller=gateway)
    results = post_bulk(
        [
            PaymentItem(account_id=account.pk, amount="10.00", idempotency_key="k1"),  # replay
            PaymentItem(account_id=account.pk, amount="11.00", idempotency_key="k1"),  # conflict
            PaymentItem(account_id=account.pk, amount="3.00", idempotency_key="k2"),
            PaymentItem(account_id=account.pk, amount="3.00", idempotency_key="k2"),  # same call
            PaymentItem(account_id=account.pk, amount="4.00", idempotency_key="k2"),
            DebitItem(
                account_id=account.pk, amount="999.00", brand_id=brand.pk, idempotency_key="k3"
            ),
            DebitItem(
                account_id=account.pk, amount="1.00", brand_id=brand.pk, idempotency_key="k3"
            ),
            HoldCreateItem(
                account_id=account.pk, amount="2.00", brand_id=brand.pk, idempotency_key="k4"
            ),
            AccrualItem(account.pk, D("1.00"), brand.pk, idempotency_key="x" * 256),
        ],
        caller=gateway,
    )
    assert [outcome(r) for r in results] == [
        ("ok", "Transaction", True),
        ("refused", "idempotency_conflict"),
        ("ok", "Transaction", False),
        ("ok", "Transaction", True),
        ("refused", "idempotency_conflict"),
        ("refused", "insufficient_funds"),  # refused: the key stays free ...
        ("ok", "Transaction", False),  # ... for the next request
        ("ok", "Hold", False),
        ("refused", "validation_error"),
    ]
    assert results[0].pk == single.pk
    assert results[3].pk == results[2].pk
    # Keys written by the bulk path replay through the single services, and the other way.
    again = payment_post(account=account, amount="3.00", idempotency_key="k2", caller=gateway)
    assert again.pk == results[2].pk and again.replayed
    hold = hold_create(
        account=account, amount="2.00", brand=brand, idempotency_key="k4", caller=gateway
    )
    assert hold.pk == results[7].pk and hold.replayed
    keys = dict(IdempotencyKey.objects.values_list("key", "operation"))
    assert keys == {"k1": "payment", "k2": "payment", "k3": "debit", "k4": "hold_create"}
    assert IdempotencyKey.objects.get(key="k4").hold_id == results[7].pk
    account.refresh_from_db()
    assert account.balance == D("12.00") and account.held == D("2.00")


def test_post_bulk_refers_to_rows_of_the_database_by_id(account, brand, fund, clock):
    fund(account, "100.00")
    hold = hold_create(account=account, amount="30.00", brand=brand)
    debit = debit_post(account=account, amount="10.00", brand=brand)
    reversed_payment = payment_post(account=account, amount="5.00")
    transaction_reverse(transaction_obj=reversed_payment, reason="duplicate")
    results = post_bulk(
        [
            HoldCaptureItem(hold=hold.pk, amount="25.00"),
            HoldVoidItem(hold=hold.pk),  # captured by the item before
            ReversalItem(transaction=debit.pk, reason="returned"),
            ReversalItem(transaction=reversed_payment.pk, reason="again"),
            HoldVoidItem(hold=10**9),
            ReversalItem(transaction=10**9, reason="unknown"),
            PaymentItem(account_id=10**9, amount="1.00"),
        ]
    )
    assert [outcome(r) for r in results] == [
        ("ok", "Transaction", False),
        ("refused", "hold_not_active"),
        ("ok", "Transaction", False),
        ("refused", "already_reversed"),
        ("refused", "not_found"),
        ("refused", "not_found"),
        ("refused", "not_found"),
    ]
    hold.refresh_from_db()
    account.refresh_from_db()
    assert (hold.status, hold.captured_amount) == (Hold.Status.CAPTURED, D("25.00"))
    assert results[0].hold_id == hold.pk
    assert results[2].reversal_of_id == debit.pk
    assert (account.balance, account.held) == (D("75.00"), D("0.00"))
    assert account.spent_day == D("25.00")  # the hold's 30, less 5 released, the debit reversed


def test_post_bulk_refuses_items_that_follow_a_refused_item(account, brand, fund, clock):
    fund(account, "10.00")
    hold = HoldCreateItem(account_id=account.pk, amount="50.00", brand_id=brand.pk)
    debit = DebitItem(account_id=account.pk, amount="0", brand_id=brand.pk)
    results = post_bulk(
        [hold, HoldCaptureItem(hold=hold), debit, ReversalItem(transaction=debit, reason="x")]
    )
    assert [outcome(r) for r in results] == [
        ("refused", "insufficient_funds"),
        ("refused", "invalid_operation"),
        ("refused", "invalid_amount"),
        ("refused", "invalid_operation"),
    ]


def test_post_bulk_rejects_calls_that_are_the_callers_mistake(account, brand, clock):
    late = PaymentItem(account_id=account.pk, amount="1.00", at=clock.now - timedelta(hours=1))
    early = PaymentItem(account_id=account.pk, amount="1.00", at=clock.now - timedelta(hours=2))
    with pytest.raises(ValueError, match="order"):
        post_bulk([late, early])
    with pytest.raises(ValueError, match="after now"):
        post_bulk(
            [PaymentItem(account_id=account.pk, amount="1.00", at=clock.now + timedelta(seconds=1))]
        )
    hold = HoldCreateItem(account_id=account.pk, amount="1.00", brand_id=brand.pk)
    with pytest.raises(ValueError, match="idempotency key"):
        post_bulk([hold, HoldVoidItem(hold=hold, idempotency_key="k")])
    with pytest.raises(ValueError, match="not earlier"):
        post_bulk([HoldVoidItem(hold=hold), hold])
    assert not Transaction.objects.exists() and not Hold.objects.exists()


def test_post_bulk_of_one_item_takes_the_single_statement_path(account, brand, fund):
    """A batch of one is written like a single posting: no COPY, the same queries."""
    fund(account, "10.00")
    debit_post(account=account, amount="1.00", brand=brand)  # system account looked up once

    def count(post) -> int:
        with CaptureQueriesContext(connection) as queries:
            post()
        return len(queries)

    with mock.patch("ledger.services.writer._write_many", side_effect=AssertionError):
        single = count(lambda: debit_post(account=account, amount="1.00", brand=brand))
        bulk = count(
            lambda: post_bulk([DebitItem(account_id=account.pk, amount="1.00", brand_id=brand.pk)])
        )
    assert bulk == single
    account.refresh_from_db()
    assert account.balance == D("7.00")


def test_post_bulk_gives_items_the_transaction_ids_taken_beforehand(account, brand, fund):
    """``transaction_ids``: item ``i``'s transaction gets the id taken for it (a refused
    item leaves its id unused); None takes one at the write; a single item too."""
    fund(account, "10.00")
    ids = take_transaction_ids(3)
    assert ids == sorted(ids) and len(set(ids)) == 3
    results = post_bulk(
        [
            PaymentItem(account_id=account.pk, amount="5.00"),
            DebitItem(account_id=account.pk, amount="999.00", brand_id=brand.pk),  # refused
            PaymentItem(account_id=account.pk, amount="2.00"),
            PaymentItem(account_id=account.pk, amount="1.00"),
        ],
        transaction_ids=[ids[0], ids[1], ids[2], None],
    )
    assert outcome(results[1]) == ("refused", "insufficient_funds")
    assert [results[0].pk, results[2].pk] == [ids[0], ids[2]]
    assert results[3].pk > ids[2]
    stored = Transaction.objects.filter(pk__in=[r.pk for r in results if r is not results[1]])
    assert sorted(stored.values_list("pk", flat=True)) == [ids[0], ids[2], results[3].pk]
    assert not Transaction.objects.filter(pk=ids[1]).exists()
    assert posted_payer(results[0]) == account.pk
    assert posted_payer(Transaction.objects.get(pk=ids[0])) is None  # read back: not known
    # The payer's balance after each posting, from memory, is the one stored.
    for result in (results[0], results[2], results[3]):
        stored_after = Entry.objects.get(transaction_id=result.pk, account_id=account.pk)
        assert posted_balance_after(result) == stored_after.balance_after
    assert [posted_balance_after(r) for r in (results[0], results[2], results[3])] == [
        D("15.00"),
        D("17.00"),
        D("18.00"),
    ]
    assert posted_balance_after(Transaction.objects.get(pk=ids[0])) is None
    (alone,) = take_transaction_ids(1)
    (single,) = post_bulk(
        [PaymentItem(account_id=account.pk, amount="1.00")], transaction_ids=[alone]
    )
    assert single.pk == alone and Transaction.objects.filter(pk=alone).exists()
    account.refresh_from_db()
    assert account.balance == D("19.00")
    assert verify_ledger() == []
    with pytest.raises(ValueError, match="one id"):
        post_bulk([PaymentItem(account_id=account.pk, amount="1.00")], transaction_ids=[])
