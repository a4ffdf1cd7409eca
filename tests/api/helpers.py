"""Small helpers shared by the API tests."""

import json
from typing import Any

from rest_framework.test import APIClient


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
