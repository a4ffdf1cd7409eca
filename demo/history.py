"""Six months of ledger history, posted through the ledger's own bulk service.

The history is cut into weekly rounds. In each round every group of payers (a payer and
its sub-accounts, a thousand or so payers per group) gets that week's items: payments,
food orders (debits, or holds captured in full or in part, or voided), employees'
lunches on their sub-accounts, telecom fees and roaming, utility charges of the months
before invoicing, refunds, adjustments and a few reversals. ``ledger.services.post_bulk``
posts each group's week in one database transaction with the ledger's own planners and
writer: it locks the accounts, applies the limit and credit rules, refuses what they
refuse (the refusals are counted by code and skipped) and writes balances,
``balance_after``, counters and idempotency keys itself. Nothing here knows a rule.

What a payer does depends on where it stands (it pays its actual debt, tops up when
low), so each round reads the group's balances first. Groups are disjoint and an
account's rounds run in order, so worker threads (each with its own connection) can
take groups in parallel: each account's entries still follow its own chronology.
Every random choice comes from a generator seeded by (seed, group, week), so the same
seed gives the same history whatever the threads' timing.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.db import OperationalError
from psycopg.errors import DeadlockDetected

from accounts.models import Account
from brands.models import Brand, Service
from core.errors import DomainError
from demo.parallel import in_threads
from demo.population import Member, Population
from demo.reference import (
    ADJUSTMENT_REASONS,
    DEBIT_REVERSAL_REASON,
    HISTORY_DAYS,
    PAYMENT_REVERSAL_REASON,
    TARIFFS,
)
from ledger import services as ledger

WEEK = timedelta(days=7)
DEADLOCK_RETRIES = 5
SEED_CALLER = ledger.Caller.system("seed_demo")
GATEWAY_CALLER = ledger.Caller.system("gateway")
CHANNELS = ["bank", "agent", "card", "cash", "gateway"]
Ch = Account.Channel


@dataclass
class HistoryResult:
    posted: int = 0
    refused: Counter = field(default_factory=Counter)
    rounds: int = 0

    def merge(self, other: HistoryResult) -> None:
        self.posted += other.posted
        self.refused.update(other.refused)
        self.rounds += other.rounds


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


class Week:
    """The items of one group of payers for one week, in the order they happened."""

    def __init__(
        self, history: History, rng: random.Random | None, begins: datetime, ends: datetime
    ):
        self.h = history
        self.rng = rng
        self.begins = begins
        self.ends = ends
        self.items: list[tuple[datetime, int, Any]] = []

    def moment(
        self, hour_from: int = 8, hour_to: int = 22, day: datetime | None = None
    ) -> datetime:
        base = day or self.begins + timedelta(days=self.rng.randrange(7))
        base = base.replace(hour=0, minute=0, second=0, microsecond=0)
        seconds = self.rng.randrange((hour_to - hour_from) * 3600)
        at = base + timedelta(hours=hour_from, seconds=seconds)
        return min(max(at, self.begins), self.ends - timedelta(microseconds=1))

    def add(self, at: datetime, item: Any) -> Any:
        item.at = at
        self.items.append((at, len(self.items), item))
        return item

    def later(self, at: datetime, delay: timedelta) -> datetime:
        return min(at + delay, self.ends - timedelta(microseconds=1))

    def sorted_items(self) -> list[Any]:
        return [item for _, _, item in sorted(self.items, key=lambda row: row[:2])]

    # ----- kinds of items

    def payment(self, member: Member, amount: Decimal, at: datetime, channel: str) -> None:
        rng = self.rng
        fields: dict[str, Any] = {"channel": channel, "memo": "Оплата наличными в кассе"}
        if channel in (Ch.BANK, Ch.AGENT):
            fields["external_id"] = f"{channel[:2].upper()}{rng.randrange(10**10):010d}"
            fields["memo"] = f"Оплата по л/с {member.number}"
        elif channel == Ch.GATEWAY:
            key = f"gw_{rng.getrandbits(64):016x}"
            fields.update(external_id=key, idempotency_key=key, caller=GATEWAY_CALLER)
            fields["memo"] = "Пополнение через платёжный шлюз"
        elif channel == Ch.CARD:
            fields["memo"] = "Пополнение картой"
        item = self.add(at, ledger.PaymentItem(account_id=member.id, amount=amount, **fields))
        if channel != Ch.GATEWAY and rng.random() < 0.01:
            self.reverse(item, at, timedelta(hours=rng.randint(1, 72)), PAYMENT_REVERSAL_REASON)

    def reverse(self, item: Any, at: datetime, delay: timedelta, reason: str) -> None:
        self.add(self.later(at, delay), ledger.ReversalItem(transaction=item, reason=reason))

    def charge(self, kind: type, member: Member, amount: Decimal, at: datetime, **fields) -> Any:
        service = self.h.services[member.brand][fields.pop("service")]
        return self.add(
            at,
            kind(
                account_id=member.id,
                amount=amount,
                brand_id=service.brand_id,
                service_id=service.pk,
                **fields,
            ),
        )

    def order(self, member: Member, amount: Decimal, at: datetime, pending: bool = False) -> None:
        """A food order: a debit, or a hold captured (in full or in part) or voided."""
        rng = self.rng
        self.h.orders += 1
        subject = f"{member.id}-{at:%Y%m%d%H%M%S}"
        service = rng.choices(["meals", "groceries", "drinks"], weights=[70, 25, 5])[0]
        roll = 0.99 if pending else rng.random()
        if roll < 0.55:
            debit = self.charge(
                ledger.DebitItem, member, amount, at, service=service, subject_type="order",
                subject_id=subject, memo=f"Заказ № {subject}",
                metadata={"items": rng.randint(1, 6)},
            )  # fmt: skip
            if rng.random() < 0.01:
                delay = timedelta(minutes=rng.randint(10, 2880))
                self.reverse(debit, at, delay, DEBIT_REVERSAL_REASON)
            return
        food = self.h.services["food"][service]
        hold = self.add(
            at,
            ledger.HoldCreateItem(
                account_id=member.id, amount=amount, brand_id=food.brand_id, service_id=food.pk,
                subject_type="order", subject_id=subject, memo=f"Предзаказ № {subject}",
            ),
        )  # fmt: skip
        if pending:
            return
        delay = timedelta(minutes=rng.randint(20, 120))
        if roll < 0.93:
            captured = amount
            if rng.random() < 0.15:  # something was out of stock
                captured = _cents(amount * Decimal(rng.randint(60, 95)) / 100)
            self.add(self.later(at, delay), ledger.HoldCaptureItem(hold=hold, amount=captured))
        else:
            self.add(self.later(at, delay), ledger.HoldVoidItem(hold=hold))


class History:
    """Posts the weekly rounds of every group of payers (see the module docstring)."""

    def __init__(
        self,
        *,
        population: Population,
        services: dict[str, dict[str, Service]],
        brands: dict[str, Brand],
        now: datetime,
        seed: int,
        admin: Any,
        billed_from: datetime,
    ) -> None:
        self.population = population
        self.services = services
        self.brands = brands
        self.now = now
        self.seed = seed
        self.admin = ledger.Caller.for_user(admin)
        self.start = now - timedelta(days=HISTORY_DAYS)
        self.billed_from = billed_from  # the first month the invoice run bills
        self.orders = 0
        self.weeks = []
        begins = self.start
        while begins < now:
            self.weeks.append((begins, min(begins + WEEK, now)))
            begins += WEEK

    # ----- one group, one week

    def _week(self, number: int, group: list[tuple[int, Member]], balances: dict) -> list:
        begins, ends = self.weeks[number]
        week = Week(self, None, begins, ends)
        last = ends >= self.now
        for index, payer in group:
            # One generator per payer and week: the same seed gives the same history,
            # however the payers are grouped and whichever thread posts them.
            week.rng = rng = random.Random(f"{self.seed}:{index}:{number}")
            for member in [payer, *payer.children]:
                if member.closed or member.since >= ends:
                    continue
                first = member.since >= begins
                PLANS[member.profile](week, member, balances.get(member.id), first, last)
                if rng.random() < 0.02 / len(self.weeks):
                    amount = Decimal(rng.choice([100, 150, 250, 500]))
                    self.adjust(week, member, amount if rng.random() < 0.8 else -amount)
        return week.sorted_items()

    def adjust(self, week: Week, member: Member, amount: Decimal) -> None:
        reason = week.rng.choice(ADJUSTMENT_REASONS)
        item = ledger.AdjustmentItem(account_id=member.id, amount=amount, reason=reason)
        item.caller = self.admin
        week.add(week.moment(9, 18), item)

    def month_starts(self, begins: datetime, ends: datetime) -> list[datetime]:
        """First days of months (00:00) that fall in the week."""
        day = begins.replace(hour=0, minute=0, second=0, microsecond=0)
        found = []
        while day < ends:
            if day.day == 1 and day >= begins:
                found.append(day)
            day += timedelta(days=1)
        return found

    def run_group(self, group: list[tuple[int, Member]]) -> HistoryResult:
        result = HistoryResult()
        ids = [m.id for _, payer in group for m in [payer, *payer.children]]
        for number in range(len(self.weeks)):
            balances = {
                pk: (balance, held)
                for pk, balance, held in Account.objects.filter(pk__in=ids).values_list(
                    "pk", "balance", "held"
                )
            }
            items = self._week(number, group, balances)
            if not items:
                continue
            for outcome in _post(items, self.now):
                if isinstance(outcome, DomainError):
                    result.refused[outcome.code] += 1
                else:
                    result.posted += 1
            result.rounds += 1
        return result

    def post(self, *, group_size: int, workers: int, log: Callable[[str], None]) -> HistoryResult:
        payers = list(enumerate(self.population.payers))
        groups = [payers[i : i + group_size] for i in range(0, len(payers), group_size)]
        total = HistoryResult()

        def run(job: tuple[int, list[tuple[int, Member]]]) -> HistoryResult:
            done = self.run_group(job[1])
            log(f"history: group {job[0] + 1}/{len(groups)} posted")
            return done

        for done in in_threads(list(enumerate(groups)), run, workers):
            total.merge(done)
        return total


def _post(items: list, now: datetime) -> list:
    """``post_bulk`` in its own transaction, run again when the database chose it as a
    deadlock's victim (two rounds creating the same system accounts on first use, in
    opposite orders): the victim's transaction is rolled back whole, so the retry posts
    exactly what the first attempt would have (``post_bulk`` runs its items again the
    same way after a duplicate payment's race)."""
    for attempt in range(DEADLOCK_RETRIES):
        try:
            return ledger.post_bulk(items, caller=SEED_CALLER, now=now)
        except OperationalError as exc:
            if not isinstance(exc.__cause__, DeadlockDetected) or attempt + 1 == DEADLOCK_RETRIES:
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- what each does
# plan(week, member, (balance, held) or None for a sub-account, first week?, last week?)


def _utility(week: Week, m: Member, state, first: bool, last: bool) -> None:
    rng, h = week.rng, week.h
    balance = state[0]
    business = m.profile == "business_utility"
    for day in h.month_starts(week.begins, week.ends):
        period = day - timedelta(days=1)
        if day <= m.since or period >= h.billed_from:
            continue  # billed by the invoice run
        low, high = (20000, 250000) if business else (900, 4500)
        amount = _cents(Decimal(rng.randint(low * 100, high * 100)) / 100)
        week.charge(
            ledger.AccrualItem, m, amount, week.moment(1, 6, day + timedelta(days=1)),
            service="electricity", subject_type="billing_period", subject_id=f"{period:%Y-%m}",
            memo=f"Начисление за {period:%Y-%m} (до перехода на счета)",
        )  # fmt: skip
    if balance < 0 and rng.random() < (0.45 if not business else 0.5):
        debt = -balance
        roll = rng.random()
        if roll < 0.15:
            amount = _cents(debt * Decimal(rng.randint(30, 90)) / 100)  # a partial payment
        elif roll < 0.3:
            amount = (debt / 500).to_integral_value(rounding=ROUND_CEILING) * 500
        else:
            amount = debt
        channel = Ch.BANK if business else rng.choices(CHANNELS, weights=[30, 25, 25, 10, 10])[0]
        week.payment(m, amount, week.moment(), channel)


def _telecom(week: Week, m: Member, state, first: bool, last: bool) -> None:
    rng, h = week.rng, week.h
    balance = state[0]
    business = m.profile == "business_telecom"
    service = "corporate_plan" if business else "mobile_plan"
    fee = next(Decimal(p) for plan, _, p in TARIFFS[service] if plan == m.plan)
    for day in h.month_starts(week.begins, week.ends):
        if m.since <= day < h.billed_from:
            week.charge(
                ledger.AccrualItem, m, fee, week.moment(0, 1, day), service=service,
                subject_type="subscription_period", subject_id=f"{day:%Y-%m}",
                memo=f"Абонентская плата за {day:%Y-%m}",
            )  # fmt: skip
            balance -= fee
    if business:
        if balance < 0 and rng.random() < 0.3:
            week.payment(m, -balance, week.moment(9, 18), Ch.BANK)
        return
    if balance < fee and rng.random() < 0.6:
        amount = max(fee - balance, Decimal(rng.choice([300, 500])))
        amount = (amount / 100).to_integral_value(rounding=ROUND_CEILING) * 100
        week.payment(m, amount, week.moment(), rng.choice([Ch.CARD, Ch.GATEWAY, Ch.AGENT]))
    if rng.random() < 0.06:
        megabytes = rng.randint(20, 500)
        at = week.moment()
        week.charge(
            ledger.DebitItem, m, _cents(Decimal(megabytes) * Decimal("0.99")), at,
            service="roaming_data", subject_type="usage", subject_id=f"{at:%Y%m%d}",
            metadata={"quantity": str(megabytes), "unit": "MB"}, memo="Интернет в роуминге",
        )  # fmt: skip


def _food(week: Week, m: Member, state, first: bool, last: bool) -> None:
    rng = week.rng
    balance, held = state
    if first or (balance - held < 1500 and rng.random() < 0.7):
        amount = Decimal(rng.choice([1000, 2000, 3000, 5000]))
        week.payment(m, amount, week.moment(), rng.choice([Ch.CARD, Ch.GATEWAY]))
    for _ in range(rng.choices([0, 1, 2], weights=[55, 35, 10])[0]):
        week.order(m, _cents(Decimal(rng.randint(35000, 350000)) / 100), week.moment(11, 23))
    if rng.random() < 0.003 and balance - held >= 100:
        amount = _cents((balance - held) * Decimal(rng.randint(30, 100)) / 100)
        week.add(
            week.moment(),
            ledger.RefundItem(
                account_id=m.id, amount=amount, channel=Ch.CARD,
                memo="Возврат переплаты по заявлению клиента",
            ),
        )  # fmt: skip
    _preorder(week, m, last)


def _preorder(week: Week, m: Member, last: bool) -> None:
    if last and week.rng.random() < 0.15:
        at = week.h.now - timedelta(minutes=week.rng.randint(30, 1200))
        if at >= week.begins:
            week.order(m, _cents(Decimal(week.rng.randint(30000, 150000)) / 100), at, True)


def _corporate(week: Week, m: Member, state, first: bool, last: bool) -> None:
    balance = state[0]
    days = week.h.month_starts(week.begins, week.ends)
    if first or days:
        budget = Decimal(len(m.children) * week.rng.choice([6000, 8000, 10000]))
        amount = max(-balance, Decimal(0)) + budget
        if amount > 0:
            day = days[0] + timedelta(days=week.rng.randint(1, 4)) if days else None
            week.payment(m, amount, week.moment(9, 18, day), Ch.BANK)


def _employee(week: Week, m: Member, state, first: bool, last: bool) -> None:
    rng = week.rng
    for weekday in range(5):
        if rng.random() < 0.15:
            day = week.begins + timedelta(days=weekday)
            amount = _cents(Decimal(rng.randint(25000, 120000)) / 100)
            week.order(m, amount, week.moment(11, 15, day))
    _preorder(week, m, last)


PLANS: dict[str, Callable[..., None]] = {
    "utility": _utility,
    "business_utility": _utility,
    "telecom": _telecom,
    "business_telecom": _telecom,
    "food": _food,
    "corporate": _corporate,
    "employee": _employee,
}
