"""Deterministic Russian-looking clients for the demo: names, INNs, phones, e-mails, addresses.

Every choice comes from the ``random.Random`` handed in (and a Faker seeded with the same
seed), so the same seed gives the same people. Returns ``client_create`` field dicts.
"""

from __future__ import annotations

import random
from typing import Any

from faker import Faker
from faker.providers.person.ru_RU import Provider as RuPerson

from accounts.models import Client
from core.validators import inn_complete
from demo.reference import EMAIL_DOMAINS, LEGAL_FORMS, REGIONS, ogrn_complete, translit


class People:
    """Deterministic Russian-looking clients: names, INNs, phones, e-mails, addresses."""

    def __init__(self, rng: random.Random, faker: Faker, size: int) -> None:
        self.rng = rng
        self.faker = faker
        self.tax_ids: set[str] = set()
        self.phones: set[str] = set()
        self.addresses = [faker.address() for _ in range(min(3000, max(100, size // 20)))]

    def tax_id(self, digits: int) -> str:
        while True:
            region = self.rng.choice(REGIONS)
            inspection = self.rng.randint(1, 51)
            if digits == 12:
                value = inn_complete(f"{region}{inspection:02d}{self.rng.randrange(10**6):06d}")
            else:
                value = inn_complete(f"{region}{inspection:02d}{self.rng.randrange(10**5):05d}")
            if value not in self.tax_ids:
                self.tax_ids.add(value)
                return value

    def phone(self) -> str:
        while True:
            value = f"+79{self.rng.randrange(10**9):09d}"
            if value not in self.phones:
                self.phones.add(value)
                return value

    def address(self) -> str:
        return self.rng.choice(self.addresses)

    def person(self) -> dict[str, Any]:
        rng = self.rng
        if rng.random() < 0.5:
            last = rng.choice(RuPerson.last_names_male)
            first = rng.choice(RuPerson.first_names_male)
            middle = rng.choice(RuPerson.middle_names_male)
        else:
            last = rng.choice(RuPerson.last_names_female)
            first = rng.choice(RuPerson.first_names_female)
            middle = rng.choice(RuPerson.middle_names_female)
        email = ""
        if rng.random() < 0.8:
            email = (
                f"{translit(last)}.{translit(first[0])}{rng.randint(1, 999)}"
                f"@{rng.choice(EMAIL_DOMAINS)}"
            )
        tax_id = self.tax_id(12) if rng.random() < 0.7 else ""
        return dict(
            kind=Client.Kind.INDIVIDUAL,
            name=f"{last} {first} {middle}",
            legal_name="",
            tax_id=tax_id,
            kpp="",
            ogrn="",
            email=email,
            phone=self.phone(),
            address=self.address(),
            external_ref=f"LS-{rng.randrange(10**8):08d}" if rng.random() < 0.4 else "",
        )

    def company(self) -> dict[str, Any]:
        rng = self.rng
        name = self.faker.company()
        form, _, rest = name.partition(" ")
        if form == "ИП":  # a sole trader is not what we want for a corporate client
            form, name = "ООО", f"ООО {rest}"
        legal_name = f"{LEGAL_FORMS.get(form, form)} {rest}" if rest else name
        tax_id = self.tax_id(10)
        words = ["".join(ch for ch in word if ch.isascii() and ch.isalnum()) for word in
                 translit(rest).split()]  # fmt: skip
        domain = f"{next((word for word in words if word), 'company')}.ru"
        return dict(
            kind=Client.Kind.LEGAL_ENTITY,
            name=name,
            legal_name=legal_name,
            tax_id=tax_id,
            kpp=f"{tax_id[:4]}01001",
            ogrn=ogrn_complete(f"1{tax_id[:2]}{rng.randrange(10**9):09d}"),
            email=f"{rng.choice(['buh', 'info', 'office', 'finance'])}@{domain}",
            phone=self.phone(),
            address=self.address(),
            external_ref=f"CRM-{rng.randrange(10**6):06d}",
        )
