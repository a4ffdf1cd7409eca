"""Checks that apps above the ledger add to money coming in, without the ledger importing them.

An app registers a check in its ``AppConfig.ready`` (``register_payment_check``);
``payment_post`` runs every registered check once the payment's amount and
channel are validated and before anything is locked or written. A check raises
a ``DomainError`` (a stable code, the field it is about) to refuse the payment;
the refusal changes nothing. The payment-intake app registers its payment
rules here (``payments.rules``); bulk callers check their items themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from core.caller import Caller

PaymentCheck = Callable[..., None]
_payment_checks: list[PaymentCheck] = []


def register_payment_check(check: PaymentCheck) -> None:
    """``check(account_id=, amount=, channel=, caller=)``; registering twice is a no-op."""
    if check not in _payment_checks:
        _payment_checks.append(check)


def run_payment_checks(*, account_id: int, amount: Decimal, channel: str, caller: Caller) -> None:
    for check in _payment_checks:
        check(account_id=account_id, amount=amount, channel=channel, caller=caller)
