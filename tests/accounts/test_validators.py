"""INN checksums, account-number check digits, KPP / BIK / bank account formats."""

import pytest
from django.core.exceptions import ValidationError

from core.validators import (
    account_number_from_sequence,
    account_number_is_valid,
    inn_complete,
    inn_is_valid,
    luhn_check_digit,
    validate_account_number,
    validate_bank_account,
    validate_bik,
    validate_inn,
    validate_kpp,
)

# Real, published INNs: organisations (10 digits) and individuals (12 digits).
VALID_INNS = ["7707083893", "7830002293", "7736207543", "500100732259", "773173084809"]


@pytest.mark.parametrize("inn", VALID_INNS)
def test_validate_inn_accepts_valid_checksums(inn):
    assert inn_is_valid(inn) is True
    validate_inn(inn)  # does not raise


@pytest.mark.parametrize(
    "inn",
    [
        "7707083894",  # 10 digits, last check digit off by one
        "7707083839",  # 10 digits, two digits transposed
        "500100732258",  # 12 digits, second check digit wrong
        "500100732269",  # 12 digits, first check digit wrong
        "773173084890",  # 12 digits, check digits swapped
    ],
)
def test_validate_inn_refuses_bad_checksums(inn):
    assert inn_is_valid(inn) is False
    with pytest.raises(ValidationError) as info:
        validate_inn(inn)
    assert info.value.code == "invalid_tax_id"


@pytest.mark.parametrize(
    "inn",
    ["", "7", "770708389", "77070838930", "5001007322590", "7707083893500100732259"],
)
def test_validate_inn_refuses_wrong_lengths(inn):
    assert inn_is_valid(inn) is False
    with pytest.raises(ValidationError):
        validate_inn(inn)


@pytest.mark.parametrize(
    "inn",
    [
        "77070838-3",
        "7707O83893",  # letter O instead of zero
        " 707083893",
        "770708389\n",
        "７７０７０８３８９３",  # full-width digits: isdigit() but not ASCII
        "٧٧٠٧٠٨٣٨٩٣",  # Arabic-Indic digits
        "+707083893",
    ],
)
def test_validate_inn_refuses_non_digits(inn):
    assert inn_is_valid(inn) is False
    with pytest.raises(ValidationError):
        validate_inn(inn)


@pytest.mark.parametrize(
    ("body", "expected"), [("770708389", "7707083893"), ("5001007322", "500100732259")]
)
def test_inn_complete_appends_the_check_digits(body, expected):
    assert inn_complete(body) == expected
    assert inn_is_valid(inn_complete(body))


def test_inn_complete_refuses_other_body_lengths():
    with pytest.raises(ValueError):
        inn_complete("12345678")


def test_account_number_from_sequence_has_a_luhn_check_digit():
    assert account_number_from_sequence(1) == "0000000018"
    assert account_number_from_sequence(123456789) == "1234567897"
    # The textbook Luhn example.
    assert luhn_check_digit("7992739871") == 3
    assert account_number_is_valid("79927398713")


@pytest.mark.parametrize("value", [1, 42, 1000, 987654321])
def test_account_number_catches_every_single_digit_typo(value):
    number = account_number_from_sequence(value)
    assert account_number_is_valid(number)
    validate_account_number(number)
    for position in range(len(number)):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            typo = number[:position] + digit + number[position + 1 :]
            assert not account_number_is_valid(typo), typo


def test_account_number_catches_adjacent_transpositions():
    number = account_number_from_sequence(123456789)
    for position in range(len(number) - 1):
        a, b = number[position], number[position + 1]
        if a == b or {a, b} == {"0", "9"}:  # the one swap Luhn cannot see
            continue
        swapped = number[:position] + b + a + number[position + 2 :]
        assert not account_number_is_valid(swapped), swapped


@pytest.mark.parametrize("number", ["", "8", "000000001", "00000000l8", "0000-00018", "１８"])
def test_validate_account_number_refuses_malformed(number):
    assert not account_number_is_valid(number)
    with pytest.raises(ValidationError) as info:
        validate_account_number(number)
    assert info.value.code == "invalid_account_number"


@pytest.mark.parametrize("kpp", ["770101001", "7701AB001", "500101001"])
def test_validate_kpp_accepts_valid(kpp):
    validate_kpp(kpp)


@pytest.mark.parametrize(
    "kpp",
    ["", "77010100", "7701010011", "77A101001", "7701-1001", "7701 1001", "７７０１０１００１"],
)
def test_validate_kpp_refuses_invalid(kpp):
    with pytest.raises(ValidationError) as info:
        validate_kpp(kpp)
    assert info.value.code == "invalid_kpp"


def test_validate_bik_accepts_nine_digits():
    validate_bik("044525225")


@pytest.mark.parametrize("bik", ["", "04452522", "0445252250", "04452522A", "０４４５２５２２５"])
def test_validate_bik_refuses_invalid(bik):
    with pytest.raises(ValidationError) as info:
        validate_bik(bik)
    assert info.value.code == "invalid_bik"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("40702810900000000001", True),
        ("4070281090000000000", False),
        ("407028109000000000012", False),
        ("4070281090000000000X", False),
    ],
)
def test_validate_bank_account_needs_twenty_digits(value, ok):
    if ok:
        validate_bank_account(value)
    else:
        with pytest.raises(ValidationError) as info:
            validate_bank_account(value)
        assert info.value.code == "invalid_bank_account"
