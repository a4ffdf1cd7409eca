"""``seed_demo``: demo data for ``make run``, written only through the apps' services.

In order: the demo users (``demo.users``); brands, catalogue and tariffs
(``demo.billing.catalogue_ensure``); clients and accounts (``demo.population``, the
accounts services' bulk paths); six months of ledger history in weekly rounds
(``demo.history``, ``ledger.services.post_bulk``); a few postings "now" through the
single services (payments, a transfer, a refund, an adjustment and its reversal,
holds); closing and blocking some accounts (``accounts.services``); then last month's
subscriptions, usage, meter readings, one issued invoice run per billed brand and the
invoices' PDFs (``demo.billing``). The same seed gives the same data (ids and account
numbers, drawn from sequences, aside).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.utils import timezone
from faker import Faker

from accounts import services as accounts_services
from accounts.models import Account, Client
from core.errors import DomainError
from demo.billing import Billing, BillingResult, catalogue_ensure
from demo.history import History
from demo.people import People
from demo.population import Member, Population, population_build
from demo.reference import BLOCK_REASONS, CLOSE_REASON, EMPLOYEE_BLOCK_REASON, HISTORY_DAYS
from demo.users import demo_users_ensure
from ledger import services as ledger


@dataclass
class SeedResult:
    clients: int = 0
    accounts: int = 0
    subaccounts: int = 0
    posted: int = 0
    refused: Counter = field(default_factory=Counter)
    live_postings: int = 0
    billing: BillingResult = field(default_factory=BillingResult)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        refused = ", ".join(f"{code} {n}" for code, n in sorted(self.refused.items())) or "none"
        billed = self.billing
        laps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.timings.items())
        return (
            f"{self.clients} clients, {self.accounts} accounts ({self.subaccounts} sub-accounts);"
            f" ledger: {self.posted} items posted, refused by the ledger: {refused};"
            f" {self.live_postings} live postings; {billed.subscriptions} subscriptions,"
            f" {billed.usage} usage records, {billed.readings} meter readings; {billed.runs}"
            f" invoice runs, {billed.invoices} invoices issued, {billed.pdfs} PDFs stored; {laps}"
        )


def _analyze(*tables: str) -> None:
    """Fresh planner statistics for tables that just grew by orders of magnitude (the
    ledger's and invoicing's look-ups by parent or account then use their indexes)."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


def demo_data_exists() -> bool:
    return Client.objects.exists()


def live_postings(population: Population, operator: Any, brands, services) -> int:
    """Postings through the single services, now: a tour of the operations on two food
    accounts. A refusal is a realistic outcome: it changes nothing and is not counted."""
    caller = ledger.Caller.for_user(operator)
    food = [m for m in population.payers if m.profile == "food" and not m.closed and not m.blocked]
    if len(food) < 2:
        return 0
    main, other = food[0].id, food[1].id
    meals = services["food"]["meals"]
    order = {"brand": brands["food"], "service": meals, "subject_type": "order", "caller": caller}
    done = 0

    def attempt(operation: Callable[[], Any]) -> Any:
        nonlocal done
        try:
            result = operation()
        except DomainError:
            return None
        done += 1
        return result

    attempt(
        lambda: ledger.payment_post(
            account=main, amount="5000.00", channel="card", memo="Пополнение", caller=caller
        )
    )
    attempt(
        lambda: ledger.transfer_post(
            from_account=main,
            to_account=other,
            amount="500.00",
            caller=caller,
            memo="Перевод между счетами клиентов",
        )
    )
    attempt(
        lambda: ledger.refund_post(
            account=main,
            amount="300.00",
            channel="card",
            caller=caller,
            memo="Возврат переплаты по заявлению клиента",
        )
    )
    adjustment = attempt(
        lambda: ledger.adjustment_post(
            account=main, amount="150.00", reason="Компенсация за перебой", caller=caller
        )
    )
    if adjustment is not None:
        attempt(
            lambda: ledger.transaction_reverse(
                transaction_obj=adjustment, reason="Компенсация начислена дважды", caller=caller
            )
        )
    for amount, settle in (("400.00", "capture"), ("200.00", "void"), ("350.00", None)):
        hold = attempt(
            lambda amount=amount: ledger.hold_create(
                account=main, amount=amount, subject_id=f"live-{amount}", **order
            )
        )
        if hold is not None and settle == "capture":
            attempt(lambda h=hold: ledger.hold_capture(hold=h, amount="320.00", caller=caller))
        elif hold is not None and settle == "void":
            attempt(lambda h=hold: ledger.hold_void(hold=h, caller=caller))
    return done


