"""HMAC signatures of gateway callbacks: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Pure Python (no Django): the sandbox gateway signs with it, the adapter verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Sandbox-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str | None, now: float | None = None) -> str | None:
    """None when ``header`` signs ``body`` with ``secret`` within the tolerance; else why not."""
    if not header:
        return "missing_signature"
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or not signature:
        return "malformed_signature"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return "stale_signature"
    expected = sign(secret, body, int(timestamp)).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, signature):
        return "invalid_signature"
    return None
