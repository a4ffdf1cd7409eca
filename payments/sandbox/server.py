"""The sandbox payment gateway: a small HTTP server (standard library only, no Django).

It behaves like an online card gateway, in memory:

==========================================  =========================================
request                                     answer
==========================================  =========================================
``POST /api/payments``                      create a payment (idempotent on
  ``{order_id, amount, currency,            ``order_id``): ``201 {id, order_id, status
  callback_url, return_url}``               "pending", amount, currency, redirect_url}``
``GET /api/payments/<id>``                  its ``status`` (pending, succeeded, failed)
                                            and ``refunded_amount``
``POST /api/payments/<id>/complete``        pay (``{"outcome": "succeeded"}``) or fail
                                            it, as the payer would on the payment page
``POST /api/payments/<id>/refunds``         refund (idempotent on ``refund_id``):
  ``{refund_id, amount}``                   ``{refund_id, status "succeeded"|"failed"}``
``GET /api/payments/<id>/refunds/<rid>``    a refund's status (404: never received)
``GET /pay/<id>``                           the payer's page: pay or fail buttons
``POST /pay/<id>`` (form ``outcome``)       as ``complete``, then 303 to ``return_url``
``GET|POST /_control``                      read or set the switches (JSON)
==========================================  =========================================

``/api/`` calls need ``Authorization: Bearer <api key>`` (401 otherwise). When a
payment is paid or failed, the gateway POSTs a callback to its ``callback_url``:
``{"event": "payment.succeeded"|"payment.failed", "payment": {...}}`` signed with
``X-Sandbox-Signature: t=<unix seconds>,v1=<HMAC-SHA256 of "<t>.<body>">``.

Switches (``--flags`` at start, or ``POST /_control`` at any time):

* ``latency_ms``: every ``/api/`` call waits this long first;
* ``fail_next``: the next N ``/api/`` calls answer ``503`` and do nothing;
* ``hang_next`` / ``hang_seconds``: the next N ``/api/`` calls wait this long
  (past the caller's timeout) before they are carried out;
* ``lose_callbacks``: payments are settled but no callback is sent;
* ``fail_refunds_next``: the next N refunds are declined (``status "failed"``);
* ``auto_complete``: ``"succeeded"`` or ``"failed"`` settles each payment as
  soon as it is created (no payer page).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from payments.gateway.signing import SIGNATURE_HEADER, sign

SWITCHES = {
    "latency_ms": 0,
    "fail_next": 0,
    "hang_next": 0,
    "hang_seconds": 5.0,
    "lose_callbacks": False,
    "fail_refunds_next": 0,
    "auto_complete": None,
}


class Sandbox:
    """The gateway's state; every change under one lock."""

    def __init__(self, *, secret: str, api_key: str, **switches: Any) -> None:
        self.secret = secret
        self.api_key = api_key
        self.lock = threading.Lock()
        self.payments: dict[str, dict[str, Any]] = {}
        self.by_order: dict[str, str] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.callbacks: list[dict[str, Any]] = []  # what was sent (or lost), for inspection
        self.switches = {**SWITCHES, **{k: v for k, v in switches.items() if v is not None}}
        self.base_url = ""

    # ----- switches

    def take(self, name: str) -> bool:
        """Use one of a counted switch (``fail_next`` ...): True when it was armed."""
        with self.lock:
            if self.switches[name] > 0:
                self.switches[name] -= 1
                return True
        return False

    def set_switches(self, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - set(SWITCHES)
        if unknown:
            raise ValueError(f"unknown switches: {', '.join(sorted(unknown))}")
        with self.lock:
            self.switches.update(values)
            return dict(self.switches)

    # ----- payments

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        order_id = str(body.get("order_id") or "")
        try:
            amount = Decimal(str(body.get("amount")))
        except InvalidOperation:
            return 400, {"error": "invalid_amount"}
        if not order_id or amount <= 0 or not body.get("callback_url"):
            return 400, {"error": "order_id, a positive amount and callback_url are required"}
        with self.lock:
            existing = self.by_order.get(order_id)
            if existing is not None:
                return 200, self._view(self.payments[existing])
            pid = f"sbx_{uuid.uuid4().hex[:16]}"
            self.payments[pid] = {
                "id": pid,
                "order_id": order_id,
                "amount": amount,
                "currency": body.get("currency", "RUB"),
                "status": "pending",
                "refunded": Decimal("0"),
                "callback_url": body["callback_url"],
                "return_url": body.get("return_url", ""),
            }
            self.by_order[order_id] = pid
            view = self._view(self.payments[pid])
        auto = self.switches["auto_complete"]
        if auto:
            self.complete(pid, auto)
            view = self.view(pid)
        return 201, view

    def _view(self, payment: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": payment["id"],
            "order_id": payment["order_id"],
            "status": payment["status"],
            "amount": f"{payment['amount']:.2f}",
            "currency": payment["currency"],
            "refunded_amount": f"{payment['refunded']:.2f}",
            "redirect_url": f"{self.base_url}/pay/{payment['id']}",
        }

    def view(self, pid: str) -> dict[str, Any] | None:
        with self.lock:
            payment = self.payments.get(pid)
            return self._view(payment) if payment else None

    def complete(self, pid: str, outcome: str) -> tuple[int, dict[str, Any]]:
        if outcome not in ("succeeded", "failed"):
            return 400, {"error": "outcome is succeeded or failed"}
        with self.lock:
            payment = self.payments.get(pid)
            if payment is None:
                return 404, {"error": "not_found"}
            if payment["status"] != "pending":
                return 409, {"error": "already_" + payment["status"]}
            payment["status"] = outcome
            view = self._view(payment)
            url = payment["callback_url"]
        self.send_callback(url, {"event": f"payment.{outcome}", "payment": view})
        return 200, view

    def send_callback(self, url: str, event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        record = {"url": url, "event": event, "sent": False, "status": None}
        if not self.switches["lose_callbacks"]:
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret, body),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    record["status"] = response.status
            except urllib.error.HTTPError as exc:
                record["status"] = exc.code
            except OSError as exc:
                record["status"] = f"error: {exc}"
            record["sent"] = True
        with self.lock:
            self.callbacks.append(record)

    # ----- refunds

    def refund(self, pid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refund_id = str(body.get("refund_id") or "")
        try:
            amount = Decimal(str(body.get("amount")))
        except InvalidOperation:
            return 400, {"error": "invalid_amount"}
        if not refund_id or amount <= 0:
            return 400, {"error": "refund_id and a positive amount are required"}
        declined = self.take("fail_refunds_next")
        with self.lock:
            payment = self.payments.get(pid)
            if payment is None:
                return 404, {"error": "not_found"}
            existing = self.refunds.get(refund_id)
            if existing is not None:
                return 200, dict(existing)
            if payment["status"] != "succeeded":
                return 409, {"error": "payment_not_succeeded"}
            if amount > payment["amount"] - payment["refunded"]:
                return 422, {"error": "amount_exceeds_payment"}
            status = "failed" if declined else "succeeded"
            if status == "succeeded":
                payment["refunded"] += amount
            refund = {
                "refund_id": refund_id,
                "payment": pid,
                "amount": f"{amount:.2f}",
                "status": status,
            }
            self.refunds[refund_id] = refund
            return 201, dict(refund)

    def refund_view(self, pid: str, refund_id: str) -> dict[str, Any] | None:
        with self.lock:
            refund = self.refunds.get(refund_id)
            return dict(refund) if refund and refund["payment"] == pid else None


class Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up waiting (a hung call): what it asked for is done

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._body() or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _api_gate(self) -> bool:
        """Authentication and the switches of ``/api/`` calls; False when answered already."""
        if self.headers.get("Authorization") != f"Bearer {self.sandbox.api_key}":
            self._body()
            self._send(401, {"error": "unauthorized"})
            return False
        latency = self.sandbox.switches["latency_ms"]
        if latency:
            time.sleep(latency / 1000)
        if self.sandbox.take("fail_next"):
            self._body()
            self._send(503, {"error": "unavailable"})
            return False
        if self.sandbox.take("hang_next"):
            time.sleep(float(self.sandbox.switches["hang_seconds"]))
        return True

    def do_GET(self) -> None:
        parts = [p for p in urlparse(self.path).path.split("/") if p]
        if parts == ["_control"]:
            return self._send(200, self.sandbox.switches)
        if len(parts) == 2 and parts[0] == "pay":
            view = self.sandbox.view(parts[1])
            if view is None:
                return self._send(404, b"No such payment.", "text/plain")
            page = (
                f"<html><body><h1>Sandbox payment {view['id']}</h1>"
                f"<p>{view['amount']} {view['currency']}: {view['status']}</p>"
                f'<form method="post"><button name="outcome" value="succeeded">Pay</button>'
                f'<button name="outcome" value="failed">Fail</button></form></body></html>'
            )
            return self._send(200, page.encode(), "text/html; charset=utf-8")
        if parts[:2] != ["api", "payments"]:
            return self._send(404, {"error": "not_found"})
        if not self._api_gate():
            return None
        if len(parts) == 3:
            view = self.sandbox.view(parts[2])
            return self._send(200, view) if view else self._send(404, {"error": "not_found"})
        if len(parts) == 5 and parts[3] == "refunds":
            refund = self.sandbox.refund_view(parts[2], parts[4])
            return self._send(200, refund) if refund else self._send(404, {"error": "not_found"})
        return self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        parts = [p for p in urlparse(self.path).path.split("/") if p]
        if parts == ["_control"]:
            values = self._json()
            try:
                return self._send(200, self.sandbox.set_switches(values or {}))
            except ValueError as exc:
                return self._send(400, {"error": str(exc)})
        if len(parts) == 2 and parts[0] == "pay":
            outcome = parse_qs(self._body().decode()).get("outcome", [""])[0]
            status, view = self.sandbox.complete(parts[1], outcome)
            if status != 200:
                return self._send(status, view)
            payment = self.sandbox.payments[parts[1]]
            self.send_response(303)
            self.send_header("Location", payment["return_url"] or "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if parts[:2] != ["api", "payments"]:
            self._body()
            return self._send(404, {"error": "not_found"})
        if not self._api_gate():
            return None
        body = self._json()
        if body is None:
            return self._send(400, {"error": "a JSON object is expected"})
        if len(parts) == 2:
            return self._send(*self.sandbox.create(body))
        if len(parts) == 4 and parts[3] == "complete":
            return self._send(*self.sandbox.complete(parts[2], str(body.get("outcome"))))
        if len(parts) == 4 and parts[3] == "refunds":
            return self._send(*self.sandbox.refund(parts[2], body))
        return self._send(404, {"error": "not_found"})


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, verbose: bool = False) -> None:
        super().__init__(address, Handler)
        self.sandbox = sandbox
        self.verbose = verbose
        host, port = self.server_address[:2]
        sandbox.base_url = f"http://{host}:{port}"


def start_in_thread(
    *, host: str = "127.0.0.1", port: int = 0, secret: str, api_key: str, **switches: Any
) -> SandboxServer:
    """Start a sandbox on a free port (``port=0``) in a daemon thread; ``server.shutdown()``
    stops it. ``server.sandbox`` is its state (switches, payments, callbacks sent)."""
    server = SandboxServer((host, port), Sandbox(secret=secret, api_key=api_key, **switches))
    threading.Thread(target=server.serve_forever, name="sandbox-gateway", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m payments.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--secret", default="sandbox-secret", help="HMAC secret of callbacks")
    parser.add_argument("--api-key", default="sandbox-key", help="Bearer key of /api/ calls")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--fail-next", type=int, default=0)
    parser.add_argument("--hang-next", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=5.0)
    parser.add_argument("--lose-callbacks", action="store_true")
    parser.add_argument("--auto-complete", choices=["succeeded", "failed"], default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    sandbox = Sandbox(
        secret=args.secret,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        fail_next=args.fail_next,
        hang_next=args.hang_next,
        hang_seconds=args.hang_seconds,
        lose_callbacks=args.lose_callbacks,
        auto_complete=args.auto_complete,
    )
    server = SandboxServer((args.host, args.port), sandbox, verbose=args.verbose)
    print(f"Sandbox gateway on {sandbox.base_url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
