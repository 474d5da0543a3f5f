"""Viewsets of the management API: thin, each write a call to the services the admin uses."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response as DRFResponse

from providers_app import services as provider_services
from providers_app.models import Provider, RoutingRule
from providers_app.registry import ConfigError, route_for_model
from responses_app.gateway import keys
from responses_app.manage import filters as manage_filters
from responses_app.manage import serializers as s
from responses_app.manage.permissions import StaffModelPermissions
from responses_app.models import ClientKey, Response, UsageRecord
from responses_app.services import flows

USAGE_SUMS = ["input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "cost"]
NO_STORE = {"Cache-Control": "no-store"}


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ManageViewSet(viewsets.GenericViewSet):
    """What every management endpoint shares: staff with model permissions, pages, filters, schema.

    Authentication is the site's (``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``): staff
    sessions and DRF tokens on this site, whatever the host site uses elsewhere.
    """

    permission_classes = [StaffModelPermissions]
    pagination_class = Pagination
    filter_backends = [DjangoFilterBackend, filters.SearchFilter, filters.OrderingFilter]
    schema = AutoSchema()
    #: ``{action: "change"}``: the model permission an extra action needs.
    action_permissions: dict[str, str] = {}


class CrudViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ManageViewSet,
):
    pass


# ---------------------------------------------------------------------------- providers


@extend_schema_view(
    create=extend_schema(summary="Create a provider (its api_key is write-only)"),
    destroy=extend_schema(summary="Delete a provider with its routing rules"),
)
class ProviderViewSet(CrudViewSet):
    """Providers kept in the database (environment and config-file providers are read-only)."""

    queryset = Provider.objects.all()
    serializer_class = s.ProviderSerializer
    filterset_class = manage_filters.ProviderFilter
    search_fields = ["name", "adapter", "base_url"]
    ordering_fields = ["name", "adapter", "updated_at"]

    def perform_destroy(self, instance: Provider) -> None:
        provider_services.provider_delete(provider=instance)


# ---------------------------------------------------------------------------- routing rules


class RoutingRuleViewSet(CrudViewSet):
    """Routing rules kept in the database; they come before the config file's and the defaults."""

    queryset = RoutingRule.objects.select_related("provider")
    serializer_class = s.RoutingRuleSerializer
    filterset_class = manage_filters.RoutingRuleFilter
    search_fields = ["pattern", "upstream_model", "provider__name", "provider_name"]
    ordering_fields = ["order", "pattern", "updated_at"]
    action_permissions = {"resolve": "view"}

    def perform_destroy(self, instance: RoutingRule) -> None:
        provider_services.rule_delete(rule=instance)

    @extend_schema(
        summary="Which route serves this model name?",
        parameters=[s.ResolveQuerySerializer],
        responses={200: s.ResolveSerializer},
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def resolve(self, request: Request) -> DRFResponse:
        """The live routing code's answer (database rules, config file, settings, defaults)."""
        query = s.ResolveQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        model = query.validated_data["model"]
        try:
            route = route_for_model(model)
        except ConfigError as exc:
            raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from None
        data = {"model": model, "route": None}
        if route is not None:
            data["route"] = {
                "provider": route.provider,
                "upstream_model": route.upstream_model,
                "pattern": route.pattern,
                "source": route.source,
                "fallbacks": [{"provider": p, "model": m} for p, m in route.fallbacks],
            }
        return DRFResponse(s.ResolveSerializer(data).data)


# ---------------------------------------------------------------------------- client keys


@extend_schema_view(
    create=extend_schema(
        summary="Create a client key (the answer holds its token, shown once)",
        responses={201: s.NewClientKeySerializer},
    ),
    rotate=extend_schema(
        summary="A new secret for the key (same prefix, owner and limits); the old token stops working",
        request=None,
        responses={200: s.NewClientKeySerializer},
    ),
    revoke=extend_schema(summary="Revoke the key (requests using it get 401)", request=None),
)
class ClientKeyViewSet(CrudViewSet):
    """Client API keys. A key's token is answered once, when it is created or rotated; afterwards
    only its start (ork_<prefix>_…) is shown."""

    queryset = ClientKey.objects.all()
    serializer_class = s.ClientKeySerializer
    filterset_class = manage_filters.ClientKeyFilter
    search_fields = ["name", "prefix"]
    ordering_fields = ["name", "created_at", "last_used_at"]
    action_permissions = {"rotate": "change", "revoke": "change"}

    def create(self, request: Request, *args: Any, **kwargs: Any) -> DRFResponse:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = serializer.save()
        return DRFResponse(
            s.NewClientKeySerializer(row).data, status=status.HTTP_201_CREATED, headers=NO_STORE
        )

    def perform_destroy(self, instance: ClientKey) -> None:
        keys.key_delete(key=instance)

    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str | None = None) -> DRFResponse:
        key = self.get_object()
        if not key.is_active:
            raise serializers.ValidationError(
                {"non_field_errors": ["This key is revoked; create a new key instead."]}
            )
        row, token = keys.key_rotate(key=key)
        row._clear_token = token
        return DRFResponse(s.NewClientKeySerializer(row).data, headers=NO_STORE)

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> DRFResponse:
        return DRFResponse(s.ClientKeySerializer(keys.key_revoke(key=self.get_object())).data)


