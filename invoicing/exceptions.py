"""Domain errors of invoicing; each carries a stable ``code`` (see ``core.errors``)."""

from core.errors import DomainError


class InvoicingValidationError(DomainError):
    code = "validation_error"
    status = 400
    default_message = "The request is not valid."


class PeriodClosed(DomainError):
    code = "period_closed"
    status = 409
    default_message = "The billing period is closed; billed days cannot be re-priced."


class InvalidInvoiceTransition(DomainError):
    code = "invalid_status_transition"
    status = 409
    default_message = "The invoice cannot move to that status."


class RunNotApprovable(DomainError):
    code = "run_not_draft_ready"
    status = 409
    default_message = "Only a run whose drafts are ready can be approved."


class PeriodNotBilled(DomainError):
    code = "period_not_billed"
    status = 409
    default_message = "The account has no issued invoice for this period."


class TooManyRecords(DomainError):
    code = "too_many_records"
    status = 400
    default_message = "Too many records in one request."


class IngestConflict(DomainError):
    code = "ingest_conflict"
    status = 409
    default_message = "Parallel batches kept storing the same records; send the batch again."


class MalformedFile(DomainError):
    code = "malformed_file"
    status = 400
    default_message = "The file cannot be read."


class TariffOverlap(InvoicingValidationError):
    code = "tariff_overlap"
    default_message = "Another version of this tariff plan covers these days."


class SubscriptionOverlap(InvoicingValidationError):
    code = "subscription_overlap"
    default_message = "The account already takes this service on these days."


class ReadingBackwards(InvoicingValidationError):
    code = "reading_backwards"
    default_message = "A meter reading is below the previous one."
