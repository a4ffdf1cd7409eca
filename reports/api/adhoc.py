"""The ad-hoc report builder over the API (staff sessions only): the whitelist, running a
definition (JSON, or the rows streamed as CSV / XLSX), saved and shared definitions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.fields import StrictCharField
from core.api.permissions import STAFF_ONLY
from core.api.schema import ERRORS
from core.api.views import ScopedViewMixin, ScopedViewSet, check_query_params
from core.errors import NotFoundInScope
from reports.adhoc import services
from reports.adhoc.compiler import InvalidDefinition, adhoc_report, parse
from reports.adhoc.datasets import AGGREGATES, DATASETS, OPERATORS, catalogue
from reports.api.serializers import TableReportSerializer
from reports.api.views import FORMAT, CsvRenderer, XlsxRenderer, _responses, table_data
from reports.exports import export_response
from reports.models import SavedReport

VIEW = (STAFF_ONLY, "reports.view_reports")


class MeasureSerializer(serializers.Serializer):
    agg = serializers.ChoiceField(choices=list(AGGREGATES))
    field = serializers.CharField(
        required=False, max_length=64, help_text="A measure field of the dataset."
    )


class FilterSerializer(serializers.Serializer):
    field = serializers.CharField(max_length=64)
    op = serializers.ChoiceField(choices=list(OPERATORS))
    value = serializers.JSONField(help_text="A string or number; a list for in / not_in.")


class DefinitionSerializer(serializers.Serializer):
    """An ad-hoc report definition (documented shape; checked by the whitelist compiler)."""

    name = StrictCharField(required=False, max_length=200)
    dataset = serializers.ChoiceField(choices=list(DATASETS))
    dimensions = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    measures = MeasureSerializer(many=True, required=False)
    filters = FilterSerializer(many=True, required=False)
    order_by = serializers.ListField(child=serializers.CharField(max_length=65), required=False)
    limit = serializers.IntegerField(required=False, min_value=1)


def _definition_errors(call: Any) -> Any:
    """``InvalidDefinition`` as 400 validation_error naming every part at fault."""
    try:
        return call()
    except InvalidDefinition as exc:
        raise serializers.ValidationError(exc.errors) from None


def _run(definition: Any, fmt: str) -> Any:
    return _definition_errors(lambda: _answer(definition, fmt))


def _answer(definition: Any, fmt: str) -> Any:
    if fmt in ("csv", "xlsx"):
        report = adhoc_report(definition, streamed=True)
        return export_response(report, fmt, "adhoc-report")
    return Response(table_data(adhoc_report(definition)))


def _format(request: Any) -> str:
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "csv", "xlsx"):
        raise serializers.ValidationError({"format": ["Use json, csv or xlsx."]})
    return fmt


class _Exports:
    renderer_classes = [*APIView.renderer_classes, CsvRenderer, XlsxRenderer]

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        if not force:  # answering an error: JSON whatever was asked
            _format(request)
        return super().perform_content_negotiation(request, force)


class AdhocDatasetsView(ScopedViewMixin, APIView):
    required = {"get": VIEW}

    @extend_schema(
        operation_id="reports_adhoc_datasets",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The whitelist.")},
    )
    def get(self, request: Any) -> Any:
        return Response(catalogue())


class AdhocRunView(_Exports, ScopedViewMixin, APIView):
    required = {"post": VIEW}

    @extend_schema(
        operation_id="reports_adhoc_run",
        parameters=[FORMAT],
        request=DefinitionSerializer,
        responses=_responses(TableReportSerializer),
    )
    def post(self, request: Any) -> Any:
        return _run(request.data, _format(request))


class SavedReportSerializer(serializers.ModelSerializer):
    owner = serializers.PrimaryKeyRelatedField(read_only=True)
    name = StrictCharField(max_length=200)
    definition = DefinitionSerializer()
    shared_with_users = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=get_user_model().objects.all()
    )
    shared_with_groups = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=Group.objects.all()
    )

    class Meta:
        model = SavedReport
        fields = [
            "id", "name", "owner", "definition", "shared_with_users", "shared_with_groups",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    def _a_list(self, name: str, value: Any) -> Any:
        if not isinstance(self.initial_data.get(name), list):
            raise serializers.ValidationError("A list of ids.")
        return value

    def validate_shared_with_users(self, value: Any) -> Any:
        return self._a_list("shared_with_users", value)

    def validate_shared_with_groups(self, value: Any) -> Any:
        return self._a_list("shared_with_groups", value)

    def validate_definition(self, value: Any) -> Any:
        """The whitelist compiler's check, reported under ``definition``."""
        raw = self.initial_data.get("definition") if isinstance(self.initial_data, dict) else None
        try:
            parse(raw)
        except InvalidDefinition as exc:
            raise serializers.ValidationError(
                [f"{part}: {messages[0]}" for part, messages in exc.errors.items()]
            ) from None
        return raw


