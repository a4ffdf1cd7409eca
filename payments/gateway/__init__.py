"""Payment gateway adapters: the interface (``base``), the sandbox adapter (``sandbox``),
callback signatures (``signing``). ``adapter()`` is the configured one."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from payments.gateway.base import (
    CallbackEvent,
    GatewayAdapter,
    GatewayError,
    GatewayPayment,
    GatewayRefund,
)

__all__ = [
    "CallbackEvent",
    "GatewayAdapter",
    "GatewayError",
    "GatewayPayment",
    "GatewayRefund",
    "adapter",
]


def adapter() -> GatewayAdapter:
    return import_string(settings.BILLING_GATEWAY_ADAPTER)()
