"""The gateway's callback endpoint (not part of the partner API: the gateway calls it).

``POST /payments/gateway/callback/`` with the gateway's signed JSON. The
signature is the authentication: no session, no API key, no CSRF token. Every
callback is logged (``GatewayCallback``); a forged or unreadable one answers
``400`` with its reason and changes nothing; a genuine one answers ``200``
whether it settled the intent or found it settled already (so the gateway stops
retrying it).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.models import GatewayCallback
from payments.services.gateway import gateway_callback_receive

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
