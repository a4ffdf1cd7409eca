"""Every money-moving service refuses a bad amount with ``invalid_amount`` and writes nothing."""

from decimal import Decimal

import pytest

from ledger.exceptions import InvalidAmount
from ledger.services import (
    MAX_AMOUNT,
    Caller,
    accrual_post,
    adjustment_post,
    debit_post,
    hold_capture,
    hold_create,
    payment_post,
    refund_post,
    transfer_post,
)

pytestmark = pytest.mark.django_db

BAD_AMOUNTS = {
    "zero": "0",
    "zero_decimal": Decimal("0.00"),
    "negative": "-5.00",
    "negative_int": -1,
    "nan": "NaN",
    "nan_decimal": Decimal("NaN"),
    "signalling_nan": "sNaN",
    "infinity": "Infinity",
    "minus_infinity": Decimal("-Infinity"),
    "three_decimals": "1.001",
    "three_decimals_decimal": Decimal("0.005"),
    "float": 10.5,
    "integral_float": 10.0,
    "bool": True,
    "huge": "10000000000000000.00",
    "exponent": "1e30",
    "text": "ten",
    "empty": "",
    "none": None,
}


@pytest.fixture
def post(make_account, brand, fund):
    """``post[service](amount)`` for each money-moving service, on a well-funded account."""
    account, other = make_account(), make_account()
    fund(account, "1000.00")
    hold = hold_create(account=account, amount="100.00", brand=brand)
    return {
        "payment": lambda amount: payment_post(account=account, amount=amount),
        "debit": lambda amount: debit_post(account=account, amount=amount, brand=brand),
        "accrual": lambda amount: accrual_post(account=account, amount=amount, brand=brand),
        "transfer": lambda amount: transfer_post(
            from_account=account, to_account=other, amount=amount
        ),
        "refund": lambda amount: refund_post(account=account, amount=amount),
        "hold_create": lambda amount: hold_create(account=account, amount=amount, brand=brand),
        "hold_capture": lambda amount: hold_capture(hold=hold, amount=amount),
    }


SERVICES = ["payment", "debit", "accrual", "transfer", "refund", "hold_create", "hold_capture"]


@pytest.mark.parametrize(
    ("service", "amount"),
    [
        pytest.param(service, amount, id=f"{service}-{name}")
        for service in SERVICES
        for name, amount in BAD_AMOUNTS.items()
        # hold_capture(amount=None) means "capture the whole hold", a valid request.
        if not (service == "hold_capture" and amount is None)
    ],
)
def test_posting_invalid_amount_is_refused(post, refused, service, amount):
    with refused(InvalidAmount, "invalid_amount"):
        post[service](amount)


@pytest.mark.parametrize("amount", ["7", 7, Decimal("7"), "7.5", " 7.50 ", Decimal("7.500")])
@pytest.mark.parametrize("service", ["payment", "debit", "hold_create"])
def test_posting_accepts_decimal_strings_ints_and_decimals(post, service, amount):
    result = post[service](amount)
    expected = Decimal(str(amount).strip()).quantize(Decimal("0.01"))
    assert result.amount == expected
    assert str(result.amount) == str(expected)  # always two places, as stored


def test_payment_post_largest_storable_amount(make_account, refused):
    account, other = make_account(), make_account()
    payment_post(account=account, amount=MAX_AMOUNT)
    account.refresh_from_db()
    assert account.balance == Decimal("9999999999999999.99")
    with refused(InvalidAmount, "invalid_amount"):
        payment_post(account=other.pk, amount=MAX_AMOUNT + Decimal("0.01"))


@pytest.fixture
def post_yen(make_account, brand, fund, staff_user):
    """The services again, on yen accounts, the caller naming no currency."""
    account, other = make_account(currency="JPY"), make_account(currency="JPY")
    fund(account, "1000")
    hold = hold_create(account=account, amount="100", brand=brand)
    return {
        "payment": lambda amount: payment_post(account=account, amount=amount),
        "debit": lambda amount: debit_post(account=account, amount=amount, brand=brand),
        "accrual": lambda amount: accrual_post(account=account, amount=amount, brand=brand),
        "transfer": lambda amount: transfer_post(
            from_account=account, to_account=other, amount=amount
        ),
        "refund": lambda amount: refund_post(account=account, amount=amount),
        "hold_create": lambda amount: hold_create(account=account, amount=amount, brand=brand),
        "hold_capture": lambda amount: hold_capture(hold=hold, amount=amount),
        "adjustment": lambda amount: adjustment_post(
            account=account, amount=amount, reason="fix", caller=Caller.for_user(staff_user)
        ),
    }


@pytest.mark.parametrize("service", [*SERVICES, "adjustment"])
def test_posting_fraction_of_a_currency_without_minor_units_is_refused(post_yen, refused, service):
    with refused(InvalidAmount, "invalid_amount") as info:
        post_yen[service]("1.50")
    assert info.value.details["places"] == 0
    assert post_yen[service]("15").amount == Decimal("15.00")


def test_posting_never_rounds_away_a_third_decimal(make_account, refused):
    """Amounts are stored with two places: a dinar's third decimal is refused, not rounded."""
    dinars = make_account(currency="BHD")
    with refused(InvalidAmount, "invalid_amount"):
        payment_post(account=dinars, amount="1.005", currency="BHD")
    assert payment_post(account=dinars, amount="1.25", currency="BHD").amount == Decimal("1.25")
