"""Maker-checker for the ledger's dangerous moves: manual adjustments and large refunds.

* An **adjustment** (any amount) made by staff is never posted at once: it is
  filed as a ``ledger.adjustment`` request.
* A **refund** strictly above ``BILLING_APPROVAL_REFUND_ABOVE`` (in the
  account's currency; an amount equal to it posts at once) is filed as a
  ``ledger.refund`` request, whoever asks: a staff user or a partner's key.

The rule applies where people and partners ask for these moves (the admin's
posting form, ``POST /refunds/``); the services themselves (``refund_post``,
``adjustment_post``) stay as they are for the system's own callers.

Filing validates what can be validated before the move (the amount, the
channel, the reason, the maker's permission), so a request that could never
be executed is refused at once. Approving (``approvals.services``) runs the
real service in the approving transaction, as the maker (the transaction's
``caller`` and ``created_by`` are the maker's, so a partner's refund stays its
own) with the request and the checker recorded in its ``metadata``
(``approval_request``, ``approved_by``); the funds and the account's status
are checked then, and a refusal marks the request failed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import Account
from approvals import registry
from approvals.models import ApprovalRequest
from approvals.services import approval_request
from core.caller import Caller
from ledger.exceptions import InvalidOperation
from ledger.models import Transaction
from ledger.services import (
    AdjustmentItem,
    RefundItem,
    adjustment_post,
    refund_post,
)
from ledger.services.money import pk_of

ADJUSTMENT = "ledger.adjustment"
REFUND = "ledger.refund"


def refund_needs_approval(amount: Decimal) -> bool:
    """Whether a refund of ``amount`` waits for a second person (strictly above the threshold)."""
    return amount > settings.BILLING_APPROVAL_REFUND_ABOVE


def _client_account(account: Account | int) -> Account:
    found = (
        Account.objects.only("id", "number", "currency", "kind", "parent_id")
        .filter(pk=pk_of(account), kind=Account.Kind.CLIENT)
        .first()
    )
    if found is None:
        raise InvalidOperation("Only client accounts are adjusted or refunded.", account=account)
    return found


def adjustment_request(
    *,
    account: Account | int,
    amount: Any,
    reason: str,
    caller: Caller,
    idempotency_key: str | None = None,
) -> ApprovalRequest:
    """File a manual adjustment (``amount`` signed, + credits the client) for approval.

    Refused at once, as ``adjustment_post`` would refuse it, without the
    adjustment permission, without a reason, or with a bad amount.
    """
    item = AdjustmentItem(account_id=pk_of(account), amount=amount, reason=reason)
    item.prepare(caller, timezone.now())
    target = _client_account(account)
    signed = item.magnitude * item.sign
    direction = "credit" if item.sign > 0 else "debit"
    return approval_request(
        kind=ADJUSTMENT,
        payload={"account": target.pk, "amount": str(signed), "reason": item.reason.strip()},
        summary=(
            f"Adjustment ({direction}) of {item.magnitude} {target.currency} on account "
            f"{target.number}: {item.reason.strip()}"
        ),
        caller=caller,
        target=target,
        amount=item.magnitude,
        currency=target.currency,
        idempotency_key=idempotency_key,
    )


def refund_request(
    *,
    account: Account | int,
    amount: Any,
    channel: str,
    memo: str = "",
    currency: str | None = None,
    caller: Caller,
    idempotency_key: str | None = None,
) -> ApprovalRequest:
    """File a refund for approval (callers file only those ``refund_needs_approval`` says).

    The amount and channel are checked at once, as ``refund_post`` checks them;
    so is the rule that refunds are made from a payer account.
    """
    item = RefundItem(
        account_id=pk_of(account), amount=amount, channel=channel, memo=memo, currency=currency
    )
    item.prepare(caller, timezone.now())
    target = _client_account(account)
    if target.parent_id is not None:
        raise InvalidOperation(
            "Refunds are made from the payer account, not a sub-account.", account=target.number
        )
    return approval_request(
        kind=REFUND,
        payload={
            "account": target.pk,
            "amount": str(item.amount),
            "channel": channel,
            "memo": memo,
        },
        summary=f"Refund of {item.amount} {target.currency} from account {target.number}"
        + (f": {memo}" if memo else ""),
        caller=caller,
        target=target,
        amount=item.amount,
        currency=target.currency,
        idempotency_key=idempotency_key,
    )


def _as_maker(request: ApprovalRequest, checker: Caller) -> Caller:
    """The maker posts it (their permission, their scope), from the checker's HTTP request."""
    return Caller(ref=request.maker_ref, user=request.maker, request_id=checker.request_id)


def _approval_metadata(request: ApprovalRequest, checker: Caller) -> dict[str, Any]:
    return {"approval_request": request.pk, "approved_by": checker.ref}


def execute_adjustment(request: ApprovalRequest, checker: Caller) -> Transaction:
    payload = request.payload
    return adjustment_post(
        account=payload["account"],
        amount=Decimal(payload["amount"]),
        reason=payload["reason"],
        caller=_as_maker(request, checker),
        metadata=_approval_metadata(request, checker),
    )


def execute_refund(request: ApprovalRequest, checker: Caller) -> Transaction:
    payload = request.payload
    return refund_post(
        account=payload["account"],
        amount=Decimal(payload["amount"]),
        channel=payload["channel"],
        memo=payload["memo"],
        currency=request.currency or None,
        caller=_as_maker(request, checker),
        metadata=_approval_metadata(request, checker),
    )


def register_kinds() -> None:
    registry.register(ADJUSTMENT, execute_adjustment, label="Adjustment")
    registry.register(REFUND, execute_refund, label="Refund")
