"""System checks for provider configuration (``manage.py check``), with stable ids.

Ids 1xx are this module's; the Responses app's checks own E001–E008 / W001–W002 (among them
E002, an adapter that does not import, and E005, a config file that cannot be read or parsed;
both are not repeated here except E002 for providers declared in settings).

* ``openresponses.E101`` a provider definition is invalid (no ``name``, a bad number, bad shape).
* ``openresponses.E102`` a route has no ``pattern``/``provider`` or names an unknown provider.
* ``openresponses.E103`` a provider's ``base_url`` is not an http(s) URL.
* ``openresponses.E104`` a timeout is not a positive number or ``max_retries`` is negative.
* ``openresponses.W101`` ``api_key_env`` names an environment variable that is not set.
* ``openresponses.W102`` (database tag) a stored routing rule names an unknown provider.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from django.core import checks

from providers_app.adapters.base import ProviderConfig
from providers_app.conf import providers_settings
from providers_app.registry import (
    ConfigError,
    adapter_class,
    default_provider_configs,
    load_config_file,
    provider_from_dict,
)


def check_provider_config(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Validate providers and routes declared in settings and in the config file."""
    messages: list[checks.CheckMessage] = []
    known = set(default_provider_configs())
    sources: list[tuple[str, dict[str, Any]]] = [
        (
            "OPENRESPONSES['PROVIDERS'/'ROUTES']",
            {
                "providers": providers_settings.PROVIDERS or [],
                "routes": providers_settings.ROUTES or [],
            },
        ),
    ]
    path = providers_settings.CONFIG_FILE
    if path:
        data = _read_config(path)
        if data is not None:
            sources.append((f"config file {path}", data))
    for index, (source, data) in enumerate(sources):
        known |= _check_providers(source, data.get("providers"), messages, check_adapter=index == 0)
    for source, data in sources:
        _check_routes(source, data.get("routes"), known, messages)
    return messages


def check_provider_rows(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Stored routing rules that point nowhere (only with ``manage.py check --database``)."""
    if not databases:
        return []
    from django.db import DatabaseError

    from providers_app.models import Provider, RoutingRule
    from providers_app.registry import registry

    messages: list[checks.CheckMessage] = []
    try:
        stored = set(Provider.objects.filter(enabled=True).values_list("name", flat=True))
        rules = list(RoutingRule.objects.filter(enabled=True).select_related("provider"))
        known = set(registry.state()[0]) | stored
    except (DatabaseError, ConfigError):
        return []
    for rule in rules:
        if rule.target_name not in known:
            messages.append(
                checks.Warning(
                    f"Routing rule {rule.pk} ({rule.pattern!r}) names an unknown provider {rule.target_name!r}; it is skipped.",
                    hint="Point the rule at a provider defined in the database, the config file, settings or the defaults.",
                    obj=rule,
                    id="openresponses.W102",
                )
            )
    return messages


def _read_config(path: str) -> dict[str, Any] | None:
    """The parsed config file, or None when it cannot be used (reported as E005 elsewhere)."""
    try:
        return load_config_file(path)
    except Exception:  # noqa: BLE001 - reported as openresponses.E005 by the Responses app's checks
        return None


def _check_providers(
    source: str, entries: Any, messages: list[checks.CheckMessage], *, check_adapter: bool
) -> set[str]:
    names: set[str] = set()
    if entries is None:
        return names
    if not isinstance(entries, list):
        messages.append(checks.Error(f"{source}: 'providers' must be a list.", id="openresponses.E101"))
        return names
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("name"):
            messages.append(
                checks.Error(f"{source}: every provider needs a 'name': {entry!r}", id="openresponses.E101")
            )
            continue
        try:
            config = provider_from_dict(entry, source)
        except (ConfigError, TypeError, ValueError) as exc:
            messages.append(
                checks.Error(
                    f"{source}: provider {entry['name']!r} is invalid: {exc}", id="openresponses.E101"
                )
            )
            continue
        names.add(config.name)
        messages.extend(_check_one_provider(source, config, entry, check_adapter=check_adapter))
    return names


def _check_one_provider(
    source: str, config: ProviderConfig, entry: dict[str, Any], *, check_adapter: bool
) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    label = f"{source}: provider {config.name!r}"
    try:
        if check_adapter:
            adapter_class(config.adapter)
    except ConfigError as exc:
        messages.append(
            checks.Error(
                f"{label}: {exc}",
                hint="Use a built-in family (openai, openai_chat, anthropic, gemini, ollama, mock) or the dotted path of a ProviderAdapter subclass.",
                id="openresponses.E002",
            )
        )
    url = urlparse(config.base_url or "")
    if config.base_url and (url.scheme not in ("http", "https") or not url.netloc):
        messages.append(
            checks.Error(
                f"{label}: base_url {config.base_url!r} is not an http(s) URL.", id="openresponses.E103"
            )
        )
    for name in ("connect_timeout", "first_byte_timeout", "idle_timeout"):
        if getattr(config, name) <= 0:
            messages.append(
                checks.Error(
                    f"{label}: {name} must be a positive number of seconds.", id="openresponses.E104"
                )
            )
    if config.max_retries < 0:
        messages.append(checks.Error(f"{label}: max_retries must not be negative.", id="openresponses.E104"))
    env_name = entry.get("api_key_env")
    if env_name and not os.environ.get(env_name):
        messages.append(
            checks.Warning(
                f"{label}: the environment variable {env_name} (api_key_env) is not set; requests go out without a key.",
                id="openresponses.W101",
            )
        )
    return messages


def _check_routes(source: str, entries: Any, known: set[str], messages: list[checks.CheckMessage]) -> None:
    if entries is None:
        return
    if not isinstance(entries, list):
        messages.append(checks.Error(f"{source}: 'routes' must be a list.", id="openresponses.E102"))
        return
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("pattern") or not entry.get("provider"):
            messages.append(
                checks.Error(
                    f"{source}: every route needs a 'pattern' and a 'provider': {entry!r}",
                    id="openresponses.E102",
                )
            )
        elif entry["provider"] not in known:
            messages.append(
                checks.Error(
                    f"{source}: route {entry['pattern']!r} names an unknown provider {entry['provider']!r}.",
                    hint="Define the provider under 'providers' or use a built-in one (openai, anthropic, gemini, ollama, mock).",
                    id="openresponses.E102",
                )
            )
