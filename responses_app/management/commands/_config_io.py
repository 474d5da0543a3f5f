"""Config file <-> database for the management commands (a leading underscore: not a command itself).

The file format is the one ``OPENRESPONSES_CONFIG`` reads (see docs/configuration.md):
``{"providers": [...], "routes": [...], "hosted_tools": [...]}``. Clear provider keys are
encrypted on load and never written by the dump.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

PROVIDER_FIELDS = ("adapter", "base_url", "headers", "max_retries", "options")
TIMEOUT_FIELDS = {"connect": "connect_timeout", "first_byte": "first_byte_timeout", "idle": "idle_timeout"}


def _provider_defaults(entry: dict[str, Any]) -> dict[str, Any]:
    timeouts = entry.get("timeouts") or {}
    values: dict[str, Any] = {
        "adapter": entry.get("adapter") or entry["name"],
        "base_url": entry.get("base_url") or "",
        "headers": dict(entry.get("headers") or {}),
        "options": dict(entry.get("options") or {}),
        "max_retries": int(entry.get("max_retries", 2)),
        "api_key_env": entry.get("api_key_env") or "",
        "enabled": bool(entry.get("enabled", True)),
    }
    for short, field in TIMEOUT_FIELDS.items():
        values[field] = float(timeouts.get(short, entry.get(field, {"connect": 10.0}.get(short, 120.0))))
    return values


@transaction.atomic
def config_load(data: dict[str, Any], *, replace_routes: bool = False) -> dict[str, int]:
    """Create or update Provider rows by name and RoutingRule rows by (pattern, target)."""
    from providers_app.models import Provider, RoutingRule, key_destination
    from providers_app.registry import ConfigError, adapter_class, default_provider_configs
    from providers_app.secrets import encrypt

    counts = {
        "providers_created": 0,
        "providers_updated": 0,
        "routes_created": 0,
        "routes_updated": 0,
        "routes_deleted": 0,
    }
    for entry in data.get("providers") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ConfigError("every provider needs a 'name'")
        values = _provider_defaults(entry)
        adapter_class(values["adapter"])  # fail before writing anything unusable
        clear_key = entry.get("api_key") or ""
        if values["api_key_env"] or clear_key:
            values["api_key_encrypted"] = (
                encrypt(clear_key) if clear_key and not values["api_key_env"] else ""
            )
            values["api_key_last4"] = clear_key[-4:] if clear_key and not values["api_key_env"] else ""
            values["api_key_destination"] = (
                key_destination(values["adapter"], values["base_url"])
                if clear_key and not values["api_key_env"]
                else ""
            )
        _, created = Provider.objects.update_or_create(name=entry["name"], defaults=values)
        counts["providers_created" if created else "providers_updated"] += 1

    if replace_routes:
        counts["routes_deleted"], _ = RoutingRule.objects.all().delete()
    known = set(default_provider_configs()) | {e["name"] for e in data.get("providers") or []}
    known |= set(Provider.objects.values_list("name", flat=True))
    for index, entry in enumerate(data.get("routes") or []):
        target = entry.get("provider")
        if not entry.get("pattern") or target not in known:
            raise ConfigError(f"Route {entry.get('pattern')!r} names an unknown provider {target!r}")
        row = Provider.objects.filter(name=target).first()
        lookup = (
            {"pattern": entry["pattern"], "provider": row}
            if row
            else {"pattern": entry["pattern"], "provider_name": target}
        )
        values = {
            "upstream_model": entry.get("model") or "",
            "order": int(entry.get("order", (index + 1) * 10)),
            "enabled": bool(entry.get("enabled", True)),
        }
        values["fallbacks"] = list(entry.get("fallbacks") or [])
        existing = RoutingRule.objects.filter(**lookup).first()
        if existing is None:
            RoutingRule.objects.create(**lookup, **values)
            counts["routes_created"] += 1
        else:
            for key, value in values.items():
                setattr(existing, key, value)
            existing.save()
            counts["routes_updated"] += 1
    return counts


SECRET_HEADER_WORDS = ("authorization", "key", "token", "secret", "cookie")


def redact_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """Header values that may hold credentials are never dumped."""
    return {
        k: "<redacted>" if any(w in k.lower() for w in SECRET_HEADER_WORDS) else v
        for k, v in (headers or {}).items()
    }


def _redacted(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k != "api_key"}
    if "headers" in out:
        out["headers"] = redact_headers(out["headers"])
    if entry.get("api_key"):
        out["api_key_stored"] = True
    return out


def database_config() -> dict[str, Any]:
    from providers_app.models import Provider, RoutingRule

    providers = []
    for row in Provider.objects.all():
        entry: dict[str, Any] = {"name": row.name, "adapter": row.adapter}
        if row.base_url:
            entry["base_url"] = row.base_url
        if row.api_key_env:
            entry["api_key_env"] = row.api_key_env
        elif row.api_key_encrypted:
            entry["api_key_stored"] = True
        entry.update(
            {
                "headers": redact_headers(row.headers),
                "options": row.options or {},
                "max_retries": row.max_retries,
                "timeouts": {
                    "connect": row.connect_timeout,
                    "first_byte": row.first_byte_timeout,
                    "idle": row.idle_timeout,
                },
                "enabled": row.enabled,
            }
        )
        providers.append(entry)
    routes = []
    for rule in RoutingRule.objects.select_related("provider"):
        route: dict[str, Any] = {"pattern": rule.pattern, "provider": rule.target_name}
        if rule.upstream_model:
            route["model"] = rule.upstream_model
        if rule.fallbacks:
            route["fallbacks"] = rule.fallbacks
        route.update({"order": rule.order, "enabled": rule.enabled})
        routes.append(route)
    return {"providers": providers, "routes": routes}


def file_config(path: str) -> dict[str, Any]:
    from providers_app.registry import load_config_file

    data = load_config_file(path)
    return {
        "providers": [_redacted(e) for e in data.get("providers") or [] if isinstance(e, dict)],
        "routes": list(data.get("routes") or []),
        "hosted_tools": list(data.get("hosted_tools") or []),
    }
