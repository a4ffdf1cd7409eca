"""Payment intake over the API: agents, registries and the suspense queue, for staff.

These endpoints are the operator's back office: staff sessions use them with
their Django permissions (the ones the admin checks); no API key may write
(``STAFF_ONLY``), and a key with ``read`` sees none of it (empty lists, 404).
Writes call ``payments.services``; money moves through the ledger inside them.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from access.idempotency import money_post
from access.services import api_response_replay
from core.api.permissions import STAFF_ONLY, reads
from core.api.schema import IDEMPOTENCY_KEY, error
from core.api.views import NotFoundInScope, ScopedViewMixin, ScopedViewSet
from payments import services
from payments.api.serializers import (
    AgentDaysSerializer,
    PaymentAgentCreateSerializer,
    PaymentAgentSerializer,
    ReconciliationQuerySerializer,
    RegistryReconciliationSerializer,
    RegistrySerializer,
    RegistryUploadSerializer,
    SuspenseAssignSerializer,
    SuspenseItemSerializer,
    SuspenseReturnSerializer,
    SuspenseTotalsSerializer,
)
from payments.exceptions import RegistryAlreadyApplied
from payments.filtersets import PaymentAgentFilterSet, RegistryFilterSet, SuspenseItemFilterSet
from payments.models import PaymentAgent, Registry, RegistryLayout, SuspenseItem
from payments.reconciliation import agent_day_reconciliation, registry_reconciliation
from payments.selectors import (
    payment_agents_in_scope,
    registries_in_scope,
    suspense_in_scope,
    suspense_queue_totals,
)

REGISTRY_ERRORS = {
    404: error("`not_found`: no agent with this code."),
    409: error(
        "`registry_already_applied`: the registry was applied before; `idempotency_conflict`:"
        " the `Idempotency-Key` was already used for a different request."
    ),
    422: error(
        "`registry_refused`: the file's control totals do not match, its encoding is wrong, it "
        "cannot be parsed, or (applying) it has row errors; `details.reason` says which "
        "(`control_total_mismatch`, `control_count_mismatch`, `control_commission_mismatch`, "
        "`wrong_encoding`, `control_line_missing`, `control_line_malformed`, `empty_file`, "
        "`unparseable`, `row_errors`, `too_large`). Nothing of the file is posted."
    ),
}
SUSPENSE_ERRORS = {
    404: error("`not_found`: no such suspense item or account."),
    409: error("`suspense_not_open`: already assigned or returned; `idempotency_conflict`."),
    422: error("`account_closed`, `currency_mismatch`: the account cannot receive it."),
}


def _staff(perm: str) -> tuple[str, str]:
    return (STAFF_ONLY, perm)


class PaymentAgentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    """Payment agents (banks, the post office, terminal networks) and their registry format."""

    queryset = PaymentAgent.objects.none()
    serializer_class = PaymentAgentSerializer
    filterset_class = PaymentAgentFilterSet
    ordering_fields = ["id", "code"]
    ordering = ["id"]
    required = {
        **reads("payments.view_paymentagent"),
        "create": _staff("payments.add_paymentagent"),
    }

    def get_queryset(self):
        return payment_agents_in_scope(self.scope)

    @extend_schema(request=PaymentAgentCreateSerializer, responses={201: PaymentAgentSerializer})
    def create(self, request: Any) -> Response:
        """A new agent: `format` is `sber-txt`, `csv-total`, or `custom` with a `layout` id
        (a layout staff described in the admin)."""
        serializer = PaymentAgentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        layout_id = data.pop("layout")
        layout = None
        if layout_id is not None:
            layout = RegistryLayout.objects.filter(pk=layout_id).first()
            if layout is None:
                raise NotFoundInScope("layout: not found.", layout=["Not found."])
        agent = services.payment_agent_create(layout=layout, **data)
        return Response(PaymentAgentSerializer(agent).data, status=status.HTTP_201_CREATED)


class RegistryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    """Agents' registry files: previewed, then applied whole."""

    queryset = Registry.objects.none()
    serializer_class = RegistrySerializer
    filterset_class = RegistryFilterSet
    parser_classes = [MultiPartParser, FormParser]
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    required = {
        **reads("payments.view_registry", "list", "retrieve", "reconciliation"),
        "create": _staff("payments.apply_registry"),
        "apply": _staff("payments.apply_registry"),
    }

    def get_queryset(self):
        return registries_in_scope(self.scope)

    @extend_schema(
        request={"multipart/form-data": RegistryUploadSerializer},
        responses={201: RegistrySerializer, **REGISTRY_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    def create(self, request: Any) -> Response:
        """Import a registry file (multipart: `agent` code, `file`, `dry_run`).

        Each line posts a payment to the account with that number; an unknown or
        closed account, or a number whose check digit fails, goes to suspense; a
        payment id the agent already sent counts in `duplicates` and posts nothing.
        With `dry_run=true` the file is only previewed (status `previewed`), with its
        row errors; `POST /registries/{id}/apply/` applies it later. With an
        `Idempotency-Key`, the same request again (agent, file name, file content,
        `dry_run`) replays the first response (`Idempotent-Replayed: true`) and posts
        nothing; another request with the same key is `409 idempotency_conflict`.
        """
        serializer = RegistryUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        agent = payment_agents_in_scope(self.scope).filter(code=data["agent"]).first()
        if agent is None:
            raise NotFoundInScope("agent: not found.", agent=["Not found."])
        upload = data["file"]
        content = upload.read()
        return money_post(
            request,
            post=lambda key: services.registry_import(
                agent=agent,
                file_name=upload.name or "registry",
                content=content,
                dry_run=data["dry_run"],
                caller=self.scope.caller,
                idempotency_key=key,
            ),
            serialize=lambda registry: RegistrySerializer(registry).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=None,
        responses={200: RegistrySerializer, **REGISTRY_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], filterset_class=None, parser_classes=[])
    def apply(self, request: Any, pk: Any = None) -> Response:
        """Apply a previewed registry whole (409 once applied; 422 while it has row errors).

        With an `Idempotency-Key`, the same request again (the same registry) replays the
        first response (`Idempotent-Replayed: true`) and posts nothing, also when it
        comes while the first one is being applied; the key used for another request
        is `409 idempotency_conflict`. A refused apply stores no key.
        """
        registry_id = self.get_object().pk
        caller = self.scope.caller

        def answered(key: str | None) -> Registry | None:
            """A stand-in marked ``replayed`` when the key already has a response (the
            stored one is sent, or a conflict if it answered another request)."""
            if key is None or api_response_replay(caller=caller.ref, key=key) is None:
                return None
            replayed = Registry(pk=registry_id)
            replayed.replayed = True
            return replayed

        def apply(key: str | None) -> Registry:
            replay = answered(key)
            if replay is not None:
                return replay
            try:
                return services.registry_apply(registry=registry_id, caller=caller)
            except RegistryAlreadyApplied:
                # A concurrent twin held the registry's lock and has committed: its response.
                replay = answered(key)
                if replay is None:
                    raise
                return replay

        return money_post(
            request,
            post=apply,
            serialize=lambda registry: RegistrySerializer(registry).data,
            status=status.HTTP_200_OK,
        )

    @extend_schema(responses={200: RegistryReconciliationSerializer})
    @action(detail=True, methods=["get"], filterset_class=None)
    def reconciliation(self, request: Any, pk: Any = None) -> Response:
        """What the file says against what was posted, sent to suspense and found duplicate,
        the commission, and every difference."""
        rec = registry_reconciliation(self.get_object())
        return Response(RegistryReconciliationSerializer(rec).data)


class ReconciliationView(ScopedViewMixin, APIView):
    """Reconciliation per agent and business day: the registries each applied that day."""

    required = {"get": ("read", "payments.view_registry")}

    @extend_schema(
        parameters=[ReconciliationQuerySerializer],
        responses={200: AgentDaysSerializer, 404: error("`not_found`: no agent with this code.")},
    )
    def get(self, request: Any) -> Response:
        """`?date=YYYY-MM-DD` (default: today) and optionally `agent=CODE`: one result per
        agent that applied registries that day (the agent asked for is always shown)."""
        query = ReconciliationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        day = query.validated_data.get("date") or timezone.localdate()
        agents = payment_agents_in_scope(self.scope).order_by("code")
        code = query.validated_data.get("agent")
        if code:
            agents = agents.filter(code=code)
            if not agents.exists():
                raise NotFoundInScope("agent: not found.", agent=["Not found."])
        results = [agent_day_reconciliation(agent, day) for agent in agents]
        if not code:
            results = [r for r in results if r["registries"]]
        return Response(AgentDaysSerializer({"date": day, "results": results}).data)


class SuspenseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Payments that could not be posted to an account: the queue staff resolve, oldest
    first (`?status=open`)."""

    queryset = SuspenseItem.objects.none()
    serializer_class = SuspenseItemSerializer
    filterset_class = SuspenseItemFilterSet
    ordering_fields = ["id", "received_at", "amount"]
    ordering = ["received_at", "id"]
    required = {
        **reads("payments.view_suspenseitem", "list", "retrieve", "totals"),
        "assign": _staff("payments.resolve_suspenseitem"),
        "return_": _staff("payments.resolve_suspenseitem"),
    }

    def get_queryset(self):
        return suspense_in_scope(self.scope)

    def _serialize(self, item: SuspenseItem) -> dict[str, Any]:
        return SuspenseItemSerializer(SuspenseItem.objects.get(pk=item.pk)).data

    @extend_schema(responses={200: SuspenseTotalsSerializer})
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def totals(self, request: Any) -> Response:
        """The open queue: count, amount, the oldest item and its age, by reason and currency."""
        return Response(SuspenseTotalsSerializer(suspense_queue_totals(self.scope)).data)

    @extend_schema(
        request=SuspenseAssignSerializer,
        responses={200: SuspenseItemSerializer, **SUSPENSE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def assign(self, request: Any, pk: Any = None) -> Response:
        """Move the money to a client account (a transfer from suspense; it pays the
        account's open invoices like any payment). Status becomes `assigned`."""
        serializer = SuspenseAssignSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = serializer.validated_data["account"]
        item = self.get_object()
        return money_post(
            request,
            post=lambda key: services.suspense_assign(
                item=item.pk, account=account, caller=self.scope.caller, idempotency_key=key
            ),
            serialize=self._serialize,
            status=200,
        )

    @extend_schema(
        request=SuspenseReturnSerializer,
        responses={200: SuspenseItemSerializer, **SUSPENSE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], url_path="return", filterset_class=None)
    def return_(self, request: Any, pk: Any = None) -> Response:
        """Return the money to the payer (a refund from suspense). Status becomes `returned`."""
        serializer = SuspenseReturnSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reason = serializer.validated_data["reason"]
        item = self.get_object()
        return money_post(
            request,
            post=lambda key: services.suspense_return(
                item=item.pk, reason=reason, caller=self.scope.caller, idempotency_key=key
            ),
            serialize=self._serialize,
            status=200,
        )
