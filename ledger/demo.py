"""Demo data: brands, a service catalogue, clients, accounts and six months of ledger history.

``manage.py seed_demo`` calls :func:`seed_demo`. It is built to load 100,000
clients in a couple of minutes, so it does not post through the services one
row at a time. Instead:

* every random choice comes from one ``random.Random(seed)`` (person names from
  Faker's ru_RU word lists, company names and addresses from a Faker seeded
  with the same seed), so the same ``--seed`` gives the same data;
* ids come from the tables' own sequences in bulk (``nextval`` over
  ``generate_series``) and account numbers from ``account_numbers_allocate``,
  so rows can reference each other before they are written;
* the history is simulated in memory, one payer (with its sub-accounts) at a
  time, in chronological order, with the rules the services apply: status,
  write-off limits per transaction / day / month with the same spent counters,
  available funds and credit (limit, period, expiry), holds reserving funds
  until captured (fully or partly), voided or expired, reversals mirroring
  their original, ``negative_since``;
* everything is written with PostgreSQL ``COPY``. Transactions and entries get
  ids in chronological order, so the ``balance_after`` chain of each account is
  the running sum of its entries ordered by id, exactly as if the services had
  posted them. The ledger's append-only triggers forbid UPDATE and DELETE
  only; inserting history is allowed.

Finally a few postings go through the real services (payments, debits,
transfers, a hold) "now", which shows that the bulk-written state and the
services agree. ``ledger_verify`` passes afterwards.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.utils import timezone
from faker import Faker
from faker.providers.person.ru_RU import Provider as RuPerson
from psycopg import sql

from accounts.models import Account, Client
from accounts.services import account_numbers_allocate
from brands.models import Brand, Service
from core.errors import DomainError
from core.validators import inn_complete
from ledger import services as ledger_services
from ledger.models import Hold, TransactionKind

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
CURRENCY = "RUB"
HISTORY_DAYS = 183
SEED_CALLER = "system:seed_demo"
OPERATORS_GROUP = "Operators"

# --------------------------------------------------------------------------- reference data

BRANDS: list[dict[str, Any]] = [
    {
        "code": "energo",
        "name": "ГорЭнергоСбыт",
        "legal_name": "АО «Городская энергосбытовая компания»",
        "inn_body": "770412345",
        "kpp": "770401001",
        "ogrn_body": "102770012345",
        "address": "119334, г. Москва, ул. Вавилова, д. 9",
        "bank_name": "ПАО Сбербанк",
        "bank_bik": "044525225",
        "bank_account": "40702810938000012345",
        "bank_correspondent_account": "30101810400000000225",
        "invoice_prefix": "GES",
        "default_vat_rate": Decimal("20.00"),
    },
    {
        "code": "telecom",
        "name": "СвязьТелеком",
        "legal_name": "ПАО «СвязьТелеком»",
        "inn_body": "780598765",
        "kpp": "780501001",
        "ogrn_body": "102780054321",
        "address": "191186, г. Санкт-Петербург, ул. Большая Морская, д. 18",
        "bank_name": "АО «Альфа-Банк»",
        "bank_bik": "044525593",
        "bank_account": "40702810401300098765",
        "bank_correspondent_account": "30101810200000000593",
        "invoice_prefix": "STK",
        "default_vat_rate": Decimal("20.00"),
    },
    {
        "code": "food",
        "name": "ВкусДоставка",
        "legal_name": "ООО «Вкусная доставка»",
        "inn_body": "773055512",
        "kpp": "773001001",
        "ogrn_body": "117774655512",
        "address": "121099, г. Москва, Смоленская пл., д. 3",
        "bank_name": "АО «ТБанк»",
        "bank_bik": "044525974",
        "bank_account": "40702810210000555123",
        "bank_correspondent_account": "30101810145250000974",
        "invoice_prefix": "VKD",
        "default_vat_rate": Decimal("10.00"),
    },
]

# brand code -> [(code, name, unit, VAT %)]
SERVICES: dict[str, list[tuple[str, str, str, str]]] = {
    "energo": [
        ("electricity", "Электроэнергия", "kWh", "20.00"),
        ("cold_water", "Холодное водоснабжение", "m3", "20.00"),
        ("heating", "Отопление", "Gcal", "20.00"),
        ("capital_repair", "Взнос на капитальный ремонт", "m2", "0.00"),
    ],
    "telecom": [
        ("mobile_plan", "Тариф «Мобильный»", "month", "20.00"),
        ("home_internet", "Домашний интернет", "month", "20.00"),
        ("roaming_data", "Интернет в роуминге", "MB", "20.00"),
        ("corporate_plan", "Корпоративный тариф", "month", "20.00"),
    ],
    "food": [
        ("meals", "Готовые блюда", "order", "10.00"),
        ("groceries", "Продукты", "order", "10.00"),
        ("drinks", "Напитки", "order", "20.00"),
        ("delivery", "Доставка", "order", "20.00"),
    ],
}

# Tariffs used to turn quantities into charges (the invoicing app will own real tariffs).
TARIFFS = {
    "electricity": Decimal("6.43"),
    "electricity_business": Decimal("8.91"),
    "cold_water": Decimal("52.10"),
    "heating": Decimal("2950.00"),
    "capital_repair": Decimal("12.50"),
}

BLOCK_REASONS = [
    "Заявление клиента об утере карты",
    "Подозрение на мошенничество",
    "Задолженность более 90 дней",
    "Запрос службы безопасности",
]
CLOSE_REASON = "Договор расторгнут по заявлению клиента"
EMPLOYEE_BLOCK_REASON = "Сотрудник уволен"
PAYMENT_REVERSAL_REASON = "Платёж зачислен ошибочно"
DEBIT_REVERSAL_REASON = "Отмена заказа по обращению клиента"
ACCRUAL_REVERSAL_REASON = "Начисление по ошибочным показаниям"
ADJUSTMENT_REASONS = [
    "Компенсация за перебой в обслуживании",
    "Перерасчёт по обращению клиента",
    "Корректировка после сверки с банком",
]
EMAIL_DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "rambler.ru", "bk.ru", "list.ru"]
REGIONS = ["77", "78", "50", "66", "16", "52", "54", "23", "61", "63", "74", "02"]
LEGAL_FORMS = {
    "ООО": "Общество с ограниченной ответственностью",
    "АО": "Акционерное общество",
    "ЗАО": "Закрытое акционерное общество",
    "ОАО": "Открытое акционерное общество",
    "ПАО": "Публичное акционерное общество",
    "НПО": "Научно-производственное объединение",
    "РАО": "Российское акционерное общество",
}
_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya",
    }
)  # fmt: skip


def translit(text: str) -> str:
    return text.lower().translate(_TRANSLIT)


def ogrn_complete(body: str) -> str:
    """OGRN (13 digits) or OGRNIP (15 digits) from its body, with the check digit."""
    if len(body) == 12:
        return body + str(int(body) % 11 % 10)
    if len(body) == 14:
        return body + str(int(body) % 13 % 10)
    raise ValueError("OGRN body must have 12 or 14 digits")


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- in-memory rows


@dataclass(slots=True, eq=False)
class ClientRow:
    id: int
    kind: str
    name: str
    legal_name: str
    tax_id: str
    kpp: str
    ogrn: str
    email: str
    phone: str
    address: str
    external_ref: str
    created_at: datetime


@dataclass(slots=True, eq=False)
class AccountRow:
    id: int
    number: str
    client: ClientRow
    profile: str
    brand_ids: list[int]
    created_at: datetime
    parent: AccountRow | None = None
    name: str = ""
    status: str = Account.Status.OPEN
    status_reason: str = ""
    status_changed_at: datetime | None = None
    status_changed_by_id: int | None = None
    credit_limit: Decimal = ZERO
    credit_period_days: int | None = None
    credit_expires_at: date | None = None
    write_off_limit_transaction: Decimal | None = None
    write_off_limit_day: Decimal | None = None
    write_off_limit_month: Decimal | None = None
    # running state, as the services keep it
    balance: Decimal = ZERO
    held: Decimal = ZERO
    negative_since: datetime | None = None
    spent_day: Decimal = ZERO
    spent_day_on: date | None = None
    spent_month: Decimal = ZERO
    spent_month_on: date | None = None
    children: list[AccountRow] = field(default_factory=list)
    # simulation parameters
    monthly_fee: Decimal = ZERO

    def blocked_at(self, moment: datetime) -> bool:
        return self.status == Account.Status.BLOCKED and self.status_changed_at <= moment

    def chain(self) -> list[AccountRow]:
        chain = [self]
        while chain[-1].parent is not None:
            chain.append(chain[-1].parent)
        return chain


@dataclass(slots=True, eq=False)
class HoldRow:
    id: int
    account: AccountRow
    payer: AccountRow
    amount: Decimal
    brand_id: int
    service_id: int
    subject_id: str
    memo: str
    created_at: datetime
    expires_at: datetime
    reserved_on: date
    status: str = Hold.Status.ACTIVE
    captured_amount: Decimal = ZERO
    closed_at: datetime | None = None


@dataclass(slots=True, eq=False)
class TxnRow:
    seq: int
    kind: str
    account: AccountRow
    amount: Decimal
    created_at: datetime
    entries: list[tuple[int, int | None, Decimal, Decimal | None]]
    brand_id: int | None = None
    service_id: int | None = None
    channel: str = ""
    subject_type: str = ""
    subject_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    memo: str = ""
    external_id: str = ""
    reversal_of: TxnRow | None = None
    hold: HoldRow | None = None
    caller: str = SEED_CALLER
    created_by_id: int | None = None
    idempotency_key: str = ""
    id: int = 0


@dataclass
class SeedResult:
    clients: int = 0
    accounts: int = 0
    subaccounts: int = 0
    transactions: int = 0
    entries: int = 0
    holds: int = 0
    live_postings: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.timings.items())
        return (
            f"{self.clients} clients, {self.accounts} accounts ({self.subaccounts} sub-accounts), "
            f"{self.transactions} transactions, {self.entries} entries, {self.holds} holds, "
            f"{self.live_postings} live postings through the services; {parts}"
        )


# --------------------------------------------------------------------------- users, brands


def ensure_users() -> tuple[Any, Any]:
    """The superuser admin/admin and a staff user "operator" in the Operators group."""
    user_model = get_user_model()
    admin = user_model.objects.filter(username="admin").first()
    if admin is None:
        admin = user_model.objects.create_superuser("admin", "admin@example.com", "admin")
    group, _ = Group.objects.get_or_create(name=OPERATORS_GROUP)
    group.permissions.set(operator_permissions())
    operator = user_model.objects.filter(username="operator").first()
    if operator is None:
        operator = user_model.objects.create_user(
            "operator", "operator@example.com", "operator", is_staff=True
        )
    operator.groups.add(group)
    return admin, operator


def operator_permissions() -> list[Permission]:
    """Operators see everything, edit clients and account limits, block, post money.

    Ledger rows themselves are never edited: the ``post_*`` permissions let a
    user post through the admin's forms and the API (which call the services),
    ``reverse_transaction`` reverse, ``settle_hold`` capture and void holds, and
    ``post_adjustment`` make manual corrections.
    """
    wanted = Permission.objects.filter(
        content_type__app_label__in=["brands", "accounts", "ledger"],
        codename__startswith="view_",
    )
    extra = [
        ("accounts", "add_client"),
        ("accounts", "change_client"),
        ("accounts", "add_account"),
        ("accounts", "change_account"),
        ("accounts", "block_account"),
        ("ledger", "post_payment"),
        ("ledger", "post_debit"),
        ("ledger", "post_refund"),
        ("ledger", "reverse_transaction"),
        ("ledger", "settle_hold"),
        ("ledger", "post_adjustment"),
    ]
    perms = list(wanted)
    for app_label, codename in extra:
        perms.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return perms


def ensure_brands() -> tuple[list[Brand], dict[str, dict[str, Service]]]:
    """The three demo brands and their catalogues (reused when they already exist)."""
    brands = []
    services: dict[str, dict[str, Service]] = {}
    for spec in BRANDS:
        spec = dict(spec)
        tax_id = inn_complete(spec.pop("inn_body"))
        ogrn = ogrn_complete(spec.pop("ogrn_body"))
        brand = Brand.objects.filter(code=spec["code"]).first()
        if brand is None:
            brand = Brand(tax_id=tax_id, ogrn=ogrn, **spec)
            brand.full_clean()
            brand.save()
        brands.append(brand)
        services[brand.code] = {}
        for code, name, unit, vat in SERVICES[brand.code]:
            service = Service.objects.filter(brand=brand, code=code).first()
            if service is None:
                service = Service(brand=brand, code=code, name=name, unit=unit, vat_rate=vat)
                service.full_clean()
                service.save()
            services[brand.code][code] = service
    return brands, services


# --------------------------------------------------------------------------- bulk helpers


def _sequence_values(table: str, count: int) -> list[int]:
    """``count`` fresh ids from the table's sequence (concurrent inserts stay safe)."""
    if count == 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _reserve_ids(table: str, count: int) -> range:
    """A block of ``count`` consecutive ids from the table's sequence, in one round trip.

    The table is locked against inserts (SHARE ROW EXCLUSIVE) until the end of
    the transaction, so nobody else can draw from the sequence in between.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        sequence = cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s)", [sequence])
        first = cursor.fetchone()[0]
        if count > 1:
            cursor.execute("SELECT setval(%s, %s)", [sequence, first + count - 1])
    return range(first, first + max(count, 0))


@contextmanager
def _bulk_load(tables: list[str]) -> Iterator[None]:
    """Load into ``tables`` the way pg_restore does: data first, then indexes and foreign keys.

    Inside the caller's transaction (as the tables' owner), the tables' foreign keys and
    secondary (non-constraint) indexes are dropped, their triggers disabled and, after the
    block, created again
    from their own definitions: every foreign key is then validated in one pass
    over the table instead of one lookup per row. DDL is transactional, so an
    error anywhere rolls all of it back. The tables are locked exclusively
    until the transaction ends.
    """
    with connection.cursor() as cursor:
        # Pending deferred foreign-key checks (rows written earlier in this
        # transaction) would forbid the ALTER TABLEs: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])"
            " ORDER BY conrelid::regclass::text, conname",
            [tables],
        )
        foreign_keys = cursor.fetchall()
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid = ANY(%s::regclass[]) AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
            " ORDER BY 1",
            [tables],
        )
        indexes = cursor.fetchall()
        for table, name, _ in foreign_keys:
            cursor.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
        for name, _ in indexes:
            cursor.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        # Row triggers off during the load, as pg_restore --disable-triggers does: the
        # ledger's zero-sum check would look every entry's transaction up in a table whose
        # indexes are gone. The same check runs once, set-based, after the load.
        for table in tables:
            cursor.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table))
            )
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for table in tables:
            cursor.execute(
                sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table))
            )
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute(
            "SELECT transaction_id FROM ledger_entry GROUP BY transaction_id, currency"
            " HAVING sum(amount) <> 0 LIMIT 1"
        )
        unbalanced = cursor.fetchone()
        if unbalanced:
            raise AssertionError(f"demo transaction {unbalanced[0]} does not sum to zero")
        for table, name, definition in foreign_keys:
            cursor.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
                + sql.SQL(definition)
            )
        # Django creates its foreign keys DEFERRABLE INITIALLY DEFERRED: back to that.
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _copy(table: str, columns: Iterable[str], rows: Iterator[tuple]) -> int:
    count = 0
    with connection.cursor() as cursor:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


# --------------------------------------------------------------------------- people


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

    def person(self, client_id: int, created_at: datetime) -> ClientRow:
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
        return ClientRow(
            id=client_id,
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
            created_at=created_at,
        )

    def company(self, client_id: int, created_at: datetime) -> ClientRow:
        rng = self.rng
        name = self.faker.company()
        form, _, rest = name.partition(" ")
        if form == "ИП":  # a sole trader is not what we want for a corporate client
            form, name = "ООО", f"ООО {rest}"
        legal_name = f"{LEGAL_FORMS.get(form, form)} {rest}" if rest else name
        tax_id = self.tax_id(10)
        domain = f"{translit(rest).strip('«»').split()[0] if rest else 'company'}.ru"
        domain = "".join(ch for ch in domain if ch.isalnum() or ch in ".-") or "company.ru"
        return ClientRow(
            id=client_id,
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
            created_at=created_at,
        )


# --------------------------------------------------------------------------- simulation


class Simulation:
    """Six months of history for every payer group, following the services' rules."""

    def __init__(
        self,
        *,
        rng: random.Random,
        now: datetime,
        brands: dict[str, Brand],
        services: dict[str, dict[str, Service]],
        admin_id: int,
    ) -> None:
        self.rng = rng
        self.now = now
        self.zone = now.tzinfo
        self.start = now - timedelta(days=HISTORY_DAYS)
        self.brands = brands
        self.services = services
        self.admin_id = admin_id
        self.txns: list[TxnRow] = []
        self.holds: list[HoldRow] = []
        self.seq = 0
        self.order_no = 0
        # A payment's external id is unique per channel (a unique index): drawn again on a clash.
        self.external_ids: set[str] = set()
        self.hold_ttl = timedelta(minutes=settings.BILLING_HOLD_TTL_MINUTES)
        self._system: dict[tuple, int] = {}
        month = self.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        self.months: list[datetime] = []
        while month < now:
            if month >= self.start:
                self.months.append(month)
            month = (month + timedelta(days=32)).replace(day=1)

    # ----- system accounts

    def system(
        self, kind: str, *, brand: int | None = None, service: int | None = None, channel: str = ""
    ) -> int:
        key = (kind, brand, service, channel)
        found = self._system.get(key)
        if found is None:
            found = ledger_services.system_account_id(
                kind, CURRENCY, brand_id=brand, service_id=service, channel=channel
            )
            self._system[key] = found
        return found

    # ----- the services' rules, on in-memory rows

    @staticmethod
    def _apply(payer: AccountRow, delta: Decimal, moment: datetime) -> Decimal:
        payer.balance += delta
        if payer.balance < 0:
            if payer.negative_since is None:
                payer.negative_since = moment
        else:
            payer.negative_since = None
        return payer.balance

    @staticmethod
    def _spend(chain: list[AccountRow], amount: Decimal, today: date) -> None:
        month = today.replace(day=1)
        for acc in chain:
            acc.spent_day = (acc.spent_day if acc.spent_day_on == today else ZERO) + amount
            acc.spent_day_on = today
            acc.spent_month = (acc.spent_month if acc.spent_month_on == month else ZERO) + amount
            acc.spent_month_on = month

    @staticmethod
    def _unspend(chain: list[AccountRow], amount: Decimal, spent_on: date, today: date) -> None:
        if amount <= 0:
            return
        for acc in chain:
            if spent_on == today and acc.spent_day_on == today:
                acc.spent_day = max(acc.spent_day - amount, ZERO)
            if spent_on.replace(day=1) == acc.spent_month_on == today.replace(day=1):
                acc.spent_month = max(acc.spent_month - amount, ZERO)

    def _may_write_off(self, named: AccountRow, amount: Decimal, moment: datetime) -> bool:
        """Would ``debit_post`` accept this write-off at ``moment``?"""
        chain = named.chain()
        if any(acc.blocked_at(moment) for acc in chain):
            return False
        today = moment.date()
        month = today.replace(day=1)
        for acc in chain:
            if acc.write_off_limit_transaction is not None and (
                amount > acc.write_off_limit_transaction
            ):
                return False
            if acc.write_off_limit_day is not None:
                spent = acc.spent_day if acc.spent_day_on == today else ZERO
                if spent + amount > acc.write_off_limit_day:
                    return False
            if acc.write_off_limit_month is not None:
                spent = acc.spent_month if acc.spent_month_on == month else ZERO
                if spent + amount > acc.write_off_limit_month:
                    return False
        payer = chain[-1]
        own = payer.balance - payer.held
        if amount <= own:
            return True
        if payer.credit_limit <= 0:
            return False
        if payer.credit_expires_at is not None and payer.credit_expires_at < today:
            return False
        if (
            payer.credit_period_days is not None
            and payer.negative_since is not None
            and moment >= payer.negative_since + timedelta(days=payer.credit_period_days)
        ):
            return False
        return amount <= own + payer.credit_limit

    # ----- postings

    def _post(
        self,
        kind: str,
        named: AccountRow,
        delta: Decimal,
        moment: datetime,
        counter: int,
        **header: Any,
    ) -> TxnRow:
        payer = named.chain()[-1]
        after = self._apply(payer, delta, moment)
        sub = named.id if named is not payer else None
        self.seq += 1
        txn = TxnRow(
            seq=self.seq,
            kind=kind,
            account=named,
            amount=abs(delta),
            created_at=moment,
            entries=[(payer.id, sub, delta, after), (counter, None, -delta, None)],
            **header,
        )
        self.txns.append(txn)
        return txn

    def payment(self, named: AccountRow, amount: Decimal, moment: datetime, channel: str) -> TxnRow:
        external_id = ""
        key = ""
        memo = ""
        if channel in (Account.Channel.BANK, Account.Channel.AGENT):
            external_id = f"{channel[:2].upper()}{self.rng.randrange(10**10):010d}"
            while external_id in self.external_ids:
                external_id = f"{channel[:2].upper()}{self.rng.randrange(10**10):010d}"
            self.external_ids.add(external_id)
            memo = f"Оплата по л/с {named.number}"
        elif channel == Account.Channel.GATEWAY:
            external_id = f"gw_{self.rng.getrandbits(64):016x}"
            key = external_id
            memo = "Пополнение через платёжный шлюз"
        elif channel == Account.Channel.CARD:
            memo = "Пополнение картой"
        else:
            memo = "Оплата наличными в кассе"
        txn = self._post(
            TransactionKind.PAYMENT,
            named,
            amount,
            moment,
            self.system(Account.Kind.CLEARING, channel=channel),
            channel=channel,
            external_id=external_id,
            memo=memo,
            idempotency_key=key,
            caller="system:gateway" if key else SEED_CALLER,
        )
        if self.rng.random() < 0.01:
            self.later(
                moment,
                timedelta(hours=self.rng.randint(1, 72)),
                Simulation.reverse,
                txn,
                PAYMENT_REVERSAL_REASON,
            )
        return txn

    def charge(
        self,
        kind: str,
        named: AccountRow,
        amount: Decimal,
        moment: datetime,
        brand: str,
        service: str,
        **header: Any,
    ) -> TxnRow:
        brand_id = self.brands[brand].pk
        service_id = self.services[brand][service].pk
        if kind == TransactionKind.DEBIT:
            self._spend(named.chain(), amount, moment.date())
        return self._post(
            kind,
            named,
            -amount,
            moment,
            self.system(Account.Kind.REVENUE, brand=brand_id, service=service_id),
            brand_id=brand_id,
            service_id=service_id,
            **header,
        )

    def refund(self, payer: AccountRow, amount: Decimal, moment: datetime, channel: str) -> None:
        if amount > payer.balance - payer.held:
            return
        self._post(
            TransactionKind.REFUND,
            payer,
            -amount,
            moment,
            self.system(Account.Kind.REFUNDS, channel=channel),
            channel=channel,
            memo="Возврат переплаты по заявлению клиента",
        )

    def adjustment(self, named: AccountRow, amount: Decimal, moment: datetime) -> None:
        self._post(
            TransactionKind.ADJUSTMENT,
            named,
            amount,
            moment,
            self.system(Account.Kind.ADJUSTMENTS),
            memo=self.rng.choice(ADJUSTMENT_REASONS),
            metadata={"direction": "credit" if amount > 0 else "debit"},
            caller=f"user:{self.admin_id}",
            created_by_id=self.admin_id,
        )

    def reverse(self, moment: datetime, original: TxnRow, reason: str) -> None:
        payer_ids = {original.entries[0][0]}
        named = original.account
        payer = named.chain()[-1]
        entries = []
        for account_id, sub, amount, balance_after in original.entries:
            if balance_after is not None and account_id in payer_ids:
                after = self._apply(payer, -amount, moment)
                entries.append((account_id, sub, -amount, after))
            else:
                entries.append((account_id, sub, -amount, None))
        if original.kind in (TransactionKind.DEBIT, TransactionKind.HOLD_CAPTURE):
            self._unspend(named.chain(), original.amount, original.created_at.date(), moment.date())
        self.seq += 1
        self.txns.append(
            TxnRow(
                seq=self.seq,
                kind=TransactionKind.REVERSAL,
                account=named,
                amount=original.amount,
                created_at=moment,
                entries=entries,
                brand_id=original.brand_id,
                service_id=original.service_id,
                channel=original.channel,
                subject_type=original.subject_type,
                subject_id=original.subject_id,
                memo=reason,
                reversal_of=original,
                metadata={"reversed_kind": original.kind},
            )
        )

    # ----- orders: a debit, or a hold captured (fully or partly), voided or left to expire

    def order(
        self,
        named: AccountRow,
        moment: datetime,
        amount: Decimal,
        service: str,
        pending: bool = False,
    ) -> None:
        """An order: a debit, or a hold later captured, voided or left to expire.

        A ``pending`` order is a pre-order placed shortly before now: its hold stays active.
        """
        if not self._may_write_off(named, amount, moment):
            return
        self.order_no += 1
        subject = f"{self.order_no:08d}"
        roll = 0.99 if pending else self.rng.random()
        if roll < 0.55:
            txn = self.charge(
                TransactionKind.DEBIT,
                named,
                amount,
                moment,
                "food",
                service,
                subject_type="order",
                subject_id=subject,
                metadata={"items": self.rng.randint(1, 6)},
                memo=f"Заказ № {subject}",
            )
            if self.rng.random() < 0.01:
                self.later(
                    moment,
                    timedelta(minutes=self.rng.randint(10, 2880)),
                    Simulation.reverse,
                    txn,
                    DEBIT_REVERSAL_REASON,
                )
            return
        payer = named.chain()[-1]
        self._spend(named.chain(), amount, moment.date())
        payer.held += amount
        hold = HoldRow(
            id=0,
            account=named,
            payer=payer,
            amount=amount,
            brand_id=self.brands["food"].pk,
            service_id=self.services["food"][service].pk,
            subject_id=subject,
            memo=f"Предзаказ № {subject}",
            created_at=moment,
            expires_at=moment + self.hold_ttl,
            reserved_on=moment.date(),
        )
        self.holds.append(hold)
        if pending:
            return
        if roll < 0.92:
            captured = amount
            if self.rng.random() < 0.15:  # something was out of stock
                captured = _money(amount * Decimal(self.rng.randint(60, 95)) / 100)
            delay = timedelta(minutes=self.rng.randint(20, 120))
            self.later(moment, delay, Simulation.capture, hold, captured)
        elif roll < 0.98:
            self.later(
                moment,
                timedelta(minutes=self.rng.randint(2, 60)),
                Simulation.close_hold,
                hold,
                Hold.Status.VOIDED,
            )
        else:
            self.at(hold.expires_at, Simulation.close_hold, hold, Hold.Status.EXPIRED)

    def _release(self, hold: HoldRow, captured: Decimal, moment: datetime) -> None:
        hold.payer.held -= hold.amount
        self._unspend(hold.account.chain(), hold.amount - captured, hold.reserved_on, moment.date())

    def capture(self, moment: datetime, hold: HoldRow, captured: Decimal) -> None:
        self._release(hold, captured, moment)
        hold.status = Hold.Status.CAPTURED
        hold.captured_amount = captured
        hold.closed_at = moment
        txn = self._post(
            TransactionKind.HOLD_CAPTURE,
            hold.account,
            -captured,
            moment,
            self.system(Account.Kind.REVENUE, brand=hold.brand_id, service=hold.service_id),
            brand_id=hold.brand_id,
            service_id=hold.service_id,
            subject_type="order",
            subject_id=hold.subject_id,
            memo=hold.memo,
            hold=hold,
        )
        if self.rng.random() < 0.005:
            self.later(
                moment,
                timedelta(hours=self.rng.randint(1, 48)),
                Simulation.reverse,
                txn,
                DEBIT_REVERSAL_REASON,
            )

    def close_hold(self, moment: datetime, hold: HoldRow, status: str) -> None:
        self._release(hold, ZERO, moment)
        hold.status = status
        hold.closed_at = moment

    # ----- scheduling inside one payer group

    def at(self, moment: datetime, action: Callable, *args: Any) -> None:
        if moment < self.now:
            self._counter += 1
            heapq.heappush(self._queue, (moment, self._counter, action, args))

    def later(self, moment: datetime, delay: timedelta, action: Callable, *args: Any) -> None:
        self.at(moment + delay, action, *args)

    def run_group(self, payer: AccountRow) -> None:
        self._queue: list = []
        self._counter = 0
        for account in [payer, *payer.children]:
            if account.status != Account.Status.CLOSED:
                PLANS[account.profile](self, account)
        while self._queue:
            moment, _, action, args = heapq.heappop(self._queue)
            action(self, moment, *args)

    # ----- helpers for plans

    def moment_in(
        self, first: datetime, days: float, hour_from: int = 8, hour_to: int = 22
    ) -> datetime:
        """A moment on a random day within ``days`` after ``first``, between the given hours."""
        day = first + timedelta(days=self.rng.uniform(0, days))
        offset = int(self.rng.random() * (hour_to - hour_from) * 3_600_000_000)
        seconds, microsecond = divmod(offset, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        return day.replace(
            hour=hour_from + hours, minute=minute, second=second, microsecond=microsecond
        )

    def active_months(self, account: AccountRow) -> list[datetime]:
        return [m for m in self.months if m >= account.created_at]

    def first_moment(self, account: AccountRow) -> datetime:
        return max(self.start, account.created_at + timedelta(hours=1))


# Each plan schedules the first events of one account; state-dependent events
# (a payment of the actual debt, an order that the limits allow) decide when they run.


def _plan_utility(sim: Simulation, account: AccountRow, business: bool = False) -> None:
    rng = sim.rng
    area = Decimal(rng.randint(28, 95)) if not business else Decimal(rng.randint(200, 2000))
    for month in sim.active_months(account):
        period = f"{(month - timedelta(days=1)):%Y-%m}"
        billed = sim.moment_in(month, 2, 1, 6)
        sim.at(billed, _utility_bill, account, period, area, business)
        if rng.random() < (0.9 if not business else 0.95):
            delay = rng.uniform(5, 25) if not business else rng.uniform(8, 40)
            sim.at(sim.moment_in(billed, delay), _utility_pay, account, business)
    if rng.random() < 0.02:
        sim.at(sim.moment_in(sim.first_moment(account), HISTORY_DAYS - 7), _adjust, account)


def _utility_bill(
    sim: Simulation,
    moment: datetime,
    account: AccountRow,
    period: str,
    area: Decimal,
    business: bool,
) -> None:
    rng = sim.rng
    lines: list[tuple[str, Decimal, Decimal, str]] = []
    if business:
        kwh = Decimal(rng.randint(1500, 30000))
        lines.append(("electricity", kwh, TARIFFS["electricity_business"], "kWh"))
    else:
        kwh = Decimal(rng.randint(90, 450))
        lines.append(("electricity", kwh, TARIFFS["electricity"], "kWh"))
        lines.append(
            ("cold_water", Decimal(rng.randint(30, 140)) / 10, TARIFFS["cold_water"], "m3")
        )
        if int(period[5:]) in (1, 2, 3, 4, 10, 11, 12):
            gcal = Decimal(rng.randint(600, 2500)) / 1000
            lines.append(("heating", gcal, TARIFFS["heating"], "Gcal"))
        if rng.random() < 0.5:
            lines.append(("capital_repair", area, TARIFFS["capital_repair"], "m2"))
    for offset, (service, quantity, tariff, unit) in enumerate(lines):
        txn = sim.charge(
            TransactionKind.ACCRUAL,
            account,
            _money(quantity * tariff),
            moment + timedelta(seconds=offset),
            "energo",
            service,
            subject_type="billing_period",
            subject_id=period,
            metadata={"quantity": str(quantity), "unit": unit, "tariff": str(tariff)},
            memo=f"Начисление за {period}",
        )
        if rng.random() < 0.004:
            sim.later(
                txn.created_at,
                timedelta(days=rng.randint(2, 20)),
                Simulation.reverse,
                txn,
                ACCRUAL_REVERSAL_REASON,
            )


def _utility_pay(sim: Simulation, moment: datetime, account: AccountRow, business: bool) -> None:
    rng = sim.rng
    debt = -account.balance
    if debt <= 0:
        return
    roll = rng.random()
    if roll < 0.15:
        amount = _money(debt * Decimal(rng.randint(30, 90)) / 100)  # partial payment
    elif roll < 0.3:
        amount = (debt / 500).to_integral_value(rounding="ROUND_CEILING") * 500  # rounded up
    else:
        amount = debt
    if amount <= 0:
        return
    if business:
        channel = Account.Channel.BANK
    else:
        channel = rng.choices(
            [
                Account.Channel.BANK,
                Account.Channel.AGENT,
                Account.Channel.CARD,
                Account.Channel.CASH,
                Account.Channel.GATEWAY,
            ],
            weights=[30, 25, 25, 10, 10],
        )[0]
    sim.payment(account, amount, moment, channel)


def _plan_telecom(sim: Simulation, account: AccountRow, business: bool = False) -> None:
    rng = sim.rng
    service = "corporate_plan" if business else rng.choice(["mobile_plan", "home_internet"])
    for month in sim.active_months(account):
        period = f"{month:%Y-%m}"
        sim.at(sim.moment_in(month, 0, 0, 1), _telecom_fee, account, service, period)
        if business:
            sim.at(sim.moment_in(month, 20), _utility_pay, account, True)
            continue
        for _ in range(rng.randint(1, 3)):
            sim.at(sim.moment_in(month, 28), _telecom_topup, account)
        if rng.random() < 0.25:
            sim.at(sim.moment_in(month, 28), _telecom_roaming, account)
    if rng.random() < 0.02:
        sim.at(sim.moment_in(sim.first_moment(account), HISTORY_DAYS - 7), _adjust, account)


def _telecom_fee(
    sim: Simulation, moment: datetime, account: AccountRow, service: str, period: str
) -> None:
    sim.charge(
        TransactionKind.ACCRUAL,
        account,
        account.monthly_fee,
        moment,
        "telecom",
        service,
        subject_type="subscription_period",
        subject_id=period,
        memo=f"Абонентская плата за {period}",
    )


def _telecom_topup(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    if account.balance >= account.monthly_fee:
        return
    amount = max(account.monthly_fee - account.balance, Decimal(sim.rng.choice([300, 500])))
    amount = (amount / 100).to_integral_value(rounding="ROUND_CEILING") * 100
    channel = sim.rng.choice([Account.Channel.CARD, Account.Channel.GATEWAY, Account.Channel.AGENT])
    sim.payment(account, amount, moment, channel)


def _telecom_roaming(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    megabytes = sim.rng.randint(20, 500)
    amount = _money(Decimal(megabytes) * Decimal("0.99"))
    if sim._may_write_off(account, amount, moment):
        sim.charge(
            TransactionKind.DEBIT,
            account,
            amount,
            moment,
            "telecom",
            "roaming_data",
            subject_type="usage",
            subject_id=f"{moment:%Y%m%d}",
            metadata={"quantity": str(megabytes), "unit": "MB"},
            memo="Интернет в роуминге",
        )


def _plan_food(sim: Simulation, account: AccountRow) -> None:
    rng = sim.rng
    first = sim.first_moment(account)
    sim.at(first + timedelta(minutes=5), _food_topup, account, True)
    for month in sim.active_months(account) or [first]:
        for _ in range(rng.randint(0, 2)):
            sim.at(sim.moment_in(month, 28), _food_topup, account, False)
        for _ in range(rng.randint(2, 6)):
            sim.at(sim.moment_in(month, 28, 11, 23), _food_order, account)
    if rng.random() < 0.05:
        sim.at(sim.moment_in(first, HISTORY_DAYS - 7), _food_refund, account)
    _plan_preorder(sim, account)


def _plan_preorder(sim: Simulation, account: AccountRow) -> None:
    if sim.rng.random() < 0.15:
        placed = sim.now - timedelta(minutes=sim.rng.randint(30, 1200))
        sim.at(max(placed, sim.first_moment(account)), _preorder, account)


def _preorder(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    amount = _money(Decimal(sim.rng.randint(30000, 150000)) / 100)
    sim.order(account, moment, amount, "meals", pending=True)


def _food_topup(sim: Simulation, moment: datetime, account: AccountRow, first: bool) -> None:
    if not first and account.balance - account.held > 1500:
        return
    amount = Decimal(sim.rng.choice([1000, 2000, 3000, 5000]))
    channel = sim.rng.choice([Account.Channel.CARD, Account.Channel.GATEWAY])
    sim.payment(account, amount, moment, channel)


def _food_order(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    rng = sim.rng
    service = rng.choices(["meals", "groceries", "drinks"], weights=[70, 25, 5])[0]
    amount = _money(Decimal(rng.randint(35000, 350000)) / 100)
    sim.order(account, moment, amount, service)


def _food_refund(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    own = account.balance - account.held
    if own >= 100:
        amount = _money(own * Decimal(sim.rng.randint(30, 100)) / 100)
        sim.refund(account, amount, moment, Account.Channel.CARD)


def _plan_corporate(sim: Simulation, account: AccountRow) -> None:
    first = sim.first_moment(account)
    sim.at(first + timedelta(hours=2), _corporate_pay, account)
    for month in sim.active_months(account):
        sim.at(sim.moment_in(month, 6, 9, 18), _corporate_pay, account)


def _corporate_pay(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    budget = Decimal(len(account.children) * sim.rng.choice([6000, 8000, 10000]))
    amount = max(-account.balance, ZERO) + budget
    if amount > 0:
        sim.payment(account, amount, moment, Account.Channel.BANK)


def _plan_employee(sim: Simulation, account: AccountRow) -> None:
    rng = sim.rng
    first = sim.first_moment(account)
    day = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day < sim.now:
        if day.weekday() < 5 and rng.random() < 0.2:
            sim.at(sim.moment_in(day, 0, 11, 15), _employee_lunch, account)
        day += timedelta(days=1)
    _plan_preorder(sim, account)


def _employee_lunch(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    amount = _money(Decimal(sim.rng.randint(25000, 120000)) / 100)
    sim.order(account, moment, amount, "meals")


def _adjust(sim: Simulation, moment: datetime, account: AccountRow) -> None:
    amount = Decimal(sim.rng.choice([100, 150, 250, 500]))
    sim.adjustment(account, amount if sim.rng.random() < 0.8 else -amount, moment)


PLANS: dict[str, Callable[[Simulation, AccountRow], None]] = {
    "utility": _plan_utility,
    "business_utility": lambda sim, account: _plan_utility(sim, account, business=True),
    "telecom": _plan_telecom,
    "business_telecom": lambda sim, account: _plan_telecom(sim, account, business=True),
    "food": _plan_food,
    "corporate": _plan_corporate,
    "employee": _plan_employee,
}


# --------------------------------------------------------------------------- population


@dataclass
class Population:
    clients: list[ClientRow]
    accounts: list[AccountRow]
    payers: list[AccountRow]


def build_population(
    *,
    rng: random.Random,
    people: People,
    size: int,
    now: datetime,
    brands: dict[str, Brand],
    operator_id: int,
) -> Population:
    """Clients and their accounts, in memory, with ids from the sequences.

    About 8% of the clients are companies (40% of them corporate payers for
    employee meals), 15% are employees with sub-accounts under their company,
    the rest are households and consumers of the three brands.
    """
    legal = round(size * 0.08) if size >= 3 else 0
    corporate = -(-legal * 2 // 5) if legal else 0
    employees = min(round(size * 0.15), size - legal) if corporate else 0
    individuals = size - legal - employees

    client_ids = iter(_sequence_values("accounts_client", size))
    clients: list[ClientRow] = []
    accounts: list[AccountRow] = []
    payers: list[AccountRow] = []
    window = timedelta(days=HISTORY_DAYS)

    def created(recent_share: float = 0.15) -> datetime:
        if rng.random() < recent_share:
            days = rng.uniform(10, HISTORY_DAYS - 30)
        else:
            days = rng.uniform(HISTORY_DAYS + 1, 1100)
        return now - timedelta(days=days)

    def open_account(client: ClientRow, profile: str, brand: str, at: datetime) -> AccountRow:
        account = AccountRow(
            id=0,
            number="",
            client=client,
            profile=profile,
            brand_ids=[brands[brand].pk],
            created_at=at,
        )
        accounts.append(account)
        return account

    def maybe_block(account: AccountRow, share: float, reason: str | None = None) -> None:
        if rng.random() < share:
            account.status = Account.Status.BLOCKED
            account.status_reason = reason or rng.choice(BLOCK_REASONS)
            earliest = max(account.created_at, now - window)
            account.status_changed_at = earliest + (now - earliest) * rng.uniform(0.3, 0.95)
            account.status_changed_by_id = operator_id

    for _ in range(individuals):
        client = people.person(next(client_ids), created())
        clients.append(client)
        profile = rng.choices(["utility", "telecom", "food"], weights=[50, 30, 20])[0]
        brand = {"utility": "energo", "telecom": "telecom", "food": "food"}[profile]
        opened = client.created_at + timedelta(minutes=rng.randint(1, 120))
        account = open_account(client, profile, brand, opened)
        _set_limits(rng, account, now)
        maybe_block(account, 0.01)
        payers.append(account)
        if rng.random() < 0.2:
            other = rng.choice([p for p in ("utility", "telecom", "food") if p != profile])
            brand = {"utility": "energo", "telecom": "telecom", "food": "food"}[other]
            later = opened + (now - timedelta(days=10) - opened) * rng.uniform(0, 1)
            second = open_account(client, other, brand, later)
            _set_limits(rng, second, now)
            if rng.random() < 0.1:
                second.status = Account.Status.CLOSED
                second.status_reason = CLOSE_REASON
                second.status_changed_at = later + timedelta(days=rng.randint(1, 9))
                second.status_changed_by_id = operator_id
            payers.append(second)

    corporates: list[AccountRow] = []
    for index in range(legal):
        client = people.company(next(client_ids), created(0.1))
        clients.append(client)
        opened = client.created_at + timedelta(minutes=rng.randint(5, 600))
        if index < corporate:
            account = open_account(client, "corporate", "food", opened)
            account.name = "Корпоративное питание"
            corporates.append(account)
        else:
            profile = rng.choice(["business_utility", "business_telecom"])
            brand = "energo" if profile == "business_utility" else "telecom"
            account = open_account(client, profile, brand, opened)
        _set_limits(rng, account, now)
        maybe_block(account, 0.01)
        payers.append(account)

    for index in range(employees):
        company = corporates[index % len(corporates)]
        joined = company.created_at + (now - company.created_at) * rng.uniform(0, 0.9)
        client = people.person(next(client_ids), joined - timedelta(minutes=5))
        clients.append(client)
        account = open_account(client, "employee", "food", joined)
        account.parent = company
        account.name = "Питание сотрудника"
        company.children.append(account)
        _set_limits(rng, account, now)
        maybe_block(account, 0.02, EMPLOYEE_BLOCK_REASON)

    for corporate_account in corporates:
        if corporate_account.children and rng.random() < 0.6:
            staff = len(corporate_account.children)
            corporate_account.write_off_limit_month = Decimal(staff * 20000)

    for account, number in zip(
        accounts, account_numbers_allocate(len(accounts)) if accounts else [], strict=True
    ):
        account.number = number
    for account, pk in zip(
        accounts, _sequence_values("accounts_account", len(accounts)), strict=True
    ):
        account.id = pk
    return Population(clients=clients, accounts=accounts, payers=payers)


def _set_limits(rng: random.Random, account: AccountRow, now: datetime) -> None:
    profile = account.profile
    if profile == "telecom":
        account.monthly_fee = Decimal(rng.choice([450, 550, 650, 890]))
        if rng.random() < 0.6:
            account.credit_limit = Decimal(rng.choice([300, 500, 1000]))
            account.credit_period_days = 30
    elif profile == "business_telecom":
        account.monthly_fee = Decimal(rng.choice([5000, 9000, 15000, 25000]))
        account.credit_limit = Decimal(rng.choice([10000, 30000, 50000]))
        account.credit_period_days = 45
    elif profile == "food":
        if rng.random() < 0.3:
            account.write_off_limit_transaction = Decimal(rng.choice([3000, 5000, 10000]))
    elif profile == "corporate":
        account.credit_limit = Decimal(rng.choice([50000, 100000, 200000, 500000]))
        account.credit_period_days = rng.choice([30, 45, 60])
        # Most credit lines run for a year; a few have already expired.
        account.credit_expires_at = (now + timedelta(days=rng.randint(-40, 365))).date()
    elif profile == "employee":
        account.write_off_limit_transaction = Decimal(rng.choice([1000, 1500, 2000]))
        account.write_off_limit_day = Decimal(rng.choice([1500, 2000, 3000]))
        account.write_off_limit_month = Decimal(rng.choice([15000, 20000, 30000]))


# --------------------------------------------------------------------------- writing

CLIENT_COLUMNS = (
    "id", "kind", "name", "legal_name", "tax_id", "kpp", "ogrn", "email", "phone", "address",
    "external_ref", "status", "created_at", "updated_at",
)  # fmt: skip
ACCOUNT_COLUMNS = (
    "id", "number", "kind", "client_id", "currency", "name", "status", "status_reason",
    "status_changed_at", "status_changed_by_id", "parent_id", "credit_limit",
    "credit_period_days", "credit_expires_at", "write_off_limit_transaction",
    "write_off_limit_day", "write_off_limit_month", "balance", "held", "negative_since",
    "spent_day", "spent_day_on", "spent_month", "spent_month_on", "system_key", "brand_id",
    "service_id", "channel", "created_at", "updated_at",
)  # fmt: skip
HOLD_COLUMNS = (
    "id", "account_id", "payer_id", "amount", "captured_amount", "currency", "status",
    "brand_id", "service_id", "subject_type", "subject_id", "metadata", "memo", "expires_at",
    "reserved_on", "caller", "created_by_id", "request_id", "created_at", "closed_at",
)  # fmt: skip
TXN_COLUMNS = (
    "id", "kind", "account_id", "counter_account_id", "amount", "currency", "brand_id",
    "service_id", "channel", "subject_type", "subject_id", "metadata", "memo", "external_id",
    "reversal_of_id", "hold_id", "caller", "created_by_id", "request_id", "created_at",
)  # fmt: skip
ENTRY_COLUMNS = (
    "id", "transaction_id", "account_id", "subaccount_id", "amount", "currency",
    "balance_after", "created_at",
)  # fmt: skip
IDEMPOTENCY_COLUMNS = (
    "caller", "key", "operation", "request_hash", "transaction_id", "hold_id", "created_at",
)  # fmt: skip


def _client_rows(clients: list[ClientRow]) -> Iterator[tuple]:
    for c in clients:
        yield (
            c.id, c.kind, c.name, c.legal_name, c.tax_id, c.kpp, c.ogrn, c.email, c.phone,
            c.address, c.external_ref, Client.Status.ACTIVE, c.created_at, c.created_at,
        )  # fmt: skip


def _account_rows(accounts: list[AccountRow], now: datetime) -> Iterator[tuple]:
    for a in accounts:
        yield (
            a.id, a.number, Account.Kind.CLIENT, a.client.id, CURRENCY, a.name, a.status,
            a.status_reason, a.status_changed_at, a.status_changed_by_id,
            a.parent.id if a.parent else None, a.credit_limit, a.credit_period_days,
            a.credit_expires_at, a.write_off_limit_transaction, a.write_off_limit_day,
            a.write_off_limit_month, a.balance, a.held, a.negative_since, a.spent_day,
            a.spent_day_on, a.spent_month, a.spent_month_on, None, None, None, "",
            a.created_at, now,
        )  # fmt: skip


def _hold_rows(holds: list[HoldRow]) -> Iterator[tuple]:
    for h in holds:
        yield (
            h.id, h.account.id, h.payer.id, h.amount, h.captured_amount, CURRENCY, h.status,
            h.brand_id, h.service_id, "order", h.subject_id, "{}", h.memo, h.expires_at,
            h.reserved_on, SEED_CALLER, None, "", h.created_at, h.closed_at,
        )  # fmt: skip


def _txn_rows(txns: list[TxnRow]) -> Iterator[tuple]:
    dumps = json.dumps
    for t in txns:
        yield (
            t.id, t.kind, t.account.id, None, t.amount, CURRENCY, t.brand_id, t.service_id,
            t.channel, t.subject_type, t.subject_id,
            dumps(t.metadata, ensure_ascii=False) if t.metadata else "{}", t.memo,
            t.external_id, t.reversal_of.id if t.reversal_of else None,
            t.hold.id if t.hold else None, t.caller, t.created_by_id, "", t.created_at,
        )  # fmt: skip


def _entry_rows(txns: list[TxnRow], ids: Iterable[int]) -> Iterator[tuple]:
    next_id = iter(ids).__next__
    for t in txns:
        for account_id, sub, amount, after in t.entries:
            yield (next_id(), t.id, account_id, sub, amount, CURRENCY, after, t.created_at)


def _idempotency_rows(txns: list[TxnRow]) -> Iterator[tuple]:
    for t in txns:
        if t.idempotency_key:
            request = json.dumps({"operation": "payment", "external_id": t.external_id})
            digest = hashlib.sha256(request.encode()).hexdigest()
            yield (t.caller, t.idempotency_key, "payment", digest, t.id, None, t.created_at)


# --------------------------------------------------------------------------- live postings


def live_postings(rng: random.Random, population: Population, operator: Any, count: int) -> int:
    """Postings through the real services, now: they must agree with the bulk-written state.

    First a tour of every operation on one consumer account (payment, transfer,
    refund, adjustment and its reversal, holds captured partly, voided and left
    active, a sub-account debit), then ``count`` random ones. A refusal is a
    realistic outcome: it changes nothing and is simply not counted.
    """
    caller = ledger_services.Caller.for_user(operator)
    food = [a for a in population.payers if a.profile == "food" and a.status == "open"]
    employees = [
        a
        for a in population.accounts
        if a.profile == "employee" and a.status == "open" and a.parent.status == "open"
    ]
    payers = [a for a in population.payers if a.status != Account.Status.CLOSED]
    food_brand = Brand.objects.get(code="food")
    meals = Service.objects.get(brand=food_brand, code="meals")
    order = {"brand": food_brand, "service": meals, "subject_type": "order", "caller": caller}
    done = 0

    def attempt(operation: Callable[[], Any]) -> Any:
        nonlocal done
        try:
            result = operation()
        except DomainError:
            return None
        done += 1
        return result

    if len(food) >= 2:
        main, other = food[0], food[1]
        tour: list[Callable[[], Any]] = [
            lambda: ledger_services.payment_post(
                account=main.id, amount="5000.00", channel="card", memo="Пополнение", caller=caller
            ),
            lambda: ledger_services.transfer_post(
                from_account=main.id, to_account=other.id, amount="500.00", caller=caller,
                memo="Перевод между счетами клиентов",
            ),
            lambda: ledger_services.refund_post(
                account=main.id, amount="300.00", channel="card", caller=caller,
                memo="Возврат переплаты по заявлению клиента",
            ),
        ]  # fmt: skip
        for operation in tour:
            attempt(operation)
        adjustment = attempt(
            lambda: ledger_services.adjustment_post(
                account=main.id, amount="150.00", reason=ADJUSTMENT_REASONS[0], caller=caller
            )
        )
        if adjustment is not None:
            attempt(
                lambda: ledger_services.transaction_reverse(
                    transaction_obj=adjustment, reason="Компенсация начислена дважды", caller=caller
                )
            )
        for amount, settle in (("400.00", "capture"), ("200.00", "void"), ("350.00", None)):
            hold = attempt(
                lambda amount=amount: ledger_services.hold_create(
                    account=main.id, amount=amount, subject_id=f"live-{amount}", **order
                )
            )
            if hold is not None and settle == "capture":
                attempt(
                    lambda h=hold: ledger_services.hold_capture(
                        hold=h, amount="320.00", caller=caller
                    )
                )
            elif hold is not None and settle == "void":
                attempt(lambda h=hold: ledger_services.hold_void(hold=h, caller=caller))
    for _ in range(count):
        roll = rng.random()
        if roll < 0.3 and len(food) >= 2:
            source, target = rng.sample(food, 2)
            amount = Decimal(rng.choice([100, 200, 500]))
            attempt(
                lambda s=source, t=target, a=amount: ledger_services.transfer_post(
                    from_account=s.id, to_account=t.id, amount=a, caller=caller,
                    memo="Перевод между счетами клиентов",
                )
            )  # fmt: skip
        elif roll < 0.6 and payers:
            payer, amount = rng.choice(payers), Decimal(rng.choice([500, 1000, 1500]))
            attempt(
                lambda p=payer, a=amount: ledger_services.payment_post(
                    account=p.id, amount=a, channel="cash", memo="Оплата в кассе", caller=caller
                )
            )
        elif roll < 0.85 and employees:
            employee, amount = rng.choice(employees), Decimal(rng.randint(300, 900))
            subject = f"live-{rng.randrange(10**8):08d}"
            attempt(
                lambda e=employee, a=amount, s=subject: ledger_services.debit_post(
                    account=e.id, amount=a, subject_id=s, memo="Обед", **order
                )
            )
        elif food:
            account, amount = rng.choice(food), Decimal(rng.randint(300, 1500))
            subject = f"live-{rng.randrange(10**8):08d}"
            attempt(
                lambda c=account, a=amount, s=subject: ledger_services.hold_create(
                    account=c.id, amount=a, subject_id=s, memo="Предзаказ", **order
                )
            )
    return done


# --------------------------------------------------------------------------- entry point


LEDGER_TABLES = ["ledger_hold", "ledger_transaction", "ledger_entry", "ledger_idempotencykey"]


def _rebuild_pays_off(new_entries: int) -> bool:
    """Rebuild indexes and foreign keys when the load is bigger than what is there already."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'ledger_entry'::regclass")
        existing = max(cursor.fetchone()[0], 0)
    return new_entries > existing


def demo_data_exists() -> bool:
    return Client.objects.exists()


def seed_demo(
    *,
    clients: int,
    seed: int = 42,
    log: Callable[[str], None] | None = None,
    now: datetime | None = None,
    rebuild_indexes: bool | None = None,
) -> SeedResult:
    """Load demo data: users, brands, catalogue, ``clients`` clients and their history.

    Runs in one database transaction: it either loads everything or nothing.
    The history ends at ``now`` (default: the current time); the same ``seed``
    and ``now`` give the same data. ``rebuild_indexes`` forces (True) or
    forbids (False) loading the ledger tables pg_restore-style; by default
    that happens when the new history outweighs what the tables hold.
    """
    log = log or (lambda message: None)
    result = SeedResult()
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        now_mono = time.monotonic()
        result.timings[name] = now_mono - started
        started = now_mono
        log(f"{name}: {result.timings[name]:.1f}s")

    with transaction.atomic():
        admin, operator = ensure_users()
        brand_list, services = ensure_brands()
        brands = {brand.code: brand for brand in brand_list}
        rng = random.Random(seed)
        faker = Faker("ru_RU")
        faker.seed_instance(seed)
        now = timezone.localtime(now or timezone.now(), ZoneInfo(settings.TIME_ZONE))
        people = People(rng, faker, clients)
        population = build_population(
            rng=rng, people=people, size=clients, now=now, brands=brands, operator_id=operator.pk
        )
        lap("clients and accounts built")

        sim = Simulation(rng=rng, now=now, brands=brands, services=services, admin_id=admin.pk)
        for payer in population.payers:
            sim.run_group(payer)
        sim.txns.sort(key=lambda t: (t.created_at, t.seq))
        sim.holds.sort(key=lambda h: h.created_at)
        lap("history simulated")

        for txn, pk in zip(
            sim.txns, _reserve_ids("ledger_transaction", len(sim.txns)), strict=True
        ):
            txn.id = pk
        for hold, pk in zip(sim.holds, _reserve_ids("ledger_hold", len(sim.holds)), strict=True):
            hold.id = pk
        entry_count = sum(len(t.entries) for t in sim.txns)
        entry_ids = _reserve_ids("ledger_entry", entry_count)
        lap("ids allocated")

        result.clients = _copy("accounts_client", CLIENT_COLUMNS, _client_rows(population.clients))
        result.accounts = _copy(
            "accounts_account", ACCOUNT_COLUMNS, _account_rows(population.accounts, now)
        )
        _copy(
            "accounts_account_brands",
            ("account_id", "brand_id"),
            ((a.id, b) for a in population.accounts for b in a.brand_ids),
        )
        result.subaccounts = sum(1 for a in population.accounts if a.parent is not None)
        lap("clients and accounts written")
        if rebuild_indexes is None:
            rebuild_indexes = _rebuild_pays_off(entry_count)
        bulk = _bulk_load(LEDGER_TABLES) if rebuild_indexes else nullcontext()
        with bulk:
            result.holds = _copy("ledger_hold", HOLD_COLUMNS, _hold_rows(sim.holds))
            result.transactions = _copy("ledger_transaction", TXN_COLUMNS, _txn_rows(sim.txns))
            result.entries = _copy("ledger_entry", ENTRY_COLUMNS, _entry_rows(sim.txns, entry_ids))
            _copy("ledger_idempotencykey", IDEMPOTENCY_COLUMNS, _idempotency_rows(sim.txns))
            lap("ledger rows written")
        lap("indexes and foreign keys rebuilt")

        result.live_postings = live_postings(rng, population, operator, min(60, clients // 20 + 5))
        lap("live postings")
    lap("commit")
    with connection.cursor() as cursor:
        for table in (
            "accounts_client",
            "accounts_account",
            "ledger_transaction",
            "ledger_entry",
            "ledger_hold",
        ):
            cursor.execute(f"ANALYZE {table}")
    lap("analyze")
    return result
