"""Writes of maker-checker requests: file one, approve it (executing the move), reject it,
expire the ones nobody decided in time.

Every decision locks the request's row (``SELECT ... FOR UPDATE``) and checks
that it is still pending in the same database transaction, so of two people
approving at once exactly one executes the move; the other waits, then finds
it decided (``approval_not_pending``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from approvals import registry
from approvals.exceptions import (
    ApprovalExpired,
    ApprovalNotPending,
    ApprovalRefused,
    PermissionDenied,
    SelfApproval,
    UnknownApprovalKind,
)
from approvals.models import ApprovalRequest
from core.caller import Caller
from core.errors import DomainError, IdempotencyConflict, ValidationFailed

APPROVE_PERMISSION = "approvals.approve_request"
KEY_CONSTRAINT = "approvals_approvalrequest_unique_key_per_maker"
Status = ApprovalRequest.Status

# Allowed status moves: {from: {to, ...}}. Every decided state is final.
STATUS_TRANSITIONS: dict[str, set[str]] = {
    Status.PENDING: {Status.APPROVED, Status.REJECTED, Status.FAILED, Status.EXPIRED},
    Status.APPROVED: set(),
    Status.REJECTED: set(),
    Status.FAILED: set(),
    Status.EXPIRED: set(),
}


def approval_ttl() -> timedelta:
    return timedelta(hours=settings.BILLING_APPROVAL_TTL_HOURS)


def _content_type(obj: models.Model | None) -> tuple[ContentType | None, int | None]:
    if obj is None:
        return None, None
    return ContentType.objects.get_for_model(obj, for_concrete_model=True), obj.pk


@transaction.atomic
def approval_request(
    *,
    kind: str,
    payload: dict[str, Any],
    summary: str,
    caller: Caller,
    target: models.Model | None = None,
    amount: Decimal | None = None,
    currency: str = "",
    idempotency_key: str | None = None,
) -> ApprovalRequest:
    """File a request for a move that needs a second person; nothing moves yet.

    ``payload`` holds the validated arguments of the service call and must be
    JSON (amounts as strings): it is what the handler of ``kind`` receives when
    the request is approved. A request made by a partner's key or a user
    (``caller``) expires after ``BILLING_APPROVAL_TTL_HOURS``.

    With ``idempotency_key`` (unique per maker), filing the same request again
    returns the first one (``replayed`` is True); a different request with the
    same key is refused (``idempotency_conflict``). Concurrent duplicates meet
    on the unique index: the loser waits for the winner and returns its request.
    """
    if registry.kind(kind) is None:
        raise UnknownApprovalKind(f"Unknown kind of approval request: {kind!r}.", kind=kind)
    if caller.user_id is None and caller.partner_id is None:
        raise PermissionDenied("A request is made by a user or a partner, not by the system.")
    if idempotency_key is not None:
        existing = _replay(caller, idempotency_key, kind, payload)
        if existing is not None:
            return existing
    now = timezone.now()
    target_type, target_id = _content_type(target)
    request = ApprovalRequest(
        kind=kind,
        payload=payload,
        summary=summary[:500],
        amount=amount,
        currency=currency,
        target_type=target_type,
        target_id=target_id,
        maker=caller.user if caller.user_id is not None else None,
        maker_ref=caller.ref,
        maker_request_id=caller.request_id,
        idempotency_key=idempotency_key,
        created_at=now,
        expires_at=now + approval_ttl(),
    )
    try:
        with transaction.atomic():
            request.save()
    except IntegrityError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if idempotency_key is None or getattr(diag, "constraint_name", "") != KEY_CONSTRAINT:
            raise
        existing = _replay(caller, idempotency_key, kind, payload)
        if existing is None:
            raise
        return existing
    request.payload = as_stored(payload)  # as a later read would see it
    request.replayed = False
    return request


def _replay(caller: Caller, key: str, kind: str, payload: dict[str, Any]) -> ApprovalRequest | None:
    existing = ApprovalRequest.objects.filter(maker_ref=caller.ref, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.kind != kind or existing.payload != as_stored(payload):
        raise IdempotencyConflict(
            "This idempotency key was already used for a different request.",
            key=key,
            approval_request=existing.pk,
        )
    existing.replayed = True
    return existing


def as_stored(payload: dict[str, Any]) -> Any:
    """``payload`` as it reads back from the JSON column (decimals and dates as strings)."""
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


# --------------------------------------------------------------------------- decisions


def _checker_may_decide(request: ApprovalRequest, checker: Caller) -> None:
    user = checker.user
    if (
        user is None
        or not getattr(user, "is_staff", False)
        or not user.has_perm(APPROVE_PERMISSION)
    ):
        raise PermissionDenied(
            "Only staff with the permission to approve requests may approve or reject them.",
            approval_request=request.pk,
        )
    if checker.ref == request.maker_ref:
        raise SelfApproval(approval_request=request.pk)


def _lock_pending(request: ApprovalRequest | int, checker: Caller) -> ApprovalRequest:
    """The request, locked, after the checks every decision makes (none of which writes)."""
    pk = request.pk if isinstance(request, ApprovalRequest) else request
    locked = (
        ApprovalRequest.objects.select_for_update(of=("self",)).select_related("maker").get(pk=pk)
    )
    _checker_may_decide(locked, checker)
    if locked.status != Status.PENDING:
        raise ApprovalNotPending(
            f"This request is already {locked.get_status_display().lower()}.",
            approval_request=locked.pk,
            status=locked.status,
        )
    return locked


def _move(request: ApprovalRequest, status: str, now: datetime, **fields: Any) -> None:
    if status not in STATUS_TRANSITIONS[request.status]:
        raise ApprovalNotPending(approval_request=request.pk, status=request.status)
    request.status = status
    request.decided_at = now
    for name, value in fields.items():
        setattr(request, name, value)
    request.save(update_fields=["status", "decided_at", *fields])


def _expire_if_due(request: ApprovalRequest, now: datetime) -> bool:
    if request.expires_at > now:
        return False
    _move(request, Status.EXPIRED, now)
    return True


def approval_approve(*, request: ApprovalRequest | int, checker: Caller) -> ApprovalRequest:
    """Approve a pending request and execute its move, once, in this database transaction.

    The checker is a staff user with ``approvals.approve_request`` other than
    the maker (``self_approval``). Locks the request's row, so a concurrent
    approval waits and then finds it decided (``approval_not_pending``). The
    move runs through the handler of its kind in a savepoint: when the domain
    refuses it, the request is marked ``failed`` with the refusal's code,
    nothing moves, and ``ApprovalRefused`` is raised after the mark is
    committed. A request past ``expires_at`` is marked ``expired`` and
    ``approval_expired`` is raised. Call it outside any transaction (it opens a
    durable one, so that the ``failed`` and ``expired`` marks are kept).
    """
    with transaction.atomic(durable=True):
        locked = _lock_pending(request, checker)
        now = timezone.now()
        if _expire_if_due(locked, now):
            expired = True
        else:
            expired = False
            refusal = _execute(locked, checker, now)
    if expired:
        raise ApprovalExpired(approval_request=locked.pk, expires_at=locked.expires_at.isoformat())
    if refusal is not None:
        raise ApprovalRefused(refusal, locked.pk)
    return locked


def _execute(request: ApprovalRequest, checker: Caller, now: datetime) -> DomainError | None:
    kind = registry.kind(request.kind)
    refusal: DomainError | None = None
    if kind is None:
        refusal = UnknownApprovalKind(kind=request.kind)
    else:
        try:
            with transaction.atomic():
                result = kind.execute(request, checker)
        except DomainError as exc:
            refusal = exc
        except ValidationError as exc:
            refusal = ValidationFailed("; ".join(exc.messages))
    if refusal is not None:
        _move(
            request,
            Status.FAILED,
            now,
            checker=checker.user,
            checker_ref=checker.ref,
            error_code=refusal.code[:64],
            error_message=refusal.message[:500],
        )
        return refusal
    result_type, result_id = _content_type(result)
    _move(
        request,
        Status.APPROVED,
        now,
        checker=checker.user,
        checker_ref=checker.ref,
        result_type=result_type,
        result_id=result_id,
    )
    return None


def approval_reject(
    *, request: ApprovalRequest | int, checker: Caller, reason: str
) -> ApprovalRequest:
    """Reject a pending request with a reason; nothing moves.

    The same checks as approving (another staff user with the permission, still
    pending); an expired request is marked so and ``approval_expired`` raised.
    Locks the request's row.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Give a reason for the rejection.", field="reason")
    with transaction.atomic(durable=True):
        locked = _lock_pending(request, checker)
        now = timezone.now()
        expired = _expire_if_due(locked, now)
        if not expired:
            _move(
                locked,
                Status.REJECTED,
                now,
                checker=checker.user,
                checker_ref=checker.ref,
                reason=reason[:500],
            )
    if expired:
        raise ApprovalExpired(approval_request=locked.pk, expires_at=locked.expires_at.isoformat())
    return locked


def approvals_expire_due(*, now: datetime | None = None) -> int:
    """Mark every pending request past its ``expires_at`` as expired; return how many.

    One UPDATE: a request being approved at this moment holds its row lock, so
    the UPDATE waits for that decision and then skips the request (no longer
    pending).
    """
    now = now or timezone.now()
    return ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now).update(
        status=Status.EXPIRED, decided_at=now
    )
