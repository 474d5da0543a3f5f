"""System checks (``manage.py check``) for the OpenResponses settings, with stable ids and hints.

Ids (never renumbered; documented in docs/operations.md):

* ``openresponses.E001`` ``AUTHENTICATE`` does not import.
* ``openresponses.E002`` a provider's adapter does not import (config file or database).
* ``openresponses.E003`` a hosted tool path does not import.
* ``openresponses.E004`` a loop middleware path does not import.
* ``openresponses.E005`` the config file cannot be read or parsed.
* ``openresponses.E006`` ``DISPATCH`` is neither ``"inline"`` nor ``"celery"``.
* ``openresponses.E007`` ``DISPATCH="celery"`` without a cross-process channel layer.
* ``openresponses.W001`` an in-memory channel layer with ``DEBUG=False`` (single process only).
* ``openresponses.W002`` stored provider keys encrypted with the insecure default secret.
* ``openresponses.W003`` a stored provider reads its key from a variable that is not allowed.
* ``openresponses.E008`` a stored provider key cannot be decrypted with the current key.
* ``openresponses.E009`` a ``DRF_AUTHENTICATION_CLASSES`` path does not import.

Checks that read the database are tagged ``database``: ``migrate``, ``check --database default``
and ``openresponses_check`` run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from django.core import checks
from django.utils.module_loading import import_string

INSECURE_SECRET_PREFIXES = ("django-insecure-", "openresponses-insecure-")
IN_MEMORY_LAYERS = {"channels.layers.InMemoryChannelLayer"}


def _settings() -> Any:
    from django.conf import settings

    return settings


def _user_value(name: str) -> Any:
    """The effective ``OPENRESPONSES[name]`` without caching or importing it."""
    from providers_app import conf as providers_conf
    from responses_app.conf import DEFAULTS, ENV_FALLBACKS

    if name in providers_conf.DEFAULTS:
        return providers_conf.user_value(name)

    value = (getattr(_settings(), "OPENRESPONSES", None) or {}).get(name, DEFAULTS[name])
    if (value is None or value == "") and name in ENV_FALLBACKS:
        value = os.environ.get(ENV_FALLBACKS[name], DEFAULTS[name])
    return value


def _import_error(path: Any) -> str | None:
    if not isinstance(path, str):
        return None if callable(path) else f"{path!r} is not a dotted path"
    try:
        import_string(path)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def _config_file() -> tuple[dict[str, Any] | None, checks.CheckMessage | None]:
    path = _user_value("CONFIG_FILE")
    if not path:
        return None, None
    from providers_app.registry import ConfigError, load_config_file

    try:
        return load_config_file(str(path)), None
    except (OSError, ConfigError) as exc:
        return None, checks.Error(
            f"The OpenResponses config file {path!r} cannot be used: {exc}",
            hint="Fix the file, or point OPENRESPONSES['CONFIG_FILE'] / OPENRESPONSES_CONFIG at a readable JSON file. "
            "Running servers keep its last good version meanwhile (or refuse requests with 503 if they never read one).",
            id="openresponses.E005",
        )


def check_import_paths(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every dotted path in the settings and the config file imports."""
    messages: list[checks.CheckMessage] = []
    error = _import_error(_user_value("AUTHENTICATE"))
    if error:
        messages.append(
            checks.Error(
                f"OPENRESPONSES['AUTHENTICATE'] does not import: {error}",
                hint="Name a callable(request) -> ClientIdentity | None by its dotted path, e.g. 'mysite.auth.authenticate'.",
                id="openresponses.E001",
            )
        )
    data, file_error = _config_file()
    if file_error:
        messages.append(file_error)
    data = data or {}
    tools = list(_user_value("HOSTED_TOOLS") or []) + list(data.get("hosted_tools") or [])
    for path in tools:
        error = _import_error(path)
        if error:
            messages.append(
                checks.Error(
                    f"Hosted tool {path!r} does not import: {error}",
                    hint="List importable functions (with type hints and a docstring) in OPENRESPONSES['HOSTED_TOOLS'] or the config file's 'hosted_tools'.",
                    id="openresponses.E003",
                )
            )
    for path in _user_value("DRF_AUTHENTICATION_CLASSES") or []:
        error = _import_error(path)
        if error:
            messages.append(
                checks.Error(
                    f"DRF authentication class {path!r} does not import: {error}",
                    hint="List Django REST framework authentication classes in OPENRESPONSES['DRF_AUTHENTICATION_CLASSES'], e.g. 'rest_framework.authentication.TokenAuthentication'.",
                    id="openresponses.E009",
                )
            )
    for path in _user_value("MIDDLEWARE") or []:
        error = _import_error(path)
        if error:
            messages.append(
                checks.Error(
                    f"Loop middleware {path!r} does not import: {error}",
                    hint="List importable classes with before_sample/after_sample hooks in OPENRESPONSES['MIDDLEWARE'].",
                    id="openresponses.E004",
                )
            )
    for entry in data.get("providers") or []:
        if isinstance(entry, dict) and entry.get("name"):
            messages += _adapter_messages(
                str(entry["name"]), str(entry.get("adapter") or entry["name"]), "config file"
            )
    return messages


