"""The demo's clients and accounts: who they are and how they use the brands.

``population_build`` decides everything in memory from the random generator (so a seed
gives the same population), then creates the clients and accounts through the accounts
services' bulk paths (``clients_create_bulk``, ``accounts_create_bulk``: payers first,
then the employees' sub-accounts under their companies). About 8% of the clients are
companies (40% of them corporate payers for employee meals), 15% employees with
sub-accounts, the rest households and consumers of the three brands.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from accounts import services as accounts_services
from accounts.models import Account
from brands.models import Brand
from demo.people import People
from demo.reference import HISTORY_DAYS

PROFILE_BRAND = {
    "utility": "energo",
    "business_utility": "energo",
    "telecom": "telecom",
    "business_telecom": "telecom",
    "food": "food",
    "corporate": "food",
    "employee": "food",
}
PAYER_PROFILES = ("utility", "telecom", "food")


@dataclass(slots=True, eq=False)
class Member:
    """One demo account: its profile, when its history starts, and what it subscribes to."""

    profile: str
    client: int  # index into the population's clients
    since: datetime
    limits: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    parent: Member | None = None
    children: list[Member] = field(default_factory=list)
    plan: str = ""
    area: Decimal = Decimal(0)
    closed: bool = False
    blocked: str = ""  # the reason, when the account is to be blocked
    id: int = 0
    number: str = ""

    @property
    def brand(self) -> str:
        return PROFILE_BRAND[self.profile]


@dataclass
class Population:
    clients: list[Any]
    members: list[Member]
    payers: list[Member]


BLOCK_SHARE = {"employee": 0.02}


def _limits(rng: random.Random, member: Member, now: datetime) -> None:
    """Credit lines and write-off limits by profile (the ledger enforces them)."""
    limits = member.limits
    profile = member.profile
    if profile == "telecom":
        member.plan = rng.choice(["s", "m", "l"])
        if rng.random() < 0.6:
            limits["credit_limit"] = Decimal(rng.choice([300, 500, 1000]))
            limits["credit_period_days"] = 30
    elif profile == "business_telecom":
        member.plan = rng.choice(["b5", "b9", "b15", "b25"])
        limits["credit_limit"] = Decimal(rng.choice([10000, 30000, 50000]))
        limits["credit_period_days"] = 45
    elif profile == "utility":
        member.area = Decimal(rng.randint(28, 95))
    elif profile == "business_utility":
        member.area = Decimal(rng.randint(200, 2000))
    elif profile == "food":
        if rng.random() < 0.3:
            limits["write_off_limit_transaction"] = Decimal(rng.choice([3000, 5000, 10000]))
    elif profile == "corporate":
        limits["credit_limit"] = Decimal(rng.choice([50000, 100000, 200000, 500000]))
        limits["credit_period_days"] = rng.choice([30, 45, 60])
        # Most credit lines run for a year; a few have already expired.
        limits["credit_expires_at"] = (now + timedelta(days=rng.randint(-40, 365))).date()
    elif profile == "employee":
        limits["write_off_limit_transaction"] = Decimal(rng.choice([1000, 1500, 2000]))
        limits["write_off_limit_day"] = Decimal(rng.choice([1500, 2000, 3000]))
        limits["write_off_limit_month"] = Decimal(rng.choice([15000, 20000, 30000]))


def _plan(rng: random.Random, people: People, size: int, now: datetime) -> Population:
    legal = round(size * 0.08) if size >= 3 else 0
    corporate = -(-legal * 2 // 5) if legal else 0
    employees = min(round(size * 0.15), size - legal) if corporate else 0
    individuals = size - legal - employees
    start = now - timedelta(days=HISTORY_DAYS)
    clients: list[dict[str, Any]] = []
    members: list[Member] = []
    payers: list[Member] = []

    def since() -> datetime:
        """Most accounts predate the history; some open during it."""
        if rng.random() < 0.15:
            return now - timedelta(days=rng.uniform(10, HISTORY_DAYS - 30))
        return start

    def add(member: Member) -> Member:
        _limits(rng, member, now)
        members.append(member)
        if member.parent is None:
            payers.append(member)
        share = BLOCK_SHARE.get(member.profile, 0.01)
        if rng.random() < share:
            member.blocked = "employee" if member.profile == "employee" else "client"
        return member

    for _ in range(individuals):
        clients.append(people.person())
        profile = rng.choices(PAYER_PROFILES, weights=[50, 30, 20])[0]
        first = add(Member(profile=profile, client=len(clients) - 1, since=since()))
        if rng.random() < 0.2:
            other = rng.choice([p for p in PAYER_PROFILES if p != profile])
            later = first.since + (now - timedelta(days=40) - first.since) * rng.uniform(0, 1)
            second = add(Member(profile=other, client=len(clients) - 1, since=later))
            second.closed = rng.random() < 0.1
            second.blocked = "" if second.closed else second.blocked

    corporates: list[Member] = []
    for index in range(legal):
        clients.append(people.company())
        if index < corporate:
            member = Member(profile="corporate", client=len(clients) - 1, since=start)
            member.name = "Корпоративное питание"
            corporates.append(add(member))
        else:
            profile = rng.choice(["business_utility", "business_telecom"])
            add(Member(profile=profile, client=len(clients) - 1, since=since()))

    for index in range(employees):
        company = corporates[index % len(corporates)]
        clients.append(people.person())
        member = Member(profile="employee", client=len(clients) - 1, since=since(), parent=company)
        member.name = "Питание сотрудника"
        company.children.append(member)
        add(member)

    for company in corporates:
        if company.children and rng.random() < 0.6:
            company.limits["write_off_limit_month"] = Decimal(len(company.children) * 20000)
    return Population(clients=clients, members=members, payers=payers)


def population_build(
    *, rng: random.Random, people: People, size: int, now: datetime, brands: dict[str, Brand]
) -> Population:
    """Plan ``size`` clients and their accounts, then create them through the services."""
    population = _plan(rng, people, size, now)
    clients = accounts_services.clients_create_bulk(clients=population.clients)
    population.clients = clients

    def specs(members: list[Member], parents: dict[int, Account]) -> list[dict[str, Any]]:
        return [
            {
                "client": clients[m.client],
                "brands": [brands[m.brand]],
                "parent": parents[id(m.parent)] if m.parent else None,
                "name": m.name,
                **m.limits,
            }
            for m in members
        ]

    payers = population.payers
    made = accounts_services.accounts_create_bulk(accounts=specs(payers, {}))
    for member, account in zip(payers, made, strict=True):
        member.id, member.number = account.pk, account.number
    by_member = {id(m): a for m, a in zip(payers, made, strict=True)}
    subs = [m for m in population.members if m.parent is not None]
    made = accounts_services.accounts_create_bulk(accounts=specs(subs, by_member))
    for member, account in zip(subs, made, strict=True):
        member.id, member.number = account.pk, account.number
    return population
