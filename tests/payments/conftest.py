"""Fixtures of payment intake: agents of both built-in formats and registry file builders."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from payments.services import payment_agent_create
from tests.api.conftest import make_side
from tests.factories import AccountFactory, BrandFactory, UserFactory


@dataclass
class Pay:
    """One registry line: a payment id, an account number, an amount (and a payer)."""

    payment_id: str
    account: str
    amount: str
    payer: str = "Иванов Иван Иванович"
    commission: str | None = None


def _comma(amount: str) -> str:
    return amount.replace(".", ",")


def sber_txt(pays: list[Pay], *, count=None, total=None, commission=None) -> bytes:
    """A ``sber-txt`` file (cp1251, CRLF, control footer); the footer's figures may be forced."""
    lines = []
    for p in pays:
        c = p.commission if p.commission is not None else "0.00"
        net = Decimal(p.amount) - Decimal(c)
        lines.append(
            f"01-12-2026;10:15:00;9038;1;{p.payment_id};{p.account};{p.payer};"
            f"г. Москва, ул. Ленина, 1;1126;{_comma(p.amount)};{_comma(str(net))};{_comma(c)}"
        )
    the_total = sum((Decimal(p.amount) for p in pays), Decimal("0"))
    the_commission = sum((Decimal(p.commission or "0") for p in pays), Decimal("0"))
    net_total = the_total - the_commission
    lines.append(
        f"={len(pays) if count is None else count};"
        f"{_comma(str(the_total if total is None else total))};{_comma(str(net_total))};"
        f"{_comma(str(the_commission if commission is None else commission))};01-12-2026"
    )
    return ("\r\n".join(lines) + "\r\n").encode("cp1251")


def csv_total(pays: list[Pay], *, count=None, total=None) -> bytes:
    """A ``csv-total`` file (UTF-8, control line first, then the header)."""
    the_total = sum((Decimal(p.amount) for p in pays), Decimal("0"))
    lines = [
        f"#TOTAL,{len(pays) if count is None else count},{the_total if total is None else total}",
        "payment_id,paid_at,account,payer,amount,period",
    ]
    for p in pays:
        lines.append(
            f'{p.payment_id},2026-12-01T10:15:00+03:00,{p.account},"{p.payer}",{p.amount},2026-11'
        )
    return ("\n".join(lines) + "\n").encode("utf-8")


@pytest.fixture(autouse=True)
def _fresh_payment_rules():
    """Rules are cached per process: no test sees another's (rolled back) rules."""
    from payments.rules import _cache

    _cache.clear()
    yield
    _cache.clear()


@pytest.fixture
def brand(db):
    return BrandFactory()


@pytest.fixture
def sber(db):
    return payment_agent_create(
        code="SBER", name="Sberbank", format="sber-txt", commission_rate="1.50"
    )


@pytest.fixture
def post_office(db):
    return payment_agent_create(
        code="POST", name="Russian Post", format="csv-total", commission_rate="2.00"
    )


@pytest.fixture
def accounts(brand):
    return [AccountFactory(brands=[brand]) for _ in range(3)]


@pytest.fixture
def side_a(db):
    return make_side("Partner A")


@pytest.fixture
def staff_api(db):
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


SANDBOX_SECRET = "test-secret"
SANDBOX_KEY = "test-key"


@pytest.fixture
def sandbox(settings):
    """The real sandbox gateway on a free loopback port, with the app pointed at it. Calls
    are made by the tests (no q2 cluster): ``gateway_calls_due`` and friends."""
    from payments.sandbox.server import start_in_thread

    server = start_in_thread(secret=SANDBOX_SECRET, api_key=SANDBOX_KEY)
    settings.BILLING_GATEWAY_ADAPTER = "payments.gateway.sandbox.SandboxAdapter"
    settings.BILLING_GATEWAY_URL = server.sandbox.base_url
    settings.BILLING_GATEWAY_API_KEY = SANDBOX_KEY
    settings.BILLING_GATEWAY_SECRET = SANDBOX_SECRET
    settings.BILLING_GATEWAY_TIMEOUT = 1.0
    settings.BILLING_GATEWAY_ENQUEUE = False
    settings.BILLING_GATEWAY_BACKOFF_BASE = 1
    settings.BILLING_GATEWAY_MAX_ATTEMPTS = 3
    settings.BILLING_GATEWAY_POLL_AFTER_SECONDS = 60
    settings.BILLING_GATEWAY_CALLBACK_URL = "http://127.0.0.1:9/unused/"
    yield server
    server.shutdown()
    server.server_close()
