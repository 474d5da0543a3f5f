"""Writes to providers and routing rules, and the checks they pass first; the admin and the
management API both call these (one write path, one set of rules).

The ``check_*`` functions raise :class:`ProviderInputError` naming the offending field, which each
front end turns into its own error shape (a form error, a DRF validation error).
"""

from __future__ import annotations

from typing import Any

from providers_app.models import Provider, RoutingRule, key_destination
from providers_app.registry import ConfigError, adapter_class, fallbacks_of, provider_configs, registry


class ProviderInputError(ValueError):
    """Input a provider or rule may not have; ``field`` names it (None: the object as a whole)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# ---- checks


def check_adapter(value: str) -> str:
    """A built-in family or an importable adapter class."""
    value = (value or "").strip()
    try:
        adapter_class(value)
    except ConfigError as exc:
        raise ProviderInputError("adapter", str(exc)) from None
    return value


def check_headers(value: Any) -> dict[str, str]:
    value = value or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ProviderInputError(
            "headers", 'Headers must be a JSON object of strings, e.g. {"X-Team": "search"}.'
        )
    return value


def check_options(value: Any) -> dict[str, Any]:
    value = value or {}
    if not isinstance(value, dict):
        raise ProviderInputError("options", "Options must be a JSON object.")
    return value


def check_key_variable(value: str) -> str:
    """``api_key_env`` may only name the variables the operator allows, never the server's secrets."""
    from providers_app.secrets import key_variable_allowed, key_variable_error

    value = (value or "").strip()
    if value and not key_variable_allowed(value):
        raise ProviderInputError("api_key_env", key_variable_error(value))
    return value


def check_key_destination(*, provider: Provider, adapter: str, base_url: str, new_key: bool) -> None:
    """A stored key is only sent where it was entered for: moving the provider (adapter or base
    URL) needs the key again, unless the change also replaces or removes it (``new_key``)."""
    stored = provider.pk and provider.api_key_encrypted
    if stored and not new_key and key_destination(adapter, base_url) != provider.api_key_destination:
        raise ProviderInputError(
            "api_key",
            "The adapter or base URL changed: enter the key again (a stored key is only sent "
            "where it was entered for), or remove the stored key.",
        )


def check_key_source(*, api_key: str, api_key_env: str) -> None:
    if api_key and api_key_env:
        raise ProviderInputError(
            "api_key", "Give either a key or the name of an environment variable holding it, not both."
        )


def check_rule_target(*, provider: Provider | None, provider_name: str) -> None:
    """Exactly one target: a database provider, or a provider defined outside the database."""
    if bool(provider) == bool(provider_name):
        raise ProviderInputError(
            None,
            "Choose one provider: a database provider or the name of one from the environment or config file.",
        )
    if provider_name:
        try:
            known = provider_configs()
        except ConfigError as exc:
            raise ProviderInputError(None, str(exc)) from None
        if provider_name not in known:
            raise ProviderInputError(
                "provider_name", f"No provider named {provider_name!r} (known: {', '.join(sorted(known))})."
            )


def check_fallbacks(value: Any) -> list[Any]:
    """A list of ``{"provider": name, "model": optional}`` (or names) of known providers."""
    if not isinstance(value or [], list):
        raise ProviderInputError("fallbacks", 'A list, e.g. [{"provider": "azure", "model": "gpt-4o"}].')
    try:
        fallbacks = fallbacks_of(value, "fallbacks")
        known = set(provider_configs()) | set(Provider.objects.values_list("name", flat=True))
    except ConfigError as exc:
        raise ProviderInputError("fallbacks", str(exc)) from None
    unknown = [name for name, _ in fallbacks if name not in known]
    if unknown:
        raise ProviderInputError("fallbacks", f"No provider named {unknown[0]!r}.")
    return list(value or [])


# ---- writes


def provider_save(*, provider: Provider, api_key: str = "", clear_api_key: bool = False) -> Provider:
    """Save a provider. ``api_key`` is stored encrypted (write-only); empty keeps the stored one,
    unless ``clear_api_key`` or an ``api_key_env`` replaces it."""
    if api_key:
        provider.set_api_key(api_key)
    elif clear_api_key or provider.api_key_env:
        provider.set_api_key("")
    provider.save()
    _routes_changed()
    return provider


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider with its routing rules."""
    provider.delete()
    _routes_changed()


def rule_save(*, rule: RoutingRule) -> RoutingRule:
    rule.save()
    _routes_changed()
    return rule


def rule_delete(*, rule: RoutingRule) -> None:
    rule.delete()
    _routes_changed()


def _routes_changed() -> None:
    """The next request of this process routes with the new rows (the row signals also reset the
    registry after the commit; other processes recheck within PROVIDERS_RECHECK_SECONDS)."""
    registry.reset()
