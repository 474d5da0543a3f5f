"""Provider configurations and adapter instances: built-in defaults, config file, database.

Read like Django's ``get_hashers()``: adapter classes are named by family or dotted path,
imported lazily, instances cached, and everything reset when settings or stored rows change.

Route order: database rules, then the config file (``OPENRESPONSES_CONFIG``), then the
``OPENRESPONSES["ROUTES"]`` setting, then the built-in defaults. Provider definitions override
each other in the opposite direction (database over config file over settings over environment).

Cache invalidation: saving or deleting a ``Provider``/``RoutingRule`` resets the cache of the
process that did it (receivers connected in ``apps.ready()``); other processes (daphne workers,
Celery workers) notice a changed row count or ``updated_at`` within
``PROVIDERS_RECHECK_SECONDS`` (checked by :func:`aroute_for_model` / :func:`aget_adapter`).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from providers_app.adapters.base import ProviderAdapter, ProviderConfig
from providers_app.conf import providers_settings

logger = logging.getLogger(__name__)

BUILTIN_ADAPTERS = {
    "openai": "providers_app.adapters.openai_responses.OpenAIResponsesAdapter",
    "openai_chat": "providers_app.adapters.openai_chat.OpenAIChatAdapter",
    "anthropic": "providers_app.adapters.anthropic.AnthropicAdapter",
    "zai": "providers_app.adapters.anthropic.AnthropicAdapter",
    "gemini": "providers_app.adapters.gemini.GeminiAdapter",
    "ollama": "providers_app.adapters.ollama.OllamaAdapter",
    "mock": "providers_app.adapters.mock.MockAdapter",
}

DEFAULT_ROUTES = [
    ("mock-*", "mock"),
    ("mock", "mock"),
    ("gpt-*", "openai"),
    ("o1*", "openai"),
    ("o3*", "openai"),
    ("o4*", "openai"),
    ("chatgpt-*", "openai"),
    ("claude-*", "anthropic"),
    ("gemini-*", "gemini"),
    ("llama*", "ollama"),
    ("mistral*", "ollama"),
    ("phi*", "ollama"),
    ("qwen*", "ollama"),
]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a requested model goes."""

    provider: str
    upstream_model: str
    pattern: str
    source: str  # "database", "config file", "default"
    #: ``(provider, upstream model)`` pairs tried in order when ``provider`` fails before its first
    #: byte (connection error, 5xx, 429, timeout); an empty model means the requested one.
    fallbacks: tuple[tuple[str, str], ...] = ()


class ConfigError(Exception):
    """The config file (or a provider definition) is invalid."""


