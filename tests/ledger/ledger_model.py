"""The plain Python model of the ledger that test_properties.py checks the real one against."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from hypothesis import strategies as st

from accounts.models import Account
from ledger.models import Hold

D = Decimal
ZERO = D("0.00")
OK = None  # the predicted "code" of a success
# Late on the last day of a month: moving the clock crosses days and months soon.
START = datetime(2026, 1, 31, 21, 0, tzinfo=ZoneInfo("Europe/Moscow"))
MAX_ACCOUNTS = 7


def cents(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda n: D(n).scaleb(-2).quantize(D("0.01")))


# Round amounts meet the limits exactly now and then; random cents test everything else.
AMOUNTS = st.sampled_from([D("10.00"), D("20.00"), D("40.00"), D("60.00")]) | cents(1, 15_000)
LIMITS = st.sampled_from([None, D("40.00"), D("100.00"), D("250.00")])
KEYS = st.none() | st.sampled_from(["k1", "k2", "k3"])


class FrozenClock:
    """``timezone.now`` for the services: time is outside the system, the machine moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    @property
    def today(self) -> date:
        return timezone.localtime(self.now).date()


# --------------------------------------------------------------------------- the model


@dataclass
class MAccount:
    id: int
    parent: int | None
    status: str = Account.Status.OPEN
    credit_limit: Decimal = ZERO
    credit_period_days: int | None = None
    credit_expires_at: date | None = None
    limit_transaction: Decimal | None = None
    limit_day: Decimal | None = None
    limit_month: Decimal | None = None
    balance: Decimal = ZERO
    held: Decimal = ZERO
    negative_since: datetime | None = None


@dataclass
class MHold:
    id: int
    chain: tuple[int, ...]
    amount: Decimal
    reserved_on: date
    expires_at: datetime
    status: str = Hold.Status.ACTIVE
    captured: Decimal = ZERO
    capture_reversed: bool = False

    @property
    def payer(self) -> int:
        return self.chain[-1]

    def counted(self) -> Decimal:
        """What this hold counts against write-off limits (on its reservation day)."""
        if self.status == Hold.Status.ACTIVE:
            return self.amount
        if self.status == Hold.Status.CAPTURED and not self.capture_reversed:
            return self.captured
        return ZERO


@dataclass
class MTransaction:
    id: int
    kind: str
    legs: list[tuple[int, Decimal]]  # (payer, signed amount)
    # A discretionary write-off made directly (debit, transfer): the chain it counts on.
    write_off_chain: tuple[int, ...] = ()
    amount: Decimal = ZERO
    booked_on: date | None = None
    hold: int | None = None
    reversed: bool = False


