"""The adapter of the sandbox gateway (``python -m payments.sandbox``), over HTTP."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from django.conf import settings

from payments.gateway.base import CallbackEvent, GatewayError, GatewayPayment, GatewayRefund
from payments.gateway.signing import SIGNATURE_HEADER, verify


class SandboxAdapter:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        secret: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.base_url = (base_url or settings.BILLING_GATEWAY_URL).rstrip("/")
        self.api_key = api_key or settings.BILLING_GATEWAY_API_KEY
        self.secret = secret or settings.BILLING_GATEWAY_SECRET
        self.timeout = timeout or settings.BILLING_GATEWAY_TIMEOUT

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        try:
            response = requests.request(
                method,
                f"{self.base_url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise GatewayError(f"timeout after {self.timeout}s") from None
        except requests.RequestException as exc:
            raise GatewayError(f"unreachable: {exc.__class__.__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise GatewayError(f"gateway answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise GatewayError(f"not JSON ({response.status_code})") from None
        return response.status_code, data

    @staticmethod
    def _payment(data: dict[str, Any]) -> GatewayPayment:
        return GatewayPayment(
            id=data["id"],
            status=data["status"],
            amount=Decimal(data["amount"]),
            redirect_url=data.get("redirect_url", ""),
            order_id=data.get("order_id", ""),
        )

    def create_payment(
        self, *, order_id: str, amount: Decimal, currency: str, return_url: str, callback_url: str
    ) -> GatewayPayment:
        status, data = self._call(
            "POST",
            "/api/payments",
            {
                "order_id": order_id,
                "amount": f"{amount:.2f}",
                "currency": currency,
                "return_url": return_url,
                "callback_url": callback_url,
            },
        )
        if status not in (200, 201):
            raise GatewayError(f"refused ({status}): {data.get('error')}", retryable=False)
        return self._payment(data)

    def payment_status(self, payment_id: str) -> GatewayPayment:
        status, data = self._call("GET", f"/api/payments/{payment_id}")
        if status != 200:
            raise GatewayError(f"status refused ({status}): {data.get('error')}", retryable=False)
        return self._payment(data)

    def refund(self, *, payment_id: str, refund_id: str, amount: Decimal) -> GatewayRefund:
        status, data = self._call(
            "POST",
            f"/api/payments/{payment_id}/refunds",
            {"refund_id": refund_id, "amount": f"{amount:.2f}"},
        )
        if status not in (200, 201):
            # A refusal (more than was paid, not paid): the refund is declined for good.
            return GatewayRefund(refund_id=refund_id, status="failed")
        return GatewayRefund(refund_id=data["refund_id"], status=data["status"])

    def refund_status(self, *, payment_id: str, refund_id: str) -> GatewayRefund | None:
        status, data = self._call("GET", f"/api/payments/{payment_id}/refunds/{refund_id}")
        if status == 404:
            return None
        return GatewayRefund(refund_id=data["refund_id"], status=data["status"])

    def parse_callback(self, body: bytes, headers: dict[str, str]) -> CallbackEvent:
        problem = verify(self.secret, body, headers.get(SIGNATURE_HEADER))
        if problem is not None:
            raise GatewayError(problem, retryable=False)
        try:
            payment = json.loads(body)["payment"]
            return CallbackEvent(
                payment_id=str(payment["id"]),
                order_id=str(payment["order_id"]),
                status=str(payment["status"]),
                amount=Decimal(str(payment["amount"])),
            )
        except (ValueError, KeyError, TypeError, InvalidOperation):
            raise GatewayError("malformed_callback", retryable=False) from None
