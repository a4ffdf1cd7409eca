"""The base of every domain error: a stable ``code``, a message, details and a status.

Apps define their own subclasses (``accounts.exceptions``, ``ledger.exceptions``);
the API exception handler, the UI and imports all read these three fields.
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