def statuses_set(population: Population, operator: Any, rng: random.Random) -> None:
    """Close the accounts clients gave up, block a few (through the accounts services)."""
    by_id = {a.pk: a for a in Account.objects.filter(pk__in=[m.id for m in population.members])}
    for member in population.members:
        account = by_id[member.id]
        if member.closed:
            accounts_services.account_close(
                account=account, closed_by=operator, reason=CLOSE_REASON
            )
        elif member.blocked:
            reason = (
                EMPLOYEE_BLOCK_REASON if member.blocked == "employee" else rng.choice(BLOCK_REASONS)
            )
            accounts_services.account_block(account=account, reason=reason, blocked_by=operator)


def seed_demo(
    *,
    clients: int,
    seed: int = 42,
    log: Callable[[str], None] | None = None,
    now: datetime | None = None,
    workers: int = 2,
    group_size: int = 1000,
    pdf_limit: int = 10000,
) -> SeedResult:
    """Load the demo data (see the module docstring); ``workers`` threads post the history
    and run the invoice chunks in parallel, each with its own database connection."""
    log = log or (lambda message: None)
    result = SeedResult()
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        now_mono = time.monotonic()
        result.timings[name] = now_mono - started
        started = now_mono
        log(f"{name}: {result.timings[name]:.1f}s")

    now = timezone.localtime(now or timezone.now(), ZoneInfo(settings.TIME_ZONE))
    history_start = now - timedelta(days=HISTORY_DAYS)
    billed_from = (now.replace(day=1) - timedelta(days=1)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    users = demo_users_ensure()
    brands, services = catalogue_ensure(history_start.date().replace(day=1))
    lap("users, brands, catalogue and tariffs")

    rng = random.Random(seed)
    faker = Faker("ru_RU")
    faker.seed_instance(seed)
    population = population_build(
        rng=rng, people=People(rng, faker, clients), size=clients, now=now, brands=brands
    )
    result.clients = len(population.clients)
    result.accounts = len(population.members)
    result.subaccounts = sum(1 for m in population.members if m.parent is not None)
    _analyze("accounts_client", "accounts_account", "accounts_account_brands")
    lap("clients and accounts")

    history = History(
        population=population, services=services, brands=brands, now=now, seed=seed,
        admin=users.admin, billed_from=billed_from,
    )  # fmt: skip
    posted = history.post(group_size=group_size, workers=workers, log=log)
    result.posted, result.refused = posted.posted, posted.refused
    lap("ledger history (post_bulk)")
    result.live_postings = live_postings(population, users.operator, brands, services)
    statuses_set(population, users.operator, random.Random(f"{seed}:statuses"))
    lap("live postings and statuses")

    billing = Billing(
        population=population, brands=brands, services=services, seed=seed,
        period_start=billed_from.date(), log=log,
    )  # fmt: skip
    billing.subscribe()
    billing.usage()
    billing.readings()
    lap("subscriptions, usage and readings")
    billing.run(admin=users.admin, workers=workers, pdf_limit=pdf_limit)
    result.billing = billing.result
    lap("invoice runs and PDFs")
    _analyze("ledger_transaction", "ledger_entry", "ledger_hold", "invoicing_invoice")
    lap("analyze")
    return result


__all__ = ["Member", "SeedResult", "demo_data_exists", "seed_demo"]
