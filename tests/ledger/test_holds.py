"""Two-phase write-offs: hold_create, hold_capture (full, partial), hold_void, hold_expire and
holds_expire_due, with the payer's ``held`` and the chain's write-off room."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from accounts.services import account_block, account_close
from ledger.exceptions import (
    AccountBlocked,
    AccountClosed,
    CurrencyMismatch,
    HoldNotActive,
    InsufficientFunds,
    InvalidAmount,
    InvalidOperation,
    WriteOffLimitExceeded,
)
from ledger.models import Entry, Hold, Transaction
from ledger.selectors import account_balance
from ledger.services import (
    BrandNotLinked,
    Caller,
    ValidationFailed,
    debit_post,
    hold_capture,
    hold_create,
    hold_expire,
    hold_void,
    holds_expire_due,
)
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

D = Decimal


def state(account) -> tuple:
    account.refresh_from_db()
    return (account.balance, account.held, account.spent_day, account.spent_month)


# --------------------------------------------------------------------------- hold_create


def test_hold_create_reserves_funds_and_limit_room(make_account, brand, service, fund, clock):
    account = make_account(write_off_limit_day=D("100.00"))
    fund(account, "100.00")
    transactions = Transaction.objects.count()
    hold = hold_create(
        account=account,
        amount="30.00",
        brand=brand,
        service=service,
        subject_type="order",
        subject_id="A-1",
        metadata={"dishes": 2},
        memo="pre-order",
        caller=Caller.for_partner(3, request_id="q"),
    )
    assert state(account) == (D("100.00"), D("30.00"), D("30.00"), D("30.00"))
    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.account_id, stored.payer_id, stored.amount, stored.currency, stored.status) == (
        account.pk,
        account.pk,
        D("30.00"),
        "RUB",
        Hold.Status.ACTIVE,
    )
    assert (stored.brand_id, stored.service_id, stored.subject_type, stored.subject_id) == (
        brand.pk,
        service.pk,
        "order",
        "A-1",
    )
    assert stored.expires_at == clock.now + timedelta(minutes=settings.BILLING_HOLD_TTL_MINUTES)
    assert (stored.reserved_on, stored.created_at, stored.caller) == (
        clock.today,
        clock.now,
        "partner:3",
    )
    assert stored.metadata == {"dishes": 2}
    assert Transaction.objects.count() == transactions  # a hold moves no money yet
    assert account_balance(account).available == D("70.00")
    assert hold.replayed is False


def test_hold_create_on_subaccount_reserves_on_root_payer(chain3, brand, fund):
    payer, department, employee = chain3
    fund(payer, "100.00")
    hold = hold_create(account=employee, amount="40.00", brand=brand, expires_at=None)
    assert hold.payer_id == payer.pk
    assert state(payer)[:2] == (D("100.00"), D("40.00"))
    assert state(employee)[:2] == (D("0.00"), D("0.00"))
    assert state(department)[2] == D("40.00")  # limit room used on every level


def test_hold_create_on_credit(make_account, brand):
    account = make_account(credit_limit=D("50.00"))
    hold_create(account=account, amount="50.00", brand=brand)
    assert state(account)[:2] == (D("0.00"), D("50.00"))
    assert account.negative_since is None  # nothing was spent yet


@pytest.mark.parametrize(
    ("credit", "existing_hold", "amount", "available"),
    [("0.00", None, "100.01", "100.00"), ("25.00", "60.00", "65.01", "65.00")],
)
def test_hold_create_insufficient_funds(
    make_account, brand, fund, refused, credit, existing_hold, amount, available
):
    account = make_account(credit_limit=D(credit))
    fund(account, "100.00")
    if existing_hold:
        hold_create(account=account, amount=existing_hold, brand=brand)
    with refused(InsufficientFunds, "insufficient_funds") as info:
        hold_create(account=account, amount=amount, brand=brand)
    assert info.value.details["available"] == available


@pytest.mark.parametrize("level", [0, 1, 2], ids=["employee", "department", "payer"])
def test_hold_create_write_off_limit_exceeded(chain3, brand, fund, refused, level):
    payer, _, employee = chain3
    fund(payer, "1000.00")
    limited = chain3[::-1][level]
    limited.write_off_limit_day = D("50.00")
    limited.save(update_fields=["write_off_limit_day"])
    hold_create(account=employee, amount="30.00", brand=brand)
    with refused(WriteOffLimitExceeded, "write_off_limit_exceeded") as info:
        hold_create(account=employee, amount="20.01", brand=brand)
    assert (info.value.details["account"], info.value.details["remaining"]) == (
        limited.number,
        "20.00",
    )


@pytest.mark.parametrize("blocked_level", [0, 2])
def test_hold_create_refused_when_chain_blocked(chain3, brand, fund, refused, blocked_level):
    payer, _, employee = chain3
    fund(payer, "100.00")
    account_block(account=chain3[blocked_level], reason="check")
    with refused(AccountBlocked, "account_blocked"):
        hold_create(account=employee, amount="1.00", brand=brand)


def test_hold_create_refusals_for_status_currency_brand_service_and_expiry(
    make_account, brand, other_brand, fund, refused, clock
):
    account = make_account()
    fund(account, "100.00")
    closed = make_account()
    account_close(account=closed)
    with refused(AccountClosed, "account_closed"):
        hold_create(account=closed, amount="1.00", brand=brand)
    with refused(CurrencyMismatch, "currency_mismatch"):
        hold_create(account=account, amount="1.00", brand=brand, currency="EUR")
    with refused(BrandNotLinked, "brand_not_linked"):
        hold_create(account=account, amount="1.00", brand=other_brand)
    foreign = ServiceFactory(brand=other_brand)
    with refused(InvalidOperation, "invalid_operation"):
        hold_create(account=account, amount="1.00", brand=brand, service=foreign)
    for past in (clock.now, clock.now - timedelta(seconds=1)):
        with refused(ValidationFailed, "validation_error") as info:
            hold_create(account=account, amount="1.00", brand=brand, expires_at=past)
        assert info.value.details["field"] == "expires_at"


# --------------------------------------------------------------------------- hold_capture


def test_hold_capture_full(make_account, brand, service, fund, clock):
    account = make_account(write_off_limit_day=D("100.00"))
    fund(account, "100.00")
    hold = hold_create(
        account=account, amount="30.00", brand=brand, service=service, subject_id="7"
    )
    clock.advance(minutes=5)
    txn = hold_capture(hold=hold)
    assert state(account) == (D("70.00"), D("0.00"), D("30.00"), D("30.00"))
    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.status, stored.captured_amount, stored.closed_at) == (
        Hold.Status.CAPTURED,
        D("30.00"),
        clock.now,
    )
    record = Transaction.objects.get(pk=txn.pk)
    assert (record.kind, record.amount, record.hold_id, record.service_id, record.subject_id) == (
        "hold_capture",
        D("30.00"),
        hold.pk,
        service.pk,
        "7",
    )
    revenue_key = f"revenue:RUB:b{brand.pk}:s{service.pk}"
    assert list(
        Entry.objects.filter(transaction_id=txn.pk)
        .order_by("id")
        .values_list("account__system_key", "subaccount_id", "amount", "balance_after")
    ) == [(None, None, D("-30.00"), D("70.00")), (revenue_key, None, D("30.00"), None)]


def test_hold_capture_partial_releases_the_rest(chain3, brand, fund):
    payer, department, employee = chain3
    fund(payer, "100.00")
    hold = hold_create(account=employee, amount="30.00", brand=brand)
    txn = hold_capture(hold=hold, amount="12.50")
    assert state(payer) == (D("87.50"), D("0.00"), D("12.50"), D("12.50"))
    for acc in (department, employee):
        assert state(acc)[2:] == (D("12.50"), D("12.50"))  # the unused 17.50 is given back
    entry = Entry.objects.filter(transaction_id=txn.pk, account_id=payer.pk).get()
    assert (entry.subaccount_id, entry.amount, entry.balance_after) == (
        employee.pk,
        D("-12.50"),
        D("87.50"),
    )
    assert Hold.objects.get(pk=hold.pk).captured_amount == D("12.50")


def test_hold_capture_allowed_on_blocked_account_and_beyond_limits(make_account, brand, fund):
    account = make_account(write_off_limit_transaction=D("50.00"))
    fund(account, "100.00")
    hold = hold_create(account=account, amount="50.00", brand=brand)
    account_block(account=account, reason="review")
    account.write_off_limit_transaction = D("1.00")
    account.save(update_fields=["write_off_limit_transaction"])
    hold_capture(hold=hold)
    assert state(account)[:2] == (D("50.00"), D("0.00"))


def test_hold_capture_more_than_held_is_invalid_amount(make_account, brand, fund, refused):
    account = make_account()
    fund(account, "100.00")
    hold = hold_create(account=account, amount="30.00", brand=brand)
    with refused(InvalidAmount, "invalid_amount") as info:
        hold_capture(hold=hold, amount="30.01")
    assert info.value.details == {"held": "30.00", "requested": "30.01"}


@pytest.mark.parametrize("end", ["captured", "voided", "expired", "past_expiry"])
def test_hold_capture_refused_when_hold_not_active(make_account, brand, fund, refused, clock, end):
    account = make_account()
    fund(account, "100.00")
    hold = hold_create(
        account=account, amount="30.00", brand=brand, expires_at=clock.now + timedelta(hours=1)
    )
    if end == "captured":
        hold_capture(hold=hold, amount="10.00")
    elif end == "voided":
        hold_void(hold=hold)
    else:
        clock.advance(hours=1)  # expires_at reached: no longer capturable even before the sweep
        if end == "expired":
            hold_expire(hold=hold)
    with refused(HoldNotActive, "hold_not_active") as info:
        hold_capture(hold=hold)
    assert info.value.details["hold"] == hold.pk
    if end == "past_expiry":
        # Still active on paper until the sweep; it can only be released now.
        assert hold_expire(hold=hold.pk).status == Hold.Status.EXPIRED
    else:
        with refused(HoldNotActive, "hold_not_active"):
            hold_void(hold=hold)
    assert state(account)[1] == D("0.00")


# --------------------------------------------------------------------------- void / expire


def test_hold_void_releases_funds_and_limit_room(chain3, brand, fund, clock):
    payer, department, employee = chain3
    fund(payer, "100.00")
    debit_post(account=employee, amount="10.00", brand=brand)
    hold = hold_create(account=employee, amount="30.00", brand=brand)
    clock.advance(minutes=1)
    voided = hold_void(hold=hold)
    assert (voided.status, voided.closed_at, voided.captured_amount) == (
        Hold.Status.VOIDED,
        clock.now,
        D("0.00"),
    )
    assert state(payer) == (D("90.00"), D("0.00"), D("10.00"), D("10.00"))
    assert state(department)[2:] == (D("10.00"), D("10.00"))
    assert Transaction.objects.filter(hold=hold).count() == 0


def test_hold_void_on_a_later_day_gives_back_only_month_room(make_account, brand, fund, clock):
    account = make_account(write_off_limit_day=D("50.00"), write_off_limit_month=D("80.00"))
    fund(account, "100.00")
    hold = hold_create(account=account, amount="50.00", brand=brand)
    clock.advance(days=1)
    debit_post(account=account, amount="20.00", brand=brand)
    hold_void(hold=hold)
    # The day the hold counted on is over; this month's room comes back.
    assert state(account) == (D("80.00"), D("0.00"), D("20.00"), D("20.00"))
    debit_post(account=account, amount="30.00", brand=brand)  # day: 20 + 30 = 50
    with pytest.raises(WriteOffLimitExceeded):
        debit_post(account=account, amount="0.01", brand=brand)


def test_hold_void_in_a_later_month_gives_back_nothing(make_account, brand, fund, clock):
    account = make_account(write_off_limit_month=D("100.00"))
    fund(account, "200.00")
    clock.set(2026, 3, 31, 20, 0)
    hold = hold_create(account=account, amount="60.00", brand=brand)
    clock.set(2026, 4, 1, 9, 0)
    debit_post(account=account, amount="70.00", brand=brand)
    hold_void(hold=hold)
    assert state(account) == (D("130.00"), D("0.00"), D("70.00"), D("70.00"))


def test_hold_expire_only_after_expiry(make_account, brand, fund, refused, clock):
    account = make_account()
    fund(account, "100.00")
    hold = hold_create(
        account=account, amount="30.00", brand=brand, expires_at=clock.now + timedelta(minutes=10)
    )
    clock.advance(minutes=10, seconds=-1)
    with refused(HoldNotActive, "hold_not_active"):
        hold_expire(hold=hold)
    clock.advance(seconds=1)
    expired = hold_expire(hold=hold)
    assert (expired.status, expired.closed_at) == (Hold.Status.EXPIRED, clock.now)
    assert state(account)[:3] == (D("100.00"), D("0.00"), D("0.00"))
    with refused(HoldNotActive, "hold_not_active"):
        hold_expire(hold=hold)
    with refused(HoldNotActive, "hold_not_active"):
        hold_void(hold=hold)


def test_holds_expire_due_expires_exactly_the_due_holds(make_account, brand, fund, clock):
    account = make_account()
    fund(account, "100.00")
    soon = [
        hold_create(
            account=account,
            amount="10.00",
            brand=brand,
            expires_at=clock.now + timedelta(minutes=m),
        )
        for m in (1, 2, 3)
    ]
    later = hold_create(
        account=account, amount="10.00", brand=brand, expires_at=clock.now + timedelta(days=1)
    )
    captured = hold_create(
        account=account, amount="10.00", brand=brand, expires_at=clock.now + timedelta(minutes=1)
    )
    hold_capture(hold=captured)
    assert state(account)[:2] == (D("90.00"), D("40.00"))
    clock.advance(minutes=2)
    assert holds_expire_due(batch_size=1) == 2
    statuses = dict(Hold.objects.values_list("pk", "status"))
    assert [statuses[h.pk] for h in soon] == ["expired", "expired", "active"]
    assert (statuses[later.pk], statuses[captured.pk]) == ("active", "captured")
    assert state(account)[:2] == (D("90.00"), D("20.00"))
    assert holds_expire_due() == 0
    clock.advance(days=1)
    assert holds_expire_due() == 2
    assert state(account)[:2] == (D("90.00"), D("0.00"))


def test_holds_expire_due_with_a_future_cutoff_terminates(make_account, brand, fund, clock):
    """A cutoff later than the clock lists holds that ``hold_expire`` must still refuse; the
    sweep has to skip them instead of fetching the same batch forever."""
    account = make_account()
    fund(account, "100.00")
    holds = [
        hold_create(
            account=account,
            amount="10.00",
            brand=brand,
            expires_at=clock.now + timedelta(minutes=5),
        )
        for _ in range(3)
    ]
    assert holds_expire_due(now=clock.now + timedelta(hours=1), batch_size=2) == 0
    assert set(
        Hold.objects.filter(pk__in=[h.pk for h in holds]).values_list("status", flat=True)
    ) == {"active"}
    assert state(account)[:2] == (D("100.00"), D("30.00"))