# ---------------------------------------------------------------------------- usage


GROUP_PARAMETER = OpenApiParameter(
    "group_by",
    OpenApiTypes.STR,
    description="Comma-separated: key, model, provider, day (default: all four).",
)


class UsageViewSet(mixins.ListModelMixin, ManageViewSet):
    """Usage and cost summed by key, model, provider and day (group_by); usage/export/ answers CSV."""

    queryset = UsageRecord.objects.all()
    serializer_class = s.UsageRowSerializer
    filterset_class = manage_filters.UsageFilter
    filter_backends = [DjangoFilterBackend]

    def summed(self, request: Request) -> tuple[list[str], QuerySet]:
        query = s.UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        group = query.validated_data["group_by"]
        rows = (
            self.filter_queryset(self.get_queryset())
            .order_by()
            .values(*group)
            .annotate(
                responses=Count("id"),
                errors=Count("id", filter=Q(status="failed")),
                **{name: Sum(name) for name in USAGE_SUMS},
            )
            .order_by(*[("-" + g) if g == "day" else g for g in group])
        )
        return group, rows

    @extend_schema(summary="Usage and cost summed by group", parameters=[GROUP_PARAMETER])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> DRFResponse:
        _, rows = self.summed(request)
        page = self.paginate_queryset(rows)
        data = s.UsageRowSerializer([_zeroed(r) for r in page], many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        summary="The same sums as CSV (every row, no pages)",
        parameters=[GROUP_PARAMETER],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one row per group.")
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request: Request) -> HttpResponse:
        group, rows = self.summed(request)
        columns = [*group, "responses", "errors", *USAGE_SUMS]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in rows:
            row = _zeroed(row)
            writer.writerow([row[c].isoformat() if c == "day" else row[c] for c in columns])
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="openresponses-usage.csv"'
        return response


def _zeroed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, **{c: row[c] or 0 for c in USAGE_SUMS}}


# ---------------------------------------------------------------------------- responses


@extend_schema_view(
    cancel=extend_schema(
        summary="Cancel an unfinished response",
        request=None,
        responses={200: s.ResponseSerializer, 409: OpenApiResponse(description="Already finished.")},
    ),
    destroy=extend_schema(summary="Delete a response with its items and events"),
)
class ResponseViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, ManageViewSet
):
    """Stored responses of every owner, for operators: search, filter, cancel, delete."""

    queryset = Response.objects.all()
    serializer_class = s.ResponseSerializer
    filterset_class = manage_filters.ResponseFilter
    search_fields = ["=id", "search_text"]
    ordering_fields = ["created_at", "model", "status"]
    action_permissions = {"cancel": "change"}

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return s.ResponseDetailSerializer if self.action == "retrieve" else s.ResponseSerializer

    def perform_destroy(self, instance: Response) -> None:
        flows.delete_response(response=instance)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> DRFResponse:
        response = self.get_object()
        if response.is_finished:
            return DRFResponse(
                {"detail": f"Response {response.id} has already finished ({response.status})."},
                status=status.HTTP_409_CONFLICT,
            )
        # The cancel flow the admin and the Responses API use (state machine, then the loop told).
        return DRFResponse(s.ResponseSerializer(flows.cancel_response(response=response)).data)
