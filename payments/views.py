"""The gateway's callback endpoint, and the staff UI of payment intake.

``POST /payments/gateway/callback/`` with the gateway's signed JSON. The
signature is the authentication: no session, no API key, no CSRF token. Every
callback is logged (``GatewayCallback``); a forged or unreadable one answers
``400`` with its reason and changes nothing; a genuine one answers ``200``
whether it settled the intent or found it settled already (so the gateway stops
retrying it).

The staff pages (agents, registries with their reconciliation, the registry
upload with its preview, the suspense queue) check the permissions the payments
API checks for the same move, and call the same services as the signed-in user.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.models import GatewayCallback
from payments.services.gateway import gateway_callback_receive
from payments.staff_views import (  # noqa: F401  (the staff pages, routed in payments.urls)
    agents,
    registries,
    registry,
    registry_upload,
    suspense,
    suspense_item,
)

MAX_BODY = 64 * 1024


@csrf_exempt
@require_POST
def gateway_callback(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_BODY:
        return JsonResponse(
            {"code": "too_large", "message": "Callback body too large."}, status=413
        )
    record = gateway_callback_receive(
        body=request.body,
        headers=dict(request.headers),
        remote_addr=request.META.get("REMOTE_ADDR", ""),
    )
    if not record.verified:
        return JsonResponse(
            {"code": record.error, "message": "Callback refused.", "callback": record.pk},
            status=400,
        )
    status = 404 if record.outcome == GatewayCallback.Outcome.UNKNOWN else 200
    return JsonResponse({"outcome": record.outcome, "callback": record.pk}, status=status)
