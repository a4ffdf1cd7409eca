"""Domain refusals as staff read them: the message in the user's language by its stable
code (the service's own English message when the code has no translation here)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from core.errors import DomainError

MESSAGES = {
    "insufficient_funds": _("Not enough funds: the available balance does not cover this."),
    "write_off_limit_exceeded": _(
        "A write-off limit (per transaction, day or month) would be exceeded."
    ),
    "credit_period_expired": _("The credit period is over: debits wait until the debt is paid."),
    "credit_limit_expired": _("The credit limit has expired: debits wait until the debt is paid."),
    "account_blocked": _("The account (or a payer above it) is blocked."),
    "account_closed": _("The account (or a payer above it) is closed."),
    "currency_mismatch": _("The accounts are in different currencies."),
    "hold_not_active": _("The hold is no longer active."),
    "already_reversed": _("This transaction has already been reversed."),
    "duplicate_payment": _("This payment was already posted."),
    "invalid_amount": _("The amount is not valid."),
    "invalid_status_transition": _("The status cannot change this way."),
    "self_approval": _("You cannot approve or reject your own request."),
    "approval_not_pending": _("The request has already been decided."),
    "approval_expired": _("The request has expired."),
    "changed_since_requested": _("What the request changes has changed since it was made."),
    "idempotency_conflict": _("This form was already submitted with other values; open it again."),
    "permission_denied": _("Your role does not allow this."),
    "period_closed": _("The billing period is closed."),
    "run_not_draft_ready": _("The run is not a finished draft."),
}


def refusal_message(error: DomainError) -> str:
    """What the form shows for a refusal: the translated message, else the service's."""
    known = MESSAGES.get(error.code)
    return str(known) if known is not None else error.message
