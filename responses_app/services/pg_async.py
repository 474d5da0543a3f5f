"""PostgreSQL from the event loop itself: psycopg's async connections, one small pool per event loop.

The serving path's hot write (a create: the response and its input items) goes out as one
statement on one of these connections, in the event loop that serves the request: no thread hop,
no transaction round trips (autocommit: the statement is its own transaction, committed when it
returns). The connection settings are Django's own (``DATABASES["default"]``, its ``OPTIONS`` and
``pool`` sizes), so a test database or a changed setting is followed.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver

#: Connections a pool keeps open at least (it grows to the site's pool ``max_size``).
MIN_SIZE = 1
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def available(alias: str = "default") -> bool:
    """True when ``alias`` is PostgreSQL on psycopg 3 and Django is not inside a transaction there
    (statements on another connection would not see its uncommitted rows, nor roll back with it)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3 and not connection.in_atomic_block


def connection_params(alias: str = "default") -> tuple[dict[str, Any], dict[str, Any]]:
    """psycopg ``connect()`` keyword arguments for ``alias`` (Django's, minus its sync cursor
    class), and the pool sizes of its ``OPTIONS["pool"]``."""
    connection = connections[alias]
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    sizes = dict(pool) if isinstance(pool, dict) else {}
    return params, sizes


async def pool(alias: str = "default") -> Any:
    """The open async pool of this event loop for ``alias`` (opened on first use)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is not None:
        return found
    from psycopg_pool import AsyncConnectionPool

    params, sizes = connection_params(alias)
    max_size = int(sizes.get("max_size") or 10)
    created = AsyncConnectionPool(
        kwargs={**params, "autocommit": True},
        min_size=min(MIN_SIZE, max_size),
        max_size=max_size,
        timeout=float(sizes.get("timeout") or 30),
        open=False,
        name="openresponses-async",
    )
    _pools[loop] = created
    await created.open(wait=False)
    return created


async def close_all() -> None:
    """Close the pool of the running event loop (tests; a process shutting down)."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        _pools.clear()