class SavedReportViewSet(
    _Exports,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ScopedViewSet,
):
    """Saved definitions: the user's own and those shared with them; only the owner changes."""

    serializer_class = SavedReportSerializer
    http_method_names = ["get", "post", "patch", "delete", "head"]
    required = {
        "list": VIEW,
        "retrieve": VIEW,
        "run": VIEW,
        "definition": VIEW,
        "create": (STAFF_ONLY, "reports.add_savedreport"),
        "partial_update": (STAFF_ONLY, "reports.change_savedreport"),
        "destroy": (STAFF_ONLY, "reports.delete_savedreport"),
    }
    filter_backends: list = []

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        # Hostile query parameters are refused before anything else, even for a caller
        # the endpoint is closed to (the API's rule for every list).
        check_query_params(request)
        super().initial(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no user
            return SavedReport.objects.none()
        return services.saved_reports_visible_to(self.request.user).select_related("owner")

    def get_object(self) -> SavedReport:
        pk = str(self.kwargs["pk"])
        if len(pk) > 19 or not pk.isascii() or not pk.isdigit() or int(pk) >= 2**63:
            raise NotFoundInScope("saved report: not found.")
        return services.saved_report_get(user=self.request.user, report_id=int(pk))

    def create(self, request: Any) -> Any:
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = services.saved_report_create(
            owner=request.user,
            name=data.validated_data["name"],
            definition=data.validated_data["definition"],
            users=data.validated_data.get("shared_with_users", []),
            groups=data.validated_data.get("shared_with_groups", []),
        )
        return Response(self.get_serializer(report).data, status=201)

    def partial_update(self, request: Any, pk: int) -> Any:
        # The body is checked before the report is looked up: a bad body is 400 either way.
        data = self.get_serializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        report = self.get_object()
        report = services.saved_report_update(
            user=request.user,
            report=report,
            name=data.validated_data.get("name"),
            definition=data.validated_data.get("definition"),
            users=data.validated_data.get("shared_with_users"),
            groups=data.validated_data.get("shared_with_groups"),
        )
        return Response(self.get_serializer(report).data)

    @extend_schema(responses={204: None, 403: ERRORS[403], 404: ERRORS[404]})
    def destroy(self, request: Any, pk: int) -> Any:
        services.saved_report_delete(user=request.user, report=self.get_object())
        return Response(status=204)

    @extend_schema(
        parameters=[FORMAT],
        responses=_responses(TableReportSerializer, not_found=True),
    )
    @action(detail=True, methods=["get"])
    def run(self, request: Any, pk: int) -> Any:
        return _run(self.get_object().definition, _format(request))

    @extend_schema(
        responses={200: OpenApiResponse(DefinitionSerializer, description="The definition.")}
    )
    @action(detail=True, methods=["get"])
    def definition(self, request: Any, pk: int) -> Any:
        report = self.get_object()
        response = Response({"name": report.name, **report.definition})
        response["Content-Disposition"] = f'attachment; filename="report-{report.pk}.json"'
        return response
