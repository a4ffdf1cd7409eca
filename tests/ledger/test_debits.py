"""Charges to a brand's revenue: debit_post (discretionary) and accrual_post (creates debt)."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from accounts.models import Account
from accounts.services import account_block, account_close
from ledger.exceptions import (
    AccountBlocked,
    AccountClosed,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidOperation,
)
from ledger.models import Entry, Transaction
from ledger.selectors import system_account_balance
from ledger.services import (
    BrandNotLinked,
    Caller,
    ValidationFailed,
    accrual_post,
    debit_post,
    hold_create,
)
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

CHARGES = {"debit": debit_post, "accrual": accrual_post}


def entries_of(txn: Transaction) -> list[tuple]:
    return list(
        Entry.objects.filter(transaction_id=txn.pk)
        .order_by("id")
        .values_list("account_id", "subaccount_id", "amount", "balance_after")
    )


def counters(account: Account) -> tuple:
    account.refresh_from_db()
    return (account.spent_day, account.spent_day_on, account.spent_month, account.spent_month_on)


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("kind", CHARGES)
def test_charge_moves_money_to_the_brand_service_revenue(
    kind, account, brand, service, fund, clock
):
    fund(account, "100.00")
    txn = CHARGES[kind](
        account=account,
        amount="30.00",
        brand=brand,
        service=service,
        subject_type="order",
        subject_id="81723",
        metadata={"items": 3, "restaurant": "Pelmeni"},
        memo="lunch",
        caller=Caller.for_partner(7, request_id="r-1"),
    )
    account.refresh_from_db()
    assert account.balance == Decimal("70.00")
    revenue = Account.objects.get(system_key=f"revenue:RUB:b{brand.pk}:s{service.pk}")
    assert (revenue.kind, revenue.brand_id, revenue.service_id) == ("revenue", brand.pk, service.pk)
    assert entries_of(txn) == [
        (account.pk, None, Decimal("-30.00"), Decimal("70.00")),
        (revenue.pk, None, Decimal("30.00"), None),
    ]
    assert system_account_balance(revenue) == Decimal("30.00")
    stored = Transaction.objects.get(pk=txn.pk)
    assert (
        stored.kind,
        stored.brand_id,
        stored.service_id,
        stored.subject_type,
        stored.subject_id,
    ) == (
        kind,
        brand.pk,
        service.pk,
        "order",
        "81723",
    )
    assert stored.metadata == {"items": 3, "restaurant": "Pelmeni"}
    assert (stored.memo, stored.caller, stored.request_id) == ("lunch", "partner:7", "r-1")


@pytest.mark.parametrize(
    "metadata",
    [
        {"payer": "Иванов И.И.", "lines": [1, 2.5, None, True], "nested": {"a": ""}},
        {"on": date(2026, 12, 1), "at": datetime(2026, 12, 1, 10, 15, 0, 123456, tzinfo=UTC)},
        {"amount": Decimal("12.30"), "ref": UUID("12345678-1234-5678-1234-567812345678")},
        {"7": "a key that is a number's text"},
    ],
    ids=["plain", "dates", "decimal-uuid", "digit-key"],
)
def test_metadata_is_stored_as_the_json_field_would_store_it(metadata, account, brand, fund):
    """The writer encodes metadata itself (orjson for plain values, DjangoJSONEncoder for
    dates, decimals and the rest): what is read back equals what Django's JSONField would
    have stored for the same value."""
    fund(account, "10.00")
    txn = debit_post(account=account, amount="1.00", brand=brand, metadata=metadata)
    expected = json.loads(json.dumps(metadata, cls=DjangoJSONEncoder))
    assert Transaction.objects.get(pk=txn.pk).metadata == expected


@pytest.mark.parametrize("kind", CHARGES)
def test_charge_without_service_goes_to_brand_revenue(kind, account, brand, fund):
    fund(account, "10.00")
    CHARGES[kind](account=account, amount="10.00", brand=brand.pk)
    revenue = Account.objects.get(system_key=f"revenue:RUB:b{brand.pk}")
    assert system_account_balance(revenue) == Decimal("10.00")


def test_debit_post_service_given_by_id(account, brand, service, fund):
    fund(account, "10.00")
    txn = debit_post(account=account.pk, amount="2.00", brand=brand, service=service.pk)
    assert Transaction.objects.get(pk=txn.pk).service_id == service.pk


def test_debit_post_subaccount_draws_on_root_payer_and_counts_on_every_level(
    chain3, brand, fund, clock
):
    payer, department, employee = chain3
    fund(payer, "1000.00")
    txn = debit_post(account=employee, amount="120.00", brand=brand)
    for acc in chain3:
        acc.refresh_from_db()
    assert (payer.balance, department.balance, employee.balance) == (
        Decimal("880.00"),
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert entries_of(txn)[0] == (payer.pk, employee.pk, Decimal("-120.00"), Decimal("880.00"))
    month = clock.today.replace(day=1)
    for acc in chain3:
        assert counters(acc) == (Decimal("120.00"), clock.today, Decimal("120.00"), month)


def test_debit_post_uses_the_credit_line(account, brand, clock):
    account.credit_limit = Decimal("100.00")
    account.save(update_fields=["credit_limit"])
    debit_post(account=account, amount="60.00", brand=brand)
    went_negative = clock.now
    clock.advance(hours=1)
    txn = debit_post(account=account, amount="40.00", brand=brand)
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (Decimal("-100.00"), went_negative)
    assert entries_of(txn)[0][3] == Decimal("-100.00")


def test_debit_post_exact_available_amount_is_allowed(account, brand, fund):
    fund(account, "50.00")
    hold_create(account=account, amount="20.00", brand=brand)
    debit_post(account=account, amount="30.00", brand=brand)
    account.refresh_from_db()
    assert (account.balance, account.held) == (Decimal("20.00"), Decimal("20.00"))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("balance", "credit", "hold", "amount", "available"),
    [
        ("0.00", "0.00", None, "0.01", "0.00"),
        ("100.00", "0.00", None, "100.01", "100.00"),
        ("100.00", "50.00", None, "150.01", "150.00"),
        ("100.00", "0.00", "60.00", "40.01", "40.00"),
        ("100.00", "50.00", "60.00", "90.01", "90.00"),
    ],
)
def test_debit_post_insufficient_funds(
    account, brand, fund, refused, balance, credit, hold, amount, available
):
    account.credit_limit = Decimal(credit)
    account.save(update_fields=["credit_limit"])
    if Decimal(balance):
        fund(account, balance)
    if hold:
        hold_create(account=account, amount=hold, brand=brand)
    with refused(InsufficientFunds, "insufficient_funds") as info:
        debit_post(account=account, amount=amount, brand=brand)
    assert info.value.details == {
        "account": account.number,
        "available": available,
        "requested": amount,
    }


def test_debit_post_insufficient_funds_on_root_payer_of_subaccount(chain3, brand, fund, refused):
    payer, _, employee = chain3
    fund(payer, "10.00")
    with refused(InsufficientFunds, "insufficient_funds") as info:
        debit_post(account=employee, amount="10.01", brand=brand)
    assert info.value.details["account"] == payer.number


@pytest.mark.parametrize("blocked_level", [0, 1, 2])
def test_debit_post_refused_when_any_account_in_chain_is_blocked(
    chain3, brand, fund, refused, blocked_level
):
    payer, _, employee = chain3
    fund(payer, "100.00")
    blocked = chain3[blocked_level]
    account_block(account=blocked, reason="investigation")
    with refused(AccountBlocked, "account_blocked") as info:
        debit_post(account=employee, amount="1.00", brand=brand)
    assert info.value.details["account"] == blocked.number


def test_debit_post_refused_on_closed_account(make_account, brand, fund, refused):
    payer = make_account()
    sub = make_account(parent=payer)
    fund(payer, "100.00")
    account_close(account=sub)
    with refused(AccountClosed, "account_closed") as info:
        debit_post(account=sub, amount="1.00", brand=brand)
    assert info.value.details["account"] == sub.number
    solo = make_account()
    account_close(account=solo)
    with refused(AccountClosed, "account_closed"):
        debit_post(account=solo, amount="1.00", brand=brand)


@pytest.mark.parametrize("kind", CHARGES)
def test_charge_currency_mismatch(kind, account, brand, fund, refused):
    fund(account, "100.00")
    with refused(CurrencyMismatch, "currency_mismatch"):
        CHARGES[kind](account=account, amount="1.00", brand=brand, currency="USD")


@pytest.mark.parametrize("kind", CHARGES)
def test_charge_brand_not_linked(kind, make_account, brand, other_brand, fund, refused):
    account = make_account()
    fund(account, "100.00")
    with refused(BrandNotLinked, "brand_not_linked") as info:
        CHARGES[kind](account=account, amount="1.00", brand=other_brand)
    assert info.value.details == {"account": account.number, "brand": other_brand.pk}


def test_debit_post_brand_is_checked_on_the_named_subaccount(
    make_account, brand, other_brand, fund, refused
):
    payer = make_account(brands=[brand, other_brand])
    sub = make_account(parent=payer, brands=[brand])
    fund(payer, "100.00")
    with refused(BrandNotLinked, "brand_not_linked"):
        debit_post(account=sub, amount="1.00", brand=other_brand)


@pytest.mark.parametrize("kind", CHARGES)
def test_charge_service_of_another_brand_is_refused(
    kind, account, brand, other_brand, fund, refused
):
    fund(account, "100.00")
    foreign = ServiceFactory(brand=other_brand)
    with refused(InvalidOperation, "invalid_operation"):
        CHARGES[kind](account=account, amount="1.00", brand=brand, service=foreign)


@pytest.mark.parametrize("kind", CHARGES)
def test_charge_needs_a_brand(kind, account, fund, refused):
    fund(account, "100.00")
    with refused(ValidationFailed, "validation_error") as info:
        CHARGES[kind](account=account, amount="1.00", brand=None)
    assert info.value.details["field"] == "brand"


# --------------------------------------------------------------------------- accrual_post


def test_accrual_post_is_never_refused_for_funds_or_limits(make_account, brand, clock):
    account = make_account(
        credit_limit=Decimal("10.00"),
        credit_period_days=1,
        write_off_limit_transaction=Decimal("5.00"),
        write_off_limit_day=Decimal("5.00"),
        write_off_limit_month=Decimal("5.00"),
    )
    accrual_post(account=account, amount="500.00", brand=brand)
    went_negative = clock.now
    clock.advance(days=3)  # credit period over
    account_block(account=account, reason="debt")
    txn = accrual_post(account=account, amount="250.00", brand=brand)
    account.refresh_from_db()
    assert (account.balance, account.negative_since) == (Decimal("-750.00"), went_negative)
    # Accruals are not write-offs: no limit room is used.
    assert (account.spent_day, account.spent_month) == (Decimal("0.00"), Decimal("0.00"))
    assert entries_of(txn)[0][3] == Decimal("-750.00")


def test_accrual_post_on_subaccount_lands_on_payer_without_using_limits(chain3, brand):
    payer, department, employee = chain3
    department.write_off_limit_transaction = Decimal("1.00")
    department.save(update_fields=["write_off_limit_transaction"])
    txn = accrual_post(account=employee, amount="75.00", brand=brand)
    payer.refresh_from_db()
    assert payer.balance == Decimal("-75.00")
    assert entries_of(txn)[0] == (payer.pk, employee.pk, Decimal("-75.00"), Decimal("-75.00"))
    assert counters(employee)[0] == Decimal("0.00")


def test_accrual_post_refused_on_closed_account(make_account, brand, refused):
    payer = make_account()
    sub = make_account(parent=payer)
    account_close(account=sub)
    with refused(AccountClosed, "account_closed"):
        accrual_post(account=sub, amount="1.00", brand=brand)
