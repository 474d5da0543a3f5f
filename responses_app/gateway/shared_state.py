"""Where state shared by every process lives: Redis in the production topology, else this process.

Rate limits, concurrency slots and metrics use it. ``redis_url()`` is ``OPENRESPONSES["REDIS_URL"]``,
else the site's ``REDIS_URL`` setting or environment variable; empty means in-process state (the
embedded default, where the loops run in the serving process anyway).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from responses_app.conf import openresponses_settings

_lock = threading.Lock()
_sync_clients: dict[str, Any] = {}
_async_clients: dict[tuple[str, int], Any] = {}


def redis_url() -> str:
    value = openresponses_settings.REDIS_URL
    if value is None:
        from django.conf import settings

        value = getattr(settings, "REDIS_URL", None) or os.environ.get("REDIS_URL", "")
    return str(value or "")


def key_prefix() -> str:
    """Prefix of every Redis key we write (several deployments or test runs may share one Redis)."""
    return str(openresponses_settings.REDIS_PREFIX or "openresponses")


def sync_redis() -> Any:
    """A process-wide synchronous client (thread-safe connection pool), or None without Redis."""
    url = redis_url()
    if not url:
        return None
    client = _sync_clients.get(url)
    if client is None:
        import redis

        with _lock:
            client = _sync_clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
                )
                _sync_clients[url] = client
    return client


def async_redis() -> Any:
    """An asyncio client for the running event loop (clients are bound to one loop), or None."""
    url = redis_url()
    if not url:
        return None
    slot = (url, id(asyncio.get_running_loop()))
    client = _async_clients.get(slot)
    if client is None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        _async_clients[slot] = client
    return client


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in {"OPENRESPONSES", "REDIS_URL"}:
        _sync_clients.clear()
        _async_clients.clear()
