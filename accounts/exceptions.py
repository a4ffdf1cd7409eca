"""Domain errors about accounts: status, currency, structure."""

from core.errors import DomainError, PermissionDenied

__all__ = [
    "AccountBlocked",
    "AccountClosed",
    "AccountHasFunds",
    "BlockedByStaff",
    "CurrencyMismatch",
    "InvalidAccountStructure",
    "InvalidStatusTransition",
    "PermissionDenied",
    "SharedObject",
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


class SharedObject(DomainError):
    """A partner may not change what it shares with brands outside its key's scope."""

    code = "shared_object"
    status = 403
    default_message = (
        "This client or account is shared with brands outside your scope; "
        "only the operator may change it."
    )


class BlockedByStaff(DomainError):
    code = "blocked_by_staff"
    status = 403
    default_message = "The operator blocked this account; only the operator may unblock it."
