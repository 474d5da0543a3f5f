"""OpenResponses settings: one ``OPENRESPONSES`` dict with defaults, read lazily, reset on change.

The provider keys of the dict (``CONFIG_FILE``, ``PROVIDERS``, ``ROUTES``,
``PROVIDERS_RECHECK_SECONDS``, ``MOCK_TOKEN_DELAY``) belong to ``providers_app.conf``, which holds
their defaults; they are read through it here (one source of truth, dependencies one way).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from providers_app import conf as providers_conf

DEFAULTS: dict[str, Any] = {
    # How loops are run: "inline" (in the serving process) or "celery" (worker processes).
    "DISPATCH": "inline",
    # Dotted paths of the host site's Django REST framework authentication classes (e.g.
    # "rest_framework.authentication.TokenAuthentication"): a user they authenticate calls the
    # Responses API as owner "user:<pk>"; others go on to AUTHENTICATE (client keys). [] : unused.
    "DRF_AUTHENTICATION_CLASSES": [],
    # Comma-separated client keys accepted in ``Authorization: Bearer``; also OPENRESPONSES_API_KEYS.
    "API_KEYS": None,
    # Dotted path of the authentication hook: ``callable(request) -> ClientIdentity | None``.
    "AUTHENTICATE": "responses_app.gateway.auth.authenticate_default",
    # Dotted paths of hosted tools: plain functions with type hints and a docstring.
    "HOSTED_TOOLS": [],
    # Dotted paths of loop middleware classes with before_sample / after_sample hooks.
    "MIDDLEWARE": [],
    # The loop stops with ``incomplete`` after this many samples.
    "MAX_LOOP_ITERATIONS": 10,
    # Seconds a hosted tool may run before its call is answered with a timeout error.
    "TOOL_TIMEOUT": 30.0,
    # Seconds between SSE keep-alive comments while the upstream is silent.
    "KEEPALIVE_SECONDS": 15.0,
    # Seconds a stream (SSE) waits for a client that reads nothing before dropping it (None: 30);
    # while it waits, what is buffered for that client stays bounded (one transport buffer and one
    # chunk). Also OPENRESPONSES_STREAM_WRITE_TIMEOUT.
    "STREAM_WRITE_TIMEOUT": None,
    # When True a client dropping a non-background stream cancels the response.
    "DISCONNECT_CANCELS": False,
    # Seconds over which output events are coalesced into one persist-and-publish batch (the first
    # output leaves at once; longer with more than 25 streams per process, at most 0.1).
    "EVENT_FLUSH_INTERVAL": 0.05,
    # Seconds without a heartbeat after which an unfinished response counts as orphaned.
    "ORPHAN_AFTER_SECONDS": 30.0,
    # Times a response whose worker was lost is taken over by another before it fails
    # (``worker_lost_repeatedly``; 0: never taken over, it fails with ``worker_lost``).
    "MAX_TAKEOVERS": 3,
    # Seconds between loop heartbeats.
    "HEARTBEAT_SECONDS": 5.0,
    # Model that writes compaction summaries (None: the request's model); also OPENRESPONSES_COMPACTION_MODEL.
    "COMPACTION_MODEL": None,
    # Context windows in tokens by model-name glob, over built-in defaults: a dict or "glob=n,glob=n";
    # also OPENRESPONSES_MODEL_CONTEXT_TOKENS.
    "MODEL_CONTEXT_TOKENS": None,
    # Redis for rate limits, concurrency slots and metrics shared by every process (None: the site's
    # REDIS_URL setting or environment variable; "" forces in-process state).
    "REDIS_URL": None,
    # Prefix of every Redis key written for limits and metrics; also OPENRESPONSES_REDIS_PREFIX.
    "REDIS_PREFIX": None,
    # Limits for callers whose key sets none (static keys, host-site users, anonymous):
    # {"rpm": n, "tpm": n, "max_concurrent": n}; missing or None: unlimited.
    "DEFAULT_LIMITS": {},
    # Unfinished responses at once over all keys (None: no limit);
    # also OPENRESPONSES_MAX_CONCURRENT_RESPONSES.
    "MAX_CONCURRENT_RESPONSES": None,
    # Prices in US dollars per million tokens by model-name glob, over the built-in table:
    # {"glob": {"input": x, "cached_input": x, "output": x, "reasoning": x}}.
    "PRICES": None,
    # Days after which finished responses are deleted (None: kept; a key's own setting wins);
    # also OPENRESPONSES_RETENTION_DAYS.
    "RETENTION_DAYS": None,
    # Seconds after which finished store:false responses are deleted (they serve only WebSocket
    # continuation); never less than an hour.
    "UNSTORED_RETENTION_SECONDS": 3600,
    # Bearer token that Prometheus sends to /metrics (None: only sessions of staff users with the
    # responses_app.view_metrics permission, which superusers have);
    # also OPENRESPONSES_METRICS_TOKEN.
    "METRICS_TOKEN": None,
    # True: request fields a route's provider cannot honour are dropped instead of refused with
    # 400 unsupported_parameter (LiteLLM's drop_params; per provider: options.drop_unsupported_params);
    # also OPENRESPONSES_DROP_UNSUPPORTED_PARAMS.
    "DROP_UNSUPPORTED_PARAMS": None,
    # Origins a browser's WebSocket may come from (Channels' patterns: "https://app.example.com",
    # ".example.com", "*"); None: the site's ALLOWED_HOSTS. Connections without an Origin header
    # (SDKs, curl) are not browsers and are accepted; also OPENRESPONSES_ALLOWED_ORIGINS.
    "ALLOWED_ORIGINS": None,
    # Distinct model names (besides those the routes spell out) and upstream error codes shown as
    # /metrics labels; later ones are counted as "other" (clients choose model names).
    "METRICS_MAX_LABELS": 100,
    # True: request logs include prompts (never on by default); also OPENRESPONSES_LOG_PROMPTS.
    "LOG_PROMPTS": None,
    # URL patterns of MCP servers the operator trusts on non-public addresses (loopback, private
    # networks); other MCP URLs must resolve to public addresses. None: none trusted;
    # also OPENRESPONSES_MCP_ALLOWED_URLS (comma-separated).
    "MCP_ALLOWED_URLS": None,
}

ENV_FALLBACKS = {
    "API_KEYS": "OPENRESPONSES_API_KEYS",
    "COMPACTION_MODEL": "OPENRESPONSES_COMPACTION_MODEL",
    "MODEL_CONTEXT_TOKENS": "OPENRESPONSES_MODEL_CONTEXT_TOKENS",
    "REDIS_PREFIX": "OPENRESPONSES_REDIS_PREFIX",
    "MAX_CONCURRENT_RESPONSES": "OPENRESPONSES_MAX_CONCURRENT_RESPONSES",
    "RETENTION_DAYS": "OPENRESPONSES_RETENTION_DAYS",
    "METRICS_TOKEN": "OPENRESPONSES_METRICS_TOKEN",
    "LOG_PROMPTS": "OPENRESPONSES_LOG_PROMPTS",
    "MCP_ALLOWED_URLS": "OPENRESPONSES_MCP_ALLOWED_URLS",
    "DROP_UNSUPPORTED_PARAMS": "OPENRESPONSES_DROP_UNSUPPORTED_PARAMS",
    "ALLOWED_ORIGINS": "OPENRESPONSES_ALLOWED_ORIGINS",
    "STREAM_WRITE_TIMEOUT": "OPENRESPONSES_STREAM_WRITE_TIMEOUT",
}
IMPORT_STRINGS = {"AUTHENTICATE"}


class OpenResponsesSettings:
    """Attribute access to the merged settings; values are read on first use, not at import."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name in providers_conf.DEFAULTS:
            return getattr(providers_conf.providers_settings, name)
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(name)
        if name not in self._cache:
            from django.conf import settings

            user = getattr(settings, "OPENRESPONSES", {}) or {}
            value = user.get(name, DEFAULTS[name])
            if (value is None or value == "") and name in ENV_FALLBACKS:
                value = os.environ.get(ENV_FALLBACKS[name], DEFAULTS[name])
            if name in IMPORT_STRINGS and isinstance(value, str):
                value = import_string(value)
            self._cache[name] = value
            self.__dict__[name] = value  # later reads are plain attribute reads (hot paths)
        return self._cache[name]

    def reload(self) -> None:
        for name in self._cache:
            self.__dict__.pop(name, None)
        self._cache.clear()


openresponses_settings = OpenResponsesSettings()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "OPENRESPONSES":
        openresponses_settings.reload()
