"""Shapes of the management API. Serializers validate and represent; writes happen in the views
through the services (``providers_app.services``, ``gateway.keys``, ``services.responses``).

Secrets are write-only everywhere: a provider's ``api_key`` is never represented (only whether
one is set and its last four characters, as in the admin), and a client key's token appears
once, in the answer to create or rotate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from providers_app import services as provider_services
from providers_app.models import Provider, RoutingRule
from responses_app.gateway import keys
from responses_app.models import ClientKey, Response

USAGE_GROUPS = {"key": ["key_name", "owner"], "model": ["model"], "provider": ["provider"], "day": ["day"]}


def _input_error(exc: provider_services.ProviderInputError) -> serializers.ValidationError:
    return serializers.ValidationError({exc.field or "non_field_errors": [exc.message]})


def _checked(check: Any, value: Any) -> Any:
    """``check(value)`` (a providers service check), its refusal as a field validation error."""
    try:
        return check(value)
    except provider_services.ProviderInputError as exc:
        raise serializers.ValidationError(exc.message) from None


@extend_schema_field(OpenApiTypes.DATETIME)
class EpochDateTimeField(serializers.ReadOnlyField):
    """Epoch seconds (as stored on responses and usage rows) shown as an ISO 8601 UTC time."""

    def to_representation(self, value: float | None) -> str | None:
        if value is None:
            return None
        return datetime.fromtimestamp(value, tz=UTC).isoformat()


# ---------------------------------------------------------------------------- providers


class ProviderSerializer(serializers.ModelSerializer):
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text="Write-only: stored encrypted, never returned. Omit or leave empty to keep the stored key.",
    )
    clear_api_key = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="Remove the stored key."
    )
    api_key_set = serializers.SerializerMethodField(help_text="Whether a key is stored encrypted.")
    headers = serializers.JSONField(
        required=False, help_text="Extra HTTP headers (a JSON object of strings)."
    )
    options = serializers.JSONField(required=False, help_text="Adapter options (a JSON object).")

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "adapter",
            "base_url",
            "api_key",
            "clear_api_key",
            "api_key_env",
            "api_key_set",
            "api_key_last4",
            "headers",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "max_retries",
            "options",
            "enabled",
            "updated_at",
        ]
        read_only_fields = ["api_key_last4", "updated_at"]

    def get_api_key_set(self, obj: Provider) -> bool:
        return bool(obj.api_key_encrypted)

    def validate_adapter(self, value: str) -> str:
        return _checked(provider_services.check_adapter, value)

    def validate_headers(self, value: Any) -> dict[str, str]:
        return _checked(provider_services.check_headers, value)

    def validate_api_key_env(self, value: str) -> str:
        return _checked(provider_services.check_key_variable, value)

    def validate_options(self, value: Any) -> dict[str, Any]:
        return _checked(provider_services.check_options, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str) -> Any:
            return attrs.get(name, getattr(self.instance, name, "") or "")

        try:
            provider_services.check_key_source(
                api_key=attrs.get("api_key") or "", api_key_env=current("api_key_env")
            )
            if self.instance is not None:
                provider_services.check_key_destination(
                    provider=self.instance,
                    adapter=current("adapter"),
                    base_url=current("base_url"),
                    new_key=bool(
                        attrs.get("api_key") or attrs.get("clear_api_key") or attrs.get("api_key_env")
                    ),
                )
        except provider_services.ProviderInputError as exc:
            raise _input_error(exc) from None
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Provider:
        return self._save(Provider(), validated_data)

    def update(self, instance: Provider, validated_data: dict[str, Any]) -> Provider:
        return self._save(instance, validated_data)

    def _save(self, provider: Provider, data: dict[str, Any]) -> Provider:
        api_key = data.pop("api_key", "") or ""
        clear = bool(data.pop("clear_api_key", False))
        for name, value in data.items():
            setattr(provider, name, value)
        return provider_services.provider_save(provider=provider, api_key=api_key, clear_api_key=clear)


# ---------------------------------------------------------------------------- routing rules


class RoutingRuleSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(
        source="target_name",
        max_length=100,
        help_text="The provider's name: a database provider, or one from the environment or config file.",
    )
    provider_source = serializers.SerializerMethodField(help_text='"database" or "outside the database".')
    fallbacks = serializers.JSONField(
        required=False,
        help_text='Tried in order when the provider fails before its first byte: [{"provider": "azure", "model": "gpt-4o"}].',
    )

    class Meta:
        model = RoutingRule
        fields = [
            "id",
            "pattern",
            "provider",
            "provider_source",
            "upstream_model",
            "fallbacks",
            "order",
            "enabled",
            "updated_at",
        ]
        read_only_fields = ["updated_at"]

    def get_provider_source(self, obj: RoutingRule) -> str:
        return "database" if obj.provider_id else "outside the database"

    def validate_fallbacks(self, value: Any) -> list[Any]:
        try:
            return provider_services.check_fallbacks(value)
        except provider_services.ProviderInputError as exc:
            raise serializers.ValidationError(exc.message) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        name = attrs.pop("target_name", None)
        if name is not None:
            name = name.strip()
            row = Provider.objects.filter(name=name).first()
            attrs["provider"], attrs["provider_name"] = (row, "") if row else (None, name)
            try:
                provider_services.check_rule_target(
                    provider=attrs["provider"], provider_name=attrs["provider_name"]
                )
            except provider_services.ProviderInputError as exc:
                raise serializers.ValidationError({"provider": [exc.message]}) from None
        return attrs

    def create(self, validated_data: dict[str, Any]) -> RoutingRule:
        return provider_services.rule_save(rule=RoutingRule(**validated_data))

    def update(self, instance: RoutingRule, validated_data: dict[str, Any]) -> RoutingRule:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return provider_services.rule_save(rule=instance)


class ResolveQuerySerializer(serializers.Serializer):
    model = serializers.CharField(max_length=200, help_text="The model name a client would request.")


class RouteSerializer(serializers.Serializer):
    """The route the live routing code picks for a model name."""

    provider = serializers.CharField()
    upstream_model = serializers.CharField()
    pattern = serializers.CharField()
    source = serializers.CharField(
        help_text='"database", "config file", "settings", "environment" or "default".'
    )
    fallbacks = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))


class ResolveSerializer(serializers.Serializer):
    model = serializers.CharField()
    route = RouteSerializer(allow_null=True, help_text="null: no route serves this model name.")


# ---------------------------------------------------------------------------- client keys


class ClientKeySerializer(serializers.ModelSerializer):
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200, allow_blank=False),
        required=False,
        help_text="Shell-style globs of model names this key may use (e.g. gpt-*); empty: any model.",
    )
    token_hint = serializers.SerializerMethodField(help_text="The key's visible start: ork_<prefix>_…")
    active = serializers.BooleanField(source="is_active", read_only=True)
    owner = serializers.CharField(read_only=True, help_text="The owner of the responses made with this key.")

    class Meta:
        model = ClientKey
        fields = [
            "id",
            "name",
            "prefix",
            "token_hint",
            "owner",
            "allowed_models",
            *keys.LIMIT_FIELDS,
            "active",
            "revoked_at",
            "last_used_at",
            "created_at",
        ]
        read_only_fields = ["prefix", "revoked_at", "last_used_at", "created_at"]

    def get_token_hint(self, obj: ClientKey) -> str:
        return f"{keys.TOKEN_PREFIX}{obj.prefix}_…"

    def validate_allowed_models(self, value: list[str]) -> list[str]:
        return [p.strip() for p in value if p.strip()]

    def create(self, validated_data: dict[str, Any]) -> ClientKey:
        row, token = keys.key_create(**validated_data)
        row._clear_token = token  # answered once by the view, never stored
        return row

    def update(self, instance: ClientKey, validated_data: dict[str, Any]) -> ClientKey:
        return keys.key_update(key=instance, **validated_data)


class NewClientKeySerializer(ClientKeySerializer):
    """A key as created or rotated: with its token, shown this once."""

    key = serializers.SerializerMethodField(help_text="The full token. Shown once: copy it now.")

    class Meta(ClientKeySerializer.Meta):
        fields = [*ClientKeySerializer.Meta.fields, "key"]

    def get_key(self, obj: ClientKey) -> str:
        return getattr(obj, "_clear_token", "")


# ---------------------------------------------------------------------------- usage


class UsageRowSerializer(serializers.Serializer):
    """Usage summed over one group (the fields of ``group_by``; the others are absent)."""

    day = serializers.DateField(required=False)
    key_name = serializers.CharField(required=False)
    owner = serializers.CharField(required=False)
    model = serializers.CharField(required=False)
    provider = serializers.CharField(required=False)
    responses = serializers.IntegerField()
    errors = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=18, decimal_places=8, help_text="US dollars.")


class UsageQuerySerializer(serializers.Serializer):
    group_by = serializers.CharField(
        required=False,
        default="key,model,provider,day",
        help_text="Comma-separated: key, model, provider, day.",
    )

    def validate_group_by(self, value: str) -> list[str]:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in USAGE_GROUPS]
        if unknown or not names:
            raise serializers.ValidationError(
                f"Group by one or more of {', '.join(USAGE_GROUPS)} (got {value!r})."
            )
        return [field for n in dict.fromkeys(names) for field in USAGE_GROUPS[n]]


# ---------------------------------------------------------------------------- responses


class ResponseSerializer(serializers.ModelSerializer):
    created_at = EpochDateTimeField()
    completed_at = EpochDateTimeField()
    key_name = serializers.SerializerMethodField(help_text="The client key's name (or the owner).")

    class Meta:
        model = Response
        fields = [
            "id",
            "status",
            "model",
            "provider",
            "upstream_model",
            "owner",
            "key_name",
            "background",
            "store",
            "stream",
            "previous_response",
            "created_at",
            "completed_at",
            "usage",
            "error",
            "iterations",
            "request_id",
        ]
        read_only_fields = fields

    def get_key_name(self, obj: Response) -> str:
        from responses_app.gateway.usage import key_name

        return key_name(obj.owner or "")


class ResponseDetailSerializer(ResponseSerializer):
    resource = serializers.SerializerMethodField(
        help_text="The response as GET /v1/responses/{id} returns it."
    )

    class Meta(ResponseSerializer.Meta):
        fields = [*ResponseSerializer.Meta.fields, "resource"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_resource(self, obj: Response) -> dict[str, Any]:
        from responses_app import selectors

        return selectors.response_resource(response=obj)
