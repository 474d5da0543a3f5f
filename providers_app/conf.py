"""providers_app settings: its keys of the ``OPENRESPONSES`` dict, with defaults, read lazily.

In the spirit of DRF's ``api_settings`` and allauth's per-app ``app_settings``: this app reads
only these keys, never another app's settings module. Values are looked up on first use (never at
import), cached, and forgotten when a test or ``override_settings`` changes ``OPENRESPONSES``.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

#: The keys of ``settings.OPENRESPONSES`` this app owns, with their defaults.
DEFAULTS: dict[str, Any] = {
    # Path of the declarative config file (JSON or YAML); also OPENRESPONSES_CONFIG.
    "CONFIG_FILE": "",
    # Providers and routes defined in settings (same shape as the config file's; after it).
    "PROVIDERS": [],
    "ROUTES": [],
    # Seconds between checks for provider/routing rows changed by another process (None: 5);
    # also OPENRESPONSES_PROVIDERS_RECHECK_SECONDS.
    "PROVIDERS_RECHECK_SECONDS": None,
    # Seconds the built-in ``mock`` provider waits between tokens (demos and benchmarks).
    "MOCK_TOKEN_DELAY": 0.0,
}

#: Environment variables read when a key is unset, None or "".
ENV_FALLBACKS: dict[str, str] = {
    "CONFIG_FILE": "OPENRESPONSES_CONFIG",
    "PROVIDERS_RECHECK_SECONDS": "OPENRESPONSES_PROVIDERS_RECHECK_SECONDS",
}


def user_value(name: str) -> Any:
    """The effective ``OPENRESPONSES[name]`` (setting, else environment, else default), uncached."""
    from django.conf import settings

    value = (getattr(settings, "OPENRESPONSES", None) or {}).get(name, DEFAULTS[name])
    if (value is None or value == "") and name in ENV_FALLBACKS:
        value = os.environ.get(ENV_FALLBACKS[name], DEFAULTS[name])
    return value


class ProvidersSettings:
    """Attribute access to this app's settings; each value read on first use and cached."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(name)
        if name not in self._cache:
            self._cache[name] = user_value(name)
        return self._cache[name]

    def reload(self) -> None:
        self._cache.clear()


providers_settings = ProvidersSettings()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "OPENRESPONSES":
        providers_settings.reload()