def adapter_class(name: str) -> type[ProviderAdapter]:
    path = BUILTIN_ADAPTERS.get(name, name)
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ConfigError(f"Adapter {name!r} could not be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, ProviderAdapter)):
        raise ConfigError(f"Adapter {name!r} is not a subclass of ProviderAdapter")
    return cls


def default_provider_configs() -> dict[str, ProviderConfig]:
    env = os.environ
    return {
        "openai": ProviderConfig(
            "openai",
            "openai",
            env.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            env.get("OPENAI_API_KEY", ""),
        ),
        "anthropic": ProviderConfig(
            "anthropic",
            "anthropic",
            env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com/v1"),
            env.get("ANTHROPIC_API_KEY", ""),
        ),
        "gemini": ProviderConfig(
            "gemini",
            "gemini",
            env.get("GEMINI_BASE_URL", "https://generativelanguage.googleapis.com/v1beta"),
            env.get("GEMINI_API_KEY", ""),
        ),
        "ollama": ProviderConfig(
            "ollama",
            "ollama",
            env.get("OLLAMA_BASE_URL", "http://localhost:11434"),
            env.get("OLLAMA_API_KEY", ""),
        ),
        "mock": ProviderConfig("mock", "mock"),
    }


def load_config_file(path: str) -> dict[str, Any]:
    """Parse the declarative config file (JSON; YAML when PyYAML is installed).

    Parsed once per version of the file (its size and modification time), not on every call.
    """
    stat = os.stat(path)  # (a third of the cost of Path(path).stat(); hot paths call this per request)
    return copy.deepcopy(_parse_config_file(path, stat.st_mtime_ns, stat.st_size))


def config_file_value(path: str, key: str) -> Any:
    """One top-level value of the config file (a copy of it alone: hot paths read one key)."""
    stat = os.stat(path)
    return copy.deepcopy(_parse_config_file(path, stat.st_mtime_ns, stat.st_size).get(key))


@lru_cache(maxsize=8)
def _parse_config_file(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ConfigError("YAML config files need PyYAML installed") from exc
        data = yaml.safe_load(text) or {}
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"Config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold an object")
    return data


def provider_from_dict(entry: dict[str, Any], source: str) -> ProviderConfig:
    try:
        name = entry["name"]
        adapter = entry.get("adapter", name)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: every provider needs a 'name'") from exc
    key = entry.get("api_key") or ""
    if entry.get("api_key_env"):
        key = os.environ.get(entry["api_key_env"], "")
    timeouts = entry.get("timeouts") or {}
    return ProviderConfig(
        name=name,
        adapter=adapter,
        base_url=entry.get("base_url")
        or default_provider_configs().get(adapter, ProviderConfig(name, adapter)).base_url,
        api_key=key,
        headers=dict(entry.get("headers") or {}),
        connect_timeout=float(timeouts.get("connect", entry.get("connect_timeout", 10.0))),
        first_byte_timeout=float(timeouts.get("first_byte", entry.get("first_byte_timeout", 120.0))),
        idle_timeout=float(timeouts.get("idle", entry.get("idle_timeout", 120.0))),
        max_retries=int(entry.get("max_retries", 2)),
        options=dict(entry.get("options") or {}),
    )


class _Registry:
    """Cached view of all providers and routes; ``reset()`` after any configuration change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: tuple[dict[str, ProviderConfig], list[Route], dict[str, str]] | None = None
        self._adapters: dict[str, ProviderAdapter] = {}
        self._fingerprint: Any = None
        self._checked_at = 0.0

    def reset(self) -> None:
        with self._lock:
            self._state = None
            self._adapters = {}
            self._fingerprint = None

    def _load(self) -> tuple[dict[str, ProviderConfig], list[Route], dict[str, str]]:
        providers = default_provider_configs()
        sources = {name: "default" for name in providers}
        declared = [
            (
                "settings",
                {
                    "providers": providers_settings.PROVIDERS or [],
                    "routes": providers_settings.ROUTES or [],
                },
            )
        ]
        config_path = providers_settings.CONFIG_FILE
        if config_path:
            declared.append(("config file", load_config_file(config_path)))
        for source, data in declared:  # the file's providers override same-named ones in settings
            for entry in data.get("providers") or []:
                config = provider_from_dict(entry, source)
                providers[config.name] = config
                sources[config.name] = source
        self._fingerprint = database_fingerprint()
        self._checked_at = time.monotonic()
        db_routes = self._database(providers, sources)
        declared_routes = [
            route
            for source, data in reversed(declared)
            for route in declared_routes_of(data, source, providers)
        ]
        routes = db_routes + declared_routes + [Route(p, "", pat, "default") for pat, p in DEFAULT_ROUTES]
        return providers, routes, sources

    def _database(self, providers: dict[str, ProviderConfig], sources: dict[str, str]) -> list[Route]:
        from django.db import DatabaseError

        from providers_app.models import Provider, RoutingRule
        from providers_app.secrets import SecretError

        try:
            for row in Provider.objects.filter(enabled=True):
                try:
                    providers[row.name] = provider_config_from_row(row)
                except SecretError as exc:
                    # Kept (its routes still match) but unusable: requests fail with this message
                    # instead of reaching the provider without a key.
                    logger.error("%s", exc)
                    providers[row.name] = ProviderConfig(
                        row.name, row.adapter, options={"_key_error": str(exc)}
                    )
                sources[row.name] = "database"
            rules = list(RoutingRule.objects.filter(enabled=True).select_related("provider"))
        except DatabaseError:
            return []
        routes = []
        for rule in rules:
            target = rule.target_name
            if rule.provider_id and not rule.provider.enabled:
                continue
            if target not in providers:
                logger.warning(
                    "routing rule %s (%s) names an unknown provider %r; skipped",
                    rule.pk,
                    rule.pattern,
                    target,
                )
                continue
            try:
                fallbacks = tuple(
                    f for f in fallbacks_of(rule.fallbacks, f"routing rule {rule.pk}") if f[0] in providers
                )
            except ConfigError as exc:
                logger.warning("%s; the rule is used without fallbacks", exc)
                fallbacks = ()
            routes.append(Route(target, rule.upstream_model, rule.pattern, "database", fallbacks))
        return routes

    def state(self) -> tuple[dict[str, ProviderConfig], list[Route], dict[str, str]]:
        state = self._state
        if state is None:
            with self._lock:
                if self._state is None:
                    self._state = self._load()
                state = self._state
        return state

    def recheck_due(self) -> bool:
        """True when the stored rows should be compared with the cached ones (cheap, no I/O)."""
        if self._state is None:
            return True
        return time.monotonic() - self._checked_at >= recheck_interval()

    def refresh_if_changed(self) -> None:
        """Reset the cache when another process changed providers or rules (one small query)."""
        if self._state is None:
            self.state()
            return
        if time.monotonic() - self._checked_at < recheck_interval():
            return
        self._checked_at = time.monotonic()
        if database_fingerprint() != self._fingerprint:
            logger.info("provider configuration changed in the database; reloading")
            self.reset()
            self.state()

    def adapter(self, provider: str) -> ProviderAdapter:
        adapter = self._adapters.get(provider)
        if adapter is None:
            providers = self.state()[0]
            if provider not in providers:
                raise ConfigError(f"Unknown provider {provider!r}")
            config = providers[provider]
            if config.options.get("_key_error"):
                raise ConfigError(config.options["_key_error"])
            adapter = adapter_class(config.adapter)(config)
            self._adapters[provider] = adapter
        return adapter


def declared_routes_of(
    data: dict[str, Any], source: str, providers: dict[str, ProviderConfig]
) -> list[Route]:
    """The routes of a config-file-shaped dict (the file itself or settings), in order."""
    routes = []
    for entry in data.get("routes") or []:
        if not isinstance(entry, dict) or not entry.get("pattern") or not entry.get("provider"):
            raise ConfigError(f"{source}: every route needs a 'pattern' and a 'provider': {entry!r}")
        if entry["provider"] not in providers:
            raise ConfigError(
                f"{source}: route {entry['pattern']!r} names an unknown provider {entry['provider']!r}"
            )
        fallbacks = fallbacks_of(entry.get("fallbacks"), f"{source}: route {entry['pattern']!r}")
        for provider, _ in fallbacks:
            if provider not in providers:
                raise ConfigError(
                    f"{source}: route {entry['pattern']!r} names an unknown fallback provider {provider!r}"
                )
        routes.append(Route(entry["provider"], entry.get("model") or "", entry["pattern"], source, fallbacks))
    return routes


def fallbacks_of(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``[{"provider": "azure", "model": "gpt-4o"}, "other"]`` as ``(provider, model)`` pairs."""
    found = []
    for entry in value or []:
        if isinstance(entry, str) and entry:
            found.append((entry, ""))
        elif isinstance(entry, dict) and entry.get("provider"):
            found.append((str(entry["provider"]), str(entry.get("model") or "")))
        else:
            raise ConfigError(f"{where}: every fallback needs a 'provider': {entry!r}")
    return tuple(found)


def database_fingerprint() -> Any:
    """A digest of every provider and rule row (None without a database).

    Whole rows rather than counts and ``updated_at``: ``QuerySet.update()`` leaves ``updated_at``
    alone, and these tables hold a handful of rows.
    """
    import hashlib

    from django.db import DatabaseError

    from providers_app.models import Provider, RoutingRule

    try:
        rows = [list(model.objects.order_by("pk").values_list()) for model in (Provider, RoutingRule)]
    except DatabaseError:
        return None
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def recheck_interval() -> float:
    value = providers_settings.PROVIDERS_RECHECK_SECONDS
    try:
        return 5.0 if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return 5.0


registry = _Registry()


def provider_config_from_row(row: Any) -> ProviderConfig:
    from providers_app.secrets import provider_key

    return ProviderConfig(
        name=row.name,
        adapter=row.adapter,
        base_url=row.base_url
        or default_provider_configs().get(row.adapter, ProviderConfig(row.name, row.adapter)).base_url,
        api_key=provider_key(row),
        headers=dict(row.headers or {}),
        connect_timeout=row.connect_timeout,
        first_byte_timeout=row.first_byte_timeout,
        idle_timeout=row.idle_timeout,
        max_retries=row.max_retries,
        options=dict(row.options or {}),
    )


def route_for_model(model: str) -> Route | None:
    """The first route whose pattern matches ``model`` (database, config file, settings, defaults)."""
    for route in registry.state()[1]:
        if _matches(route.pattern, model):
            fallbacks = tuple((provider, upstream or model) for provider, upstream in route.fallbacks)
            return Route(
                route.provider, route.upstream_model or model, route.pattern, route.source, fallbacks
            )
    return None


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    import re

    return re.compile(fnmatch.translate(pattern))


def _matches(pattern: str, model: str) -> bool:
    return _compiled(pattern).match(model) is not None


async def aroute_for_model(model: str) -> Route | None:
    """:func:`route_for_model` from async code (configuration loaded and rechecked off the loop)."""
    await _arefresh()
    return route_for_model(model)


def get_adapter(provider: str) -> ProviderAdapter:
    return registry.adapter(provider)


async def aget_adapter(provider: str) -> ProviderAdapter:
    """:func:`get_adapter` from async code (never touches the database on the event loop)."""
    await _arefresh()
    return registry.adapter(provider)


async def _arefresh() -> None:
    if registry.recheck_due():
        from asgiref.sync import sync_to_async

        await sync_to_async(registry.refresh_if_changed)()


def provider_configs() -> dict[str, ProviderConfig]:
    return registry.state()[0]


def provider_sources() -> dict[str, str]:
    return registry.state()[2]


def all_routes() -> list[Route]:
    return list(registry.state()[1])


def loaded_routes() -> list[Route]:
    """The routes as loaded: the same list object until the configuration is loaded again (for
    caches keyed on it); not to be modified."""
    return registry.state()[1]


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {"OPENRESPONSES"}:
        registry.reset()


def reset_on_row_change(**kwargs: Any) -> None:
    """``post_save`` / ``post_delete`` receiver for Provider and RoutingRule (cache invalidation only)."""
    from django.db import transaction

    registry.reset()
    # A process that loads between the write and the commit would cache the old rows.
    transaction.on_commit(registry.reset, using=kwargs.get("using"))
