"""Maker-checker requests over the API: staff list, read, approve and reject them;
a partner reads the requests its own keys made (and never decides one)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from approvals.api.serializers import ApprovalRequestSerializer, RejectSerializer
from approvals.filtersets import ApprovalRequestFilterSet
from approvals.models import ApprovalRequest
from approvals.selectors import approval_requests_in_scope
from approvals.services import approval_approve, approval_reject
from core.api.permissions import STAFF_ONLY, reads
from core.api.schema import error
from core.api.views import ScopedViewSet

DECISION_ERRORS = {
    403: error(
        "`permission_denied`: not a staff user with `approvals.approve_request` (never an API "
        "key); `self_approval`: the request is your own."
    ),
    409: error(
        "`approval_not_pending`: already approved, rejected, failed or expired; "
        "`approval_expired`: past `expires_at` (now marked expired); "
        "`changed_since_requested`: what the request replaces has changed since (approving "
        "marks it failed)."
    ),
    422: error(
        "Approving only: the move was refused when executed, with its reason "
        "(`insufficient_funds`, `account_closed`, ...); the request is marked failed and "
        "nothing moved."
    ),
}


class ApprovalRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Moves that wait for a second person: adjustments, large refunds, large credit limits,
    brands' bank details. Newest first; ``?status=pending`` is the checkers' queue."""

    queryset = ApprovalRequest.objects.none()  # for the schema; get_queryset() scopes
    serializer_class = ApprovalRequestSerializer
    filterset_class = ApprovalRequestFilterSet
    ordering_fields = ["id", "created_at", "expires_at"]
    ordering = ["-id"]
    required = {
        **reads("approvals.view_approvalrequest"),
        "approve": (STAFF_ONLY, "approvals.approve_request"),
        "reject": (STAFF_ONLY, "approvals.approve_request"),
    }

    def get_queryset(self):
        return approval_requests_in_scope(self.scope)

    def _out(self, request_obj: ApprovalRequest) -> Response:
        fresh = approval_requests_in_scope(self.scope).get(pk=request_obj.pk)
        return Response(ApprovalRequestSerializer(fresh).data)

    @extend_schema(request=None, responses={200: ApprovalRequestSerializer, **DECISION_ERRORS})
    @action(detail=True, methods=["post"], filterset_class=None)
    def approve(self, request: Any, pk: Any = None) -> Response:
        """Approve a pending request made by someone else: its move is executed now, once.

        ``403 self_approval`` for your own request; ``409 approval_not_pending``
        once decided, ``409 approval_expired`` past ``expires_at``. When the move
        is refused at this moment (``422 insufficient_funds``, ``account_closed``...)
        the request is marked ``failed`` with that code and nothing moves.
        """
        decided = approval_approve(request=self.get_object().pk, checker=self.scope.caller)
        return self._out(decided)

    @extend_schema(
        request=RejectSerializer, responses={200: ApprovalRequestSerializer, **DECISION_ERRORS}
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def reject(self, request: Any, pk: Any = None) -> Response:
        """Reject a pending request made by someone else, with a reason; nothing moves."""
        serializer = RejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decided = approval_reject(
            request=self.get_object().pk,
            checker=self.scope.caller,
            reason=serializer.validated_data["reason"],
        )
        return self._out(decided)
