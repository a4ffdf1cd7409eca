"""Small helpers shared by the API tests."""

import json
from typing import Any

from rest_framework.test import APIClient

from accounts.models import Account, Client
from brands.models import Service
from invoicing.models import Invoice, InvoiceRun, MeterReading, Subscription, Tariff, UsageRecord
from ledger.models import Entry, Hold, Transaction


def post(api: APIClient, path: str, body: Any = None, key: str | None = None, **extra: Any):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(path, body if body is not None else {}, format="json", **headers, **extra)


def post_raw(api: APIClient, path: str, raw: str, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(path, raw, content_type="application/json", **headers)


def error_of(response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    return response.status_code, body["code"]


def dumps(value: Any) -> str:
    return json.dumps(value)


def ledger_state() -> dict:
    """Everything a refused request must leave as it was."""
    clients = Client.objects.order_by("pk").values()
    accounts = Account.objects.filter(kind=Account.Kind.CLIENT).order_by("pk")
    return {
        "transactions": Transaction.objects.count(),
        "entries": Entry.objects.count(),
        "holds": list(Hold.objects.order_by("pk").values_list("pk", "status", "captured_amount")),
        "accounts": [
            {k: v for k, v in row.items() if k != "updated_at"} for row in accounts.values()
        ],
        "links": sorted(Account.brands.through.objects.values_list("account_id", "brand_id")),
        "clients": [{k: v for k, v in row.items() if k != "updated_at"} for row in clients],
        "billing": [
            list(model.objects.order_by("pk").values())
            for model in (Service, Tariff, Subscription, InvoiceRun, Invoice)
        ],
        "usage": (UsageRecord.objects.count(), MeterReading.objects.count()),
    }
