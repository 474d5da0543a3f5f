"""The operators' console for providers and routing rules.

Keys are write-only (only the last four characters of a key typed here are ever shown; of a key
from the environment, only whether it is set). A stored key is bound to the adapter and base URL
it was entered for: changing either needs the key again, so no one who may edit a provider can
send its key to a listener of their own. ``api_key_env`` may only name the variables the operator
allows (``OPENRESPONSES_PROVIDER_KEY_VARIABLES``), never the server's own secrets. Every save or delete
resets the registry so the next request routes with the new configuration. Providers and routes
from the environment and the config file are listed read-only with where they come from.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from providers_app import services
from providers_app.connection import ConnectionResult, check_connection, probe_model
from providers_app.models import Provider, RoutingRule
from providers_app.registry import (
    BUILTIN_ADAPTERS,
    ConfigError,
    all_routes,
    provider_config_from_row,
    provider_configs,
    provider_sources,
    registry,
    route_for_model,
)
from providers_app.secrets import SecretError, key_variable_allowed


def key_hint(key: str) -> str:
    """Whether a key from the environment or a file is set: never any of its characters."""
    return "set" if key else "not set"


def _registry_error(request: HttpRequest) -> str:
    """The registry's configuration error, if the config file is broken (shown, not raised)."""
    try:
        provider_configs()
    except ConfigError as exc:
        return str(exc)
    return ""


# ---------------------------------------------------------------------------- providers


class ProviderForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "size": 50}),
        help_text="Write-only: stored encrypted, never shown again (only its last four characters). Leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored key")

    class Meta:
        model = Provider
        fields = [
            "name",
            "adapter",
            "base_url",
            "api_key",
            "clear_api_key",
            "api_key_env",
            "headers",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "max_retries",
            "options",
            "enabled",
        ]
        widgets = {
            "adapter": forms.TextInput(attrs={"list": "or-adapters", "size": 50}),
            "base_url": forms.TextInput(attrs={"size": 60}),
        }
        help_texts = {
            "headers": "Extra HTTP headers sent with every upstream request, as a JSON object. Put keys in the API key field, not here.",
            "options": 'Adapter options as JSON, e.g. {"test_model": "gpt-4o-mini"} (the model \u201ctest connection\u201d asks).',
        }

    def clean_adapter(self) -> str:
        return _checked(services.check_adapter, self.cleaned_data.get("adapter") or "")

    def clean_headers(self) -> dict[str, str]:
        return _checked(services.check_headers, self.cleaned_data.get("headers"))

    def clean_options(self) -> dict[str, Any]:
        return _checked(services.check_options, self.cleaned_data.get("options"))

    def clean_api_key_env(self) -> str:
        return _checked(services.check_key_variable, self.cleaned_data.get("api_key_env") or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            services.check_key_source(
                api_key=data.get("api_key") or "", api_key_env=data.get("api_key_env") or ""
            )
            if "adapter" in data and "base_url" in data:
                services.check_key_destination(
                    provider=self.instance,
                    adapter=data["adapter"],
                    base_url=data["base_url"],
                    new_key=bool(data.get("api_key") or data.get("clear_api_key") or data.get("api_key_env")),
                )
        except services.ProviderInputError as exc:
            self.add_error(exc.field, exc.message)
        return data


def _checked(check: Any, value: Any) -> Any:
    """Run a :mod:`providers_app.services` check as a form field's clean step."""
    try:
        return check(value)
    except services.ProviderInputError as exc:
        raise forms.ValidationError(exc.message) from None


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "adapter", "base_url", "key", "enabled", "rule_count"]
    list_filter = ["enabled", "adapter"]
    search_fields = ["name", "adapter", "base_url"]
    readonly_fields = ["key"]
    actions = ["test_connection"]
    change_list_template = "admin/providers_app/provider/change_list.html"
    change_form_template = "admin/providers_app/provider/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "adapter", "base_url", "enabled"]}),
        ("Key", {"fields": ["key", "api_key", "clear_api_key", "api_key_env"]}),
        (
            "Requests",
            {
                "fields": [
                    "headers",
                    "options",
                    "connect_timeout",
                    "first_byte_timeout",
                    "idle_timeout",
                    "max_retries",
                ]
            },
        ),
    ]

    @admin.display(description="API key")
    def key(self, obj: Provider) -> str:
        if obj.api_key_env:
            if not key_variable_allowed(obj.api_key_env):
                return f"from ${obj.api_key_env}: not an allowed variable (not used)"
            return f"from ${obj.api_key_env}: {key_hint(os.environ.get(obj.api_key_env, ''))}"
        if obj.api_key_last4:
            return f"stored encrypted (…{obj.api_key_last4})"
        return "none"

    @admin.display(description="rules")
    def rule_count(self, obj: Provider) -> int:
        return obj.rules.count()

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        services.provider_save(
            provider=obj,
            api_key=form.cleaned_data.get("api_key") or "",
            clear_api_key=bool(form.cleaned_data.get("clear_api_key")),
        )

    def delete_model(self, request: HttpRequest, obj: Provider) -> None:
        services.provider_delete(provider=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        registry.reset()

    @admin.action(description="Test connection (one small upstream call)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet) -> None:
        for row in queryset:
            try:
                config = provider_config_from_row(row)
            except SecretError as exc:
                messages.error(request, f"{row.name}: not tested, {exc}")
                continue
            model = probe_model(config)
            if model is None:
                messages.warning(
                    request,
                    f"{row.name}: no model to try — set options.test_model or add a routing rule with an upstream model.",
                )
                continue
            result = check_connection(config, model)
            level = messages.SUCCESS if result.ok else messages.ERROR
            messages.add_message(
                request,
                level,
                f"{row.name} ({model}): {'OK' if result.ok else 'failed'}, {result.message} in {result.seconds:.2f} s",
            )

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A provider's "test connection" page: pick a model, make one call, see the result."""
        row = Provider.objects.filter(pk=object_id).first()
        if row is None or not self.has_change_permission(request, row):
            raise Http404("No such provider")
        try:
            config = provider_config_from_row(row)
        except SecretError as exc:
            # Never test with a key that may not go there (changed address, variable not allowed).
            config, key_error = None, str(exc)
        else:
            key_error = ""
        model = (request.POST.get("model") or "").strip() or (probe_model(config) if config else None) or ""
        result = None
        if request.method == "POST" and model:
            result = (
                ConnectionResult(False, model, key_error, 0.0)
                if config is None
                else check_connection(config, model)
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": row,
            "title": f"Test connection: {row.name}",
            "subtitle": None,
            "model": model,
            "result": result,
            "base_url": config.base_url if config else row.base_url,
        }
        return TemplateResponse(request, "admin/providers_app/provider/test_connection.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        error = _registry_error(request)
        others = []
        if not error:
            sources = provider_sources()
            for name, config in sorted(provider_configs().items()):
                if sources.get(name) != "database":
                    others.append(
                        {
                            "name": name,
                            "adapter": config.adapter,
                            "base_url": config.base_url,
                            "source": sources.get(name, ""),
                            "key": key_hint(config.api_key),
                        }
                    )
        return super().changelist_view(
            request, {**(extra_context or {}), "other_providers": others, "registry_error": error}
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        return super().changeform_view(
            request,
            object_id,
            form_url,
            {**(extra_context or {}), "builtin_adapters": sorted(BUILTIN_ADAPTERS)},
        )

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/test/",
                self.admin_site.admin_view(self.test_view),
                name="providers_app_provider_test",
            )
        ] + super().get_urls()


# ---------------------------------------------------------------------------- routing rules


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = ["pattern", "provider", "provider_name", "upstream_model", "fallbacks", "order", "enabled"]
        widgets = {"provider_name": forms.TextInput(attrs={"list": "or-provider-names"})}
        labels = {
            "provider": "Provider (database)",
            "provider_name": "…or provider (environment / config file)",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for check, kwargs in (
            (
                services.check_rule_target,
                {
                    "provider": data.get("provider"),
                    "provider_name": (data.get("provider_name") or "").strip(),
                },
            ),
            (services.check_fallbacks, {"value": data.get("fallbacks")}),
        ):
            try:
                check(**kwargs)
            except services.ProviderInputError as exc:
                if exc.field is None:
                    raise forms.ValidationError(exc.message) from None
                self.add_error(exc.field, exc.message)
        return data


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    form = RoutingRuleForm
    list_display = ["pattern", "target", "upstream_model", "order", "enabled"]
    list_editable = ["order", "enabled"]
    list_display_links = ["pattern"]
    list_filter = ["enabled", "provider"]
    search_fields = ["pattern", "upstream_model", "provider__name", "provider_name"]
    change_list_template = "admin/providers_app/routingrule/change_list.html"
    change_form_template = "admin/providers_app/routingrule/change_form.html"

    @admin.display(description="provider")
    def target(self, obj: RoutingRule) -> str:
        return obj.target_name

    def save_model(self, request: HttpRequest, obj: RoutingRule, form: Any, change: bool) -> None:
        services.rule_save(rule=obj)

    def delete_model(self, request: HttpRequest, obj: RoutingRule) -> None:
        services.rule_delete(rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        registry.reset()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        error = _registry_error(request)
        routes = [] if error else [r for r in all_routes() if r.source != "database"]
        return super().changelist_view(
            request, {**(extra_context or {}), "other_routes": routes, "registry_error": error}
        )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        names = (
            []
            if _registry_error(request)
            else sorted(n for n, s in provider_sources().items() if s != "database")
        )
        return super().changeform_view(
            request, object_id, form_url, {**(extra_context or {}), "provider_names": names}
        )

    def resolve_view(self, request: HttpRequest) -> HttpResponse:
        """Which provider and upstream model would this model name take? (the live routing code)"""
        if not self.has_view_permission(request):
            raise Http404("Not allowed")
        model = (request.GET.get("model") or "").strip()
        error = _registry_error(request)
        route = None
        routes = []
        if not error:
            route = route_for_model(model) if model else None
            configs = provider_configs()
            winner_seen = False
            for r in all_routes():
                matches = bool(model) and fnmatch.fnmatchcase(model, r.pattern)
                row = {"route": r, "matches": matches, "wins": matches and not winner_seen}
                winner_seen = winner_seen or matches
                routes.append(row)
            provider = configs.get(route.provider) if route else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Which provider would a model name take?",
            "subtitle": None,
            "model": model,
            "route": route,
            "provider": provider if not error and route else None,
            "provider_source": provider_sources().get(route.provider, "") if route and not error else "",
            "routes": routes,
            "registry_error": error,
        }
        return TemplateResponse(request, "admin/providers_app/routingrule/resolve.html", context)

    def get_urls(self) -> list:
        return [
            path(
                "resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="providers_app_routingrule_resolve",
            )
        ] + super().get_urls()
