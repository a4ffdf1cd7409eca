"""What the payments app needs from an online payment gateway.

An adapter turns these calls into the gateway's own protocol. Every call may
raise ``GatewayError`` (unreachable, timed out, 5xx: worth retrying;
``retryable=False`` for a refusal that will not change). Creating a payment and
refunding are idempotent on the ids the app sends (``order_id``, ``refund_id``),
so a call retried after a timeout never creates or refunds twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class GatewayError(Exception):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class GatewayPayment:
    id: str
    status: str  # pending | succeeded | failed
    amount: Decimal
    redirect_url: str = ""
    order_id: str = ""


@dataclass(frozen=True)
class GatewayRefund:
    refund_id: str
    status: str  # succeeded | failed


@dataclass(frozen=True)
class CallbackEvent:
    payment_id: str
    order_id: str
    status: str
    amount: Decimal


class GatewayAdapter(Protocol):
    def create_payment(
        self,
        *,
        order_id: str,
        amount: Decimal,
        currency: str,
        return_url: str,
        callback_url: str,
    ) -> GatewayPayment: ...

    def payment_status(self, payment_id: str) -> GatewayPayment: ...

    def refund(self, *, payment_id: str, refund_id: str, amount: Decimal) -> GatewayRefund: ...

    def refund_status(self, *, payment_id: str, refund_id: str) -> GatewayRefund | None: ...

    def parse_callback(self, body: bytes, headers: dict[str, str]) -> CallbackEvent:
        """The event a callback carries; ``GatewayError(retryable=False)`` with the reason
        (``invalid_signature`` ...) when it is not authentic or not readable."""
        ...
