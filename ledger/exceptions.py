"""Domain errors of the ledger. Each carries a stable ``code`` and a ``status``.

A refused posting raises one of these and changes nothing: the raising service
is atomic, so everything it did is rolled back. Account-level errors are
defined in ``accounts.exceptions`` and re-exported here for convenience.
"""

from accounts.exceptions import (
    AccountBlocked,
    AccountClosed,
    AccountHasFunds,
    CurrencyMismatch,
    InvalidStatusTransition,
)
from core.errors import DomainError, IdempotencyConflict, PermissionDenied

__all__ = [
    "AccountBlocked",
    "AccountClosed",
    "AccountHasFunds",
    "AlreadyReversed",
    "CreditLimitExpired",
    "CreditPeriodExpired",
    "CurrencyMismatch",
    "DomainError",
    "DuplicatePayment",
    "HoldNotActive",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidOperation",
    "InvalidStatusTransition",
    "PermissionDenied",
    "WriteOffLimitExceeded",
]


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    default_message = "Not enough available funds."


class WriteOffLimitExceeded(DomainError):
    code = "write_off_limit_exceeded"
    default_message = "A write-off limit would be exceeded."


class CreditPeriodExpired(DomainError):
    code = "credit_period_expired"
    default_message = "The credit period is over; debits are blocked until the debt is repaid."


class CreditLimitExpired(DomainError):
    code = "credit_limit_expired"
    default_message = "The credit limit has expired."


class InvalidOperation(DomainError):
    """A request the ledger cannot carry out as asked (same account, system account, ...)."""

    code = "invalid_operation"
    default_message = "The operation is not allowed."


class InvalidAmount(DomainError):
    code = "invalid_amount"
    status = 400
    default_message = "The amount must be positive with at most two decimal places."


class HoldNotActive(DomainError):
    code = "hold_not_active"
    status = 409
    default_message = "The hold is no longer active."


class DuplicatePayment(DomainError):
    """A payment whose ``external_id`` was already posted in the same payer scope (the
    partner's, or the channel's for staff); ``details.transaction`` is the original."""

    code = "duplicate_payment"
    status = 409
    default_message = "This payment was already posted."


class AlreadyReversed(DomainError):
    code = "already_reversed"
    status = 409
    default_message = "The transaction has already been reversed."
