"""Domain errors of maker-checker requests (each with a stable ``code``)."""

from core.errors import DomainError, PermissionDenied

__all__ = [
    "ApprovalExpired",
    "ApprovalNotPending",
    "ApprovalRefused",
    "ChangedSinceRequested",
    "DomainError",
    "PermissionDenied",
    "SelfApproval",
    "UnknownApprovalKind",
]


class SelfApproval(DomainError):
    code = "self_approval"
    status = 403
    default_message = "Nobody approves or rejects their own request: ask another person."


class ApprovalNotPending(DomainError):
    code = "approval_not_pending"
    status = 409
    default_message = "This request has already been decided."


class ApprovalExpired(DomainError):
    code = "approval_expired"
    status = 409
    default_message = "This request has expired; make a new one."


class UnknownApprovalKind(DomainError):
    code = "validation_error"
    status = 400
    default_message = "Unknown kind of approval request."


class ApprovalRefused(DomainError):
    """The move was refused by the domain when approved: the request is marked ``failed``.

    Carries the refusal's own code and status (``insufficient_funds``, 422...),
    so callers see why; ``details`` name the request.
    """

    def __init__(self, refusal: DomainError, request_id: int) -> None:
        super().__init__(
            f"The request was approved but the move was refused: {refusal.message} "
            "The request is marked failed and nothing moved.",
            **refusal.details,
            approval_request=request_id,
            approval_status="failed",
        )
        self.code = refusal.code
        self.status = refusal.status


class ChangedSinceRequested(DomainError):
    """What a change request would replace is no longer what the maker (and the checker) saw."""

    code = "changed_since_requested"
    status = 409
    default_message = (
        "The values this request replaces have changed since it was made; make a new request."
    )
