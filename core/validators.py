"""Validators for Russian registration numbers and our own account numbers.

INN (taxpayer number) checksums follow the Federal Tax Service algorithm:
10 digits with one check digit for organisations, 12 digits with two for
individuals. Account numbers carry a Luhn check digit so that a mistyped
number at a bank terminal is caught before the payment is posted.
"""

from django.core.exceptions import ValidationError

_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_1 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_2 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def _check_digit(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def inn_is_valid(value: str) -> bool:
    if not value.isdigit() or not value.isascii():
        return False
    if len(value) == 10:
        return _check_digit(value[:9], _INN10_WEIGHTS) == int(value[9])
    if len(value) == 12:
        return _check_digit(value[:10], _INN12_WEIGHTS_1) == int(value[10]) and _check_digit(
            value[:11], _INN12_WEIGHTS_2
        ) == int(value[11])
    return False


def inn_complete(prefix: str) -> str:
    """Append the check digit(s) to a 9- or 10-digit INN body (for demo data and tests)."""
    if len(prefix) == 9:
        return prefix + str(_check_digit(prefix, _INN10_WEIGHTS))
    if len(prefix) == 10:
        first = prefix + str(_check_digit(prefix, _INN12_WEIGHTS_1))
        return first + str(_check_digit(first, _INN12_WEIGHTS_2))
    raise ValueError("INN body must have 9 (organisation) or 10 (individual) digits")


def validate_inn(value: str) -> None:
    if not inn_is_valid(value):
        raise ValidationError(
            "Enter a valid INN: 10 digits for an organisation or 12 for an individual, "
            "with correct check digits.",
            code="invalid_tax_id",
        )


def validate_kpp(value: str) -> None:
    if not (len(value) == 9 and value.isascii() and value[:4].isdigit() and value.isalnum()):
        raise ValidationError("A KPP has 9 characters, the first four digits.", code="invalid_kpp")


def validate_bik(value: str) -> None:
    if not (len(value) == 9 and value.isdigit() and value.isascii()):
        raise ValidationError("A BIK has 9 digits.", code="invalid_bik")


def validate_bank_account(value: str) -> None:
    if not (len(value) == 20 and value.isdigit() and value.isascii()):
        raise ValidationError("A bank account number has 20 digits.", code="invalid_bank_account")


def luhn_check_digit(body: str) -> int:
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def account_number_from_sequence(value: int) -> str:
    body = f"{value:09d}"
    return body + str(luhn_check_digit(body))


def account_number_is_valid(value: str) -> bool:
    return (
        len(value) >= 2
        and value.isdigit()
        and value.isascii()
        and luhn_check_digit(value[:-1]) == int(value[-1])
    )


def validate_account_number(value: str) -> None:
    if not account_number_is_valid(value):
        raise ValidationError(
            "The account number is not valid (check digit mismatch).",
            code="invalid_account_number",
        )
