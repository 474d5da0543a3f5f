"""Query filters of the management API (django-filter). Invalid values answer 400 naming the field."""

from __future__ import annotations

from datetime import datetime

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from providers_app.models import Provider, RoutingRule
from responses_app.gateway import keys
from responses_app.models import ClientKey, Response, UsageRecord
from responses_app.states import ResponseStatus


def _epoch(value: datetime) -> float:
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_current_timezone())
    return value.timestamp()


class TimeRangeFilterSet(django_filters.FilterSet):
    """``since`` / ``until`` (ISO 8601 date or time, UTC when no offset) on epoch ``created_at``."""

    since = django_filters.IsoDateTimeFilter(
        method="filter_since",
        label="Created at or after (ISO 8601, e.g. 2026-12-01 or 2026-12-01T08:00:00Z).",
    )
    until = django_filters.IsoDateTimeFilter(method="filter_until", label="Created before (ISO 8601).")

    def filter_since(self, queryset: QuerySet, name: str, value: datetime) -> QuerySet:
        return queryset.filter(created_at__gte=_epoch(value))

    def filter_until(self, queryset: QuerySet, name: str, value: datetime) -> QuerySet:
        return queryset.filter(created_at__lt=_epoch(value))


class KeyNameFilterMixin(django_filters.FilterSet):
    key = django_filters.CharFilter(method="filter_key", label="Client key name (every owner of that name).")

    def filter_key(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(owner__in=keys.owners_named(value))


class UsageFilter(TimeRangeFilterSet):
    key = django_filters.CharFilter(field_name="key_name", label="Client key name.")

    class Meta:
        model = UsageRecord
        fields = ["key", "owner", "model", "provider", "status"]


class ResponseFilter(TimeRangeFilterSet, KeyNameFilterMixin):
    status = django_filters.MultipleChoiceFilter(choices=ResponseStatus.choices)

    class Meta:
        model = Response
        fields = ["status", "model", "provider", "owner", "key", "background"]


class ClientKeyFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", label="Not revoked.")

    class Meta:
        model = ClientKey
        fields = ["name", "prefix", "active"]


class ProviderFilter(django_filters.FilterSet):
    class Meta:
        model = Provider
        fields = ["name", "adapter", "enabled"]


class RoutingRuleFilter(django_filters.FilterSet):
    provider = django_filters.CharFilter(method="filter_provider", label="Provider name.")

    class Meta:
        model = RoutingRule
        fields = ["pattern", "provider", "enabled"]

    def filter_provider(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        from django.db.models import Q

        return queryset.filter(Q(provider__name=value) | Q(provider_name=value))
