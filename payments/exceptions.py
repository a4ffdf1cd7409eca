"""Domain errors of payment intake, each with a stable ``code``.

``RegistryRefused`` refuses a whole registry file (nothing of it is posted); its
``details["reason"]`` says why with a stable reason code of its own:

==========================  =====================================================
reason                      what is wrong with the file
==========================  =====================================================
``wrong_encoding``          the bytes are not text in the agent's encoding
``empty_file``              no payment line at all
``control_line_missing``    the control line (footer or first line) is absent
``control_line_malformed``  the control line cannot be read
``control_count_mismatch``  the number of payment lines differs from the control line
``control_total_mismatch``  the sum of the amounts differs from the control line
``control_commission_mismatch``  the sum of the commissions differs from the control line
``row_errors``              some rows are broken (applying only: preview lists them)
``unparseable``             not a registry of this format at all
==========================  =====================================================
"""

from core.errors import DomainError, NotFoundInScope, PermissionDenied, ValidationFailed

__all__ = [
    "DomainError",
    "InvalidStatusTransition",
    "NotFoundInScope",
    "PermissionDenied",
    "RegistryAlreadyApplied",
    "RegistryRefused",
    "SuspenseNotOpen",
    "ValidationFailed",
]


class RegistryRefused(DomainError):
    code = "registry_refused"
    status = 422
    default_message = "The registry file was refused; nothing of it was posted."


class RegistryAlreadyApplied(DomainError):
    code = "registry_already_applied"
    status = 409
    default_message = "This registry was already applied."


class SuspenseNotOpen(DomainError):
    code = "suspense_not_open"
    status = 409
    default_message = "This suspense item was already assigned or returned."


class InvalidStatusTransition(DomainError):
    code = "invalid_status_transition"
    status = 409
    default_message = "This status change is not allowed."