def _adapter_messages(name: str, adapter: str, source: str) -> list[checks.CheckMessage]:
    from providers_app.registry import ConfigError, adapter_class

    try:
        adapter_class(adapter)
    except ConfigError as exc:
        return [
            checks.Error(
                f"Provider {name!r} ({source}): {exc}",
                hint="Use a built-in family (openai, openai_chat, anthropic, gemini, ollama, mock) or the dotted path of a ProviderAdapter subclass.",
                obj=name,
                id="openresponses.E002",
            )
        ]
    return []


def check_topology(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Dispatch mode and channel layer fit together."""
    settings = _settings()
    dispatch = _user_value("DISPATCH")
    if dispatch not in {"inline", "celery"}:
        return [
            checks.Error(
                f"OPENRESPONSES['DISPATCH'] is {dispatch!r}.",
                hint="Use 'inline' (loops run in the serving process) or 'celery' (loops run in Celery workers).",
                id="openresponses.E006",
            )
        ]
    backend = ((getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}).get("BACKEND")
    if dispatch == "celery" and (backend is None or backend in IN_MEMORY_LAYERS):
        return [
            checks.Error(
                "OPENRESPONSES['DISPATCH'] is 'celery' but there is no cross-process channel layer "
                f"(CHANNEL_LAYERS['default'] is {backend or 'missing'}): events from workers never reach the web processes.",
                hint="Set CHANNEL_LAYERS = {'default': {'BACKEND': 'channels_redis.pubsub.RedisPubSubChannelLayer', "
                "'CONFIG': {'hosts': [REDIS_URL]}}}.",
                id="openresponses.E007",
            )
        ]
    if (
        backend in IN_MEMORY_LAYERS
        and not settings.DEBUG
        and os.environ.get("WEB_CONCURRENCY", "1") not in {"", "1"}
    ):
        return [
            checks.Warning(
                "An in-memory channel layer serves one process only, and WEB_CONCURRENCY asks for several.",
                hint="Use channels_redis (see docs/installation.md, 'The production addition') or run one web process.",
                id="openresponses.W001",
            )
        ]
    return []


def check_stored_keys(
    app_configs: Iterable[Any] | None = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Stored provider keys: a real encryption key, decryptable, adapters that import."""
    if not databases:
        return []
    from django.db import DatabaseError

    from providers_app.models import Provider
    from providers_app.secrets import (
        decrypt,
        explicit_keys_configured,
        key_variable_allowed,
        key_variable_error,
    )

    try:
        rows = list(Provider.objects.all())
    except DatabaseError:
        return []  # not migrated yet
    messages: list[checks.CheckMessage] = []
    for row in rows:
        messages += _adapter_messages(row.name, row.adapter, "database")
        if row.api_key_env and not key_variable_allowed(row.api_key_env):
            messages.append(  # a warning: it must not stop ``migrate`` after an upgrade
                checks.Warning(
                    f"Provider {row.name!r}: {key_variable_error(row.api_key_env)}",
                    hint="Rename the variable to an allowed name (the provider is not used until then), "
                    "or allow it in OPENRESPONSES_PROVIDER_KEY_VARIABLES.",
                    obj=row.name,
                    id="openresponses.W003",
                )
            )
    encrypted = [row for row in rows if row.api_key_encrypted]
    if not encrypted:
        return messages
    settings = _settings()
    if not explicit_keys_configured() and str(settings.SECRET_KEY).startswith(INSECURE_SECRET_PREFIXES):
        messages.append(
            checks.Warning(
                f"{len(encrypted)} stored provider key(s) are encrypted with the insecure default SECRET_KEY.",
                hint="Set OPENRESPONSES_ENCRYPTION_KEYS (long random strings kept outside the database, the new one first, the old SECRET_KEY after it), then run manage.py openresponses_rotate_keys.",
                id="openresponses.W002",
            )
        )
    for row in encrypted:
        try:
            decrypt(row.api_key_encrypted)
        except ValueError:
            messages.append(
                checks.Error(
                    f"The stored key of provider {row.name!r} cannot be decrypted with the current encryption key.",
                    hint="Add the key it was stored under to OPENRESPONSES_ENCRYPTION_KEYS (or SECRET_KEY_FALLBACKS), or enter the key again in the admin.",
                    obj=row.name,
                    id="openresponses.E008",
                )
            )
    return messages


def register_checks() -> None:
    """Called from ``ResponsesAppConfig.ready()``: registration is explicit, not an import side effect."""
    checks.register(check_import_paths, "openresponses")
    checks.register(check_topology, "openresponses")
    checks.register(check_stored_keys, "openresponses", checks.Tags.database)
