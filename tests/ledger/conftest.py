from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts.models import Account
from ledger.models import Entry, Hold, IdempotencyKey, Transaction
from ledger.services import payment_post
from tests.factories import (
    AccountFactory,
    BrandFactory,
    LegalEntityFactory,
    ServiceFactory,
    UserFactory,
)


@pytest.fixture
def brand(db):
    return BrandFactory()


@pytest.fixture
def service(brand):
    return ServiceFactory(brand=brand)


@pytest.fixture
def account(brand):
    return AccountFactory(brands=[brand])


@pytest.fixture
def fund():
    """Put money on an account through the ledger (a bank payment)."""

    def _fund(account, amount="100.00"):
        return payment_post(account=account, amount=Decimal(amount), channel="bank")

    return _fund


# --------------------------------------------------------------------------- shared helpers

MSK = ZoneInfo("Europe/Moscow")


class Clock:
    """A settable ``timezone.now``: time is outside the system, so tests move it by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    @staticmethod
    def at(*args: int) -> datetime:
        """A moment in the operator's time zone: ``clock.at(2026, 3, 31, 23, 59)``."""
        return datetime(*args, tzinfo=MSK)

    def set(self, *args: int) -> datetime:
        self.now = self.at(*args)
        return self.now

    @property
    def today(self) -> date:
        return timezone.localtime(self.now).date()


@pytest.fixture
def clock():
    """Freeze ``django.utils.timezone.now`` (what every service reads) at 14 March 2026, noon."""
    frozen = Clock(datetime(2026, 3, 14, 12, 0, tzinfo=MSK))
    with mock.patch("ledger.services.timezone.now", new=frozen):
        yield frozen


STATE_FIELDS = (
    "pk",
    "status",
    "parent_id",
    "balance",
    "held",
    "negative_since",
    "spent_day",
    "spent_day_on",
    "spent_month",
    "spent_month_on",
)


def ledger_state() -> dict:
    """Everything a posting can change: row counts and every account's running state."""
    return {
        "transactions": Transaction.objects.count(),
        "entries": Entry.objects.count(),
        "idempotency_keys": IdempotencyKey.objects.count(),
        "holds": list(
            Hold.objects.order_by("pk").values_list("pk", "status", "captured_amount", "closed_at")
        ),
        "accounts": list(Account.objects.order_by("pk").values_list(*STATE_FIELDS)),
    }


@pytest.fixture
def snapshot(db):
    """``snapshot()`` returns ``ledger_state()``: compare two to prove nothing was written."""
    return ledger_state


@pytest.fixture
def refused(db):
    """``with refused(InsufficientFunds, "insufficient_funds"): ...`` asserts the error, its
    stable code, and that the refused call left the whole ledger exactly as it was."""

    @contextmanager
    def _refused(error: type[Exception], code: str | None = None):
        before = ledger_state()
        with pytest.raises(error) as info:
            yield info
        if code is not None:
            assert info.value.code == code
        assert ledger_state() == before

    return _refused


@pytest.fixture
def other_brand(db):
    return BrandFactory()


@pytest.fixture
def make_account(brand):
    """A client account linked to ``brand`` (pass ``parent=`` for a sub-account)."""

    def _make(**fields):
        fields.setdefault("brands", [brand])
        return AccountFactory(**fields)

    return _make


@pytest.fixture
def chain3(make_account):
    """Company payer <- department <- employee: three levels, the employee posts."""
    payer = make_account(client=LegalEntityFactory())
    department = make_account(client=payer.client, parent=payer)
    employee = make_account(parent=department)
    return payer, department, employee


@pytest.fixture
def staff_user(db):
    """A staff user with ``ledger.post_adjustment`` (fetched again so permissions are fresh)."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="post_adjustment"))
    return get_user_model().objects.get(pk=user.pk)