@dataclass
class Model:
    clock: FrozenClock
    accounts: dict[int, MAccount] = field(default_factory=dict)
    holds: dict[int, MHold] = field(default_factory=dict)
    transactions: dict[int, MTransaction] = field(default_factory=dict)
    keys: dict[str, tuple[tuple[Any, ...], int]] = field(default_factory=dict)

    # ---- structure

    def chain(self, account_id: int) -> tuple[int, ...]:
        ids = [account_id]
        while self.accounts[ids[-1]].parent is not None:
            ids.append(self.accounts[ids[-1]].parent)
        return tuple(ids)

    def payer(self, account_id: int) -> MAccount:
        return self.accounts[self.chain(account_id)[-1]]

    # ---- write-off counters

    def write_offs(self) -> Iterator[tuple[tuple[int, ...], date, Decimal]]:
        for txn in self.transactions.values():
            if txn.write_off_chain and not txn.reversed:
                yield txn.write_off_chain, txn.booked_on, txn.amount
        for hold in self.holds.values():
            yield hold.chain, hold.reserved_on, hold.counted()

    def spent(self, account_id: int) -> tuple[Decimal, Decimal]:
        """(day, month) write-offs counted against this account's own limits today."""
        today = self.clock.today
        day = month = ZERO
        for chain, booked_on, amount in self.write_offs():
            if account_id in chain:
                if booked_on == today:
                    day += amount
                if (booked_on.year, booked_on.month) == (today.year, today.month):
                    month += amount
        return day, month

    # ---- predictions (the order of the checks is the documented order of refusals)

    def blocked(self, chain: tuple[int, ...]) -> bool:
        return any(self.accounts[a].status == Account.Status.BLOCKED for a in chain)

    def limit_refusal(self, chain: tuple[int, ...], amount: Decimal) -> str | None:
        for account_id in chain:
            acc = self.accounts[account_id]
            day, month = self.spent(account_id)
            for limit, spent in (
                (acc.limit_transaction, ZERO),
                (acc.limit_day, day),
                (acc.limit_month, month),
            ):
                if limit is not None and spent + amount > limit:
                    return "write_off_limit_exceeded"
        return None

    def funds_refusal(self, payer: MAccount, amount: Decimal) -> str | None:
        own = payer.balance - payer.held
        if amount <= own:
            return None
        if payer.credit_limit <= 0:
            return "insufficient_funds"
        now = self.clock.now
        if payer.credit_expires_at is not None and payer.credit_expires_at < self.clock.today:
            return "credit_limit_expired"
        if (
            payer.credit_period_days is not None
            and payer.negative_since is not None
            and now >= payer.negative_since + timedelta(days=payer.credit_period_days)
        ):
            return "credit_period_expired"
        return None if amount <= own + payer.credit_limit else "insufficient_funds"

    def subtree_levels(self, account_id: int) -> int:
        children = [a.id for a in self.accounts.values() if a.parent == account_id]
        return max((1 + self.subtree_levels(c) for c in children), default=0)

    def counted_this_month(self, account_id: int) -> bool:
        """Whether write-offs counted in the current month went through this account."""
        today = self.clock.today
        return any(
            account_id in chain and amount and (on.year, on.month) == (today.year, today.month)
            for chain, on, amount in self.write_offs()
        )

    def move_refusal(self, account_id: int, parent_id: int | None) -> str | None:
        acc = self.accounts[account_id]
        if parent_id is not None:
            path = self.chain(parent_id)
            if account_id in path:
                return "invalid_account_structure"  # a cycle
            depth = 1 + len(path) + self.subtree_levels(account_id)
            if depth > settings.BILLING_MAX_ACCOUNT_DEPTH:
                return "invalid_account_structure"  # too deep
            if acc.balance or acc.held:
                return "account_has_funds"
        if acc.parent != parent_id and self.subtree_has_active_holds(account_id):
            # Their reservations sit on the current payer and count against the
            # current chain's limits (an expired hold not yet swept still counts).
            return "account_has_funds"
        if parent_id is not None and (
            acc.credit_limit or acc.credit_period_days is not None or acc.credit_expires_at
        ):
            return "invalid_account_structure"  # a sub-account has no credit terms
        return None

    def subtree_has_active_holds(self, account_id: int) -> bool:
        """Whether a hold is active on the account or on an account below it."""
        return any(
            h.status == Hold.Status.ACTIVE and account_id in h.chain for h in self.holds.values()
        )

    def write_off_refusal(self, account_id: int, amount: Decimal) -> str | None:
        chain = self.chain(account_id)
        if self.blocked(chain):
            return "account_blocked"
        return self.limit_refusal(chain, amount) or self.funds_refusal(
            self.accounts[chain[-1]], amount
        )

    def key_outcome(self, key: str | None, request: tuple[Any, ...]) -> tuple[str, int | None]:
        """("run", None), ("replay", original id) or ("idempotency_conflict", None)."""
        if key is None or key not in self.keys:
            return "run", None
        seen, result_id = self.keys[key]
        return ("replay", result_id) if seen == request else ("idempotency_conflict", None)

    # ---- effects

    def move(self, payer_id: int, amount: Decimal) -> None:
        payer = self.accounts[payer_id]
        payer.balance += amount
        if payer.balance < 0:
            if payer.negative_since is None:
                payer.negative_since = self.clock.now
        else:
            payer.negative_since = None

    def post(self, txn: MTransaction) -> None:
        for payer_id, amount in txn.legs:
            self.move(payer_id, amount)
        self.transactions[txn.id] = txn


# --------------------------------------------------------------------------- the machine
