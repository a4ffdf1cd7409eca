"""The base of every domain error: a stable ``code``, a message, details and a status.

Apps define their own subclasses (``accounts.exceptions``, ``ledger.exceptions``);
the API exception handler, the UI and imports all read these three fields.
The few errors that more than one layer raises live here.
"""

from typing import Any


class DomainError(Exception):
    code = "domain_error"
    status = 422
    default_message = "The operation was refused."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 400
    default_message = "The request is not valid."


class PermissionDenied(DomainError):
    code = "permission_denied"
    status = 403
    default_message = "You are not allowed to do this."


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    status = 409
    default_message = "This idempotency key was already used for a different request."


class NotFoundInScope(DomainError):
    """A referenced object does not exist, or not for this caller (which looks the same)."""

    code = "not_found"
    status = 404
    default_message = "Not found."
