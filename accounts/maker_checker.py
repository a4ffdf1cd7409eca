"""Maker-checker for credit limits: a large raise waits for a second person.

Raising an account's credit limit to a value strictly above
``BILLING_APPROVAL_CREDIT_LIMIT_ABOVE`` (in the account's currency) is filed as
an ``accounts.credit_limit`` request instead of being made; lowering a limit,
raising it up to the threshold (equal included) and every other change of
limits go through at once. The request carries the whole change of limits and
label asked for together (``changes``) and the values it replaces
(``previous``); approving applies it with ``account_update`` unless those
values changed meanwhile (``changed_since_requested``). An account is not
created with a credit limit above the threshold: it is created with a lower
one and then raised.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings

from accounts.models import Account
from accounts.services import LIMIT_FIELDS, account_update, account_update_check
from approvals import registry
from approvals.exceptions import ChangedSinceRequested
from approvals.models import ApprovalRequest
from approvals.services import approval_request, as_stored
from core.caller import Caller

CREDIT_LIMIT = "accounts.credit_limit"
DECIMAL_FIELDS = {
    "credit_limit",
    "write_off_limit_transaction",
    "write_off_limit_day",
    "write_off_limit_month",
}


def credit_limit_threshold() -> Decimal:
    return settings.BILLING_APPROVAL_CREDIT_LIMIT_ABOVE


def credit_limit_needs_approval(*, current: Decimal, new: Decimal | None) -> bool:
    """A raise to strictly above the threshold; lowering never does."""
    return new is not None and new > current and new > credit_limit_threshold()


def account_change_needs_approval(account: Account, changes: dict[str, Any]) -> bool:
    """Whether these ``account_update`` changes raise the credit limit past the threshold
    (compared with the limit stored now)."""
    if "credit_limit" not in changes:
        return False
    current = Account.objects.values_list("credit_limit", flat=True).get(pk=account.pk)
    return credit_limit_needs_approval(current=current, new=changes["credit_limit"])


def credit_limit_refusal_at_creation() -> str:
    return (
        f"A credit limit above {credit_limit_threshold()} needs a second person's approval: "
        "open the account with a lower limit, then raise it."
    )


def account_update_request(
    *, account: Account, changes: dict[str, Any], caller: Caller
) -> ApprovalRequest:
    """File a change of limits (and label) that raises the credit limit past the threshold.

    The change is checked now as ``account_update`` would check it (a
    sub-account has no credit terms, ...), and refused at once if it is invalid.
    """
    account_update_check(account=account, **changes)
    current = Account.objects.get(pk=account.pk)
    previous = {name: getattr(current, name) for name in changes}
    old, new = current.credit_limit, changes["credit_limit"]
    others = sorted(set(changes) - {"credit_limit"})
    return approval_request(
        kind=CREDIT_LIMIT,
        payload={
            "account": current.pk,
            "changes": as_stored(changes),
            "previous": as_stored(previous),
        },
        summary=(
            f"Credit limit of account {current.number}: {old} -> {new} {current.currency}"
            + (f" (with {', '.join(others)})" if others else "")
        ),
        caller=caller,
        target=current,
        amount=new,
        currency=current.currency,
    )


def _from_json(changes: dict[str, Any]) -> dict[str, Any]:
    """Payload values back to what ``account_update`` takes."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in LIMIT_FIELDS | {"name"}:
            raise TypeError(f"Unknown account field in a request: {name!r}")
        if value is not None and name in DECIMAL_FIELDS:
            value = Decimal(value)
        elif value is not None and name == "credit_expires_at":
            value = date.fromisoformat(value)
        out[name] = value
    return out


def execute_account_update(request: ApprovalRequest, checker: Caller) -> Account:
    payload = request.payload
    locked = Account.objects.select_for_update().get(pk=payload["account"])
    previous = payload["previous"]
    now = as_stored({name: getattr(locked, name) for name in previous})
    if now != previous:
        raise ChangedSinceRequested(account=locked.pk, requested_over=previous, now=now)
    return account_update(account=locked, **_from_json(payload["changes"]))


def register_kinds() -> None:
    registry.register(CREDIT_LIMIT, execute_account_update, label="Credit limit raise")
