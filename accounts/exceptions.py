"""Domain errors about accounts: status, currency, structure."""

from core.errors import DomainError, PermissionDenied

__all__ = [
    "AccountBlocked",
    "AccountClosed",
    "AccountHasFunds",
    "CurrencyMismatch",
    "InvalidAccountStructure",
    "InvalidStatusTransition",
    "PermissionDenied",
]


class AccountBlocked(DomainError):
    code = "account_blocked"
    default_message = "The account is blocked."


class AccountClosed(DomainError):
    code = "account_closed"
    default_message = "The account is closed."


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"
    default_message = "The accounts have different currencies."


class InvalidStatusTransition(DomainError):
    code = "invalid_status_transition"
    status = 409
    default_message = "The account cannot move to that status."


class AccountHasFunds(DomainError):
    code = "account_has_funds"
    status = 409
    default_message = "The account still has a balance, holds or open sub-accounts."


class InvalidAccountStructure(DomainError):
    code = "invalid_account_structure"
    status = 400
    default_message = "That parent account cannot be used."
