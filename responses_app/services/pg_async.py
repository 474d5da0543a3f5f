"""PostgreSQL from the event loop itself: psycopg's async connections, one small pool per event loop.

The hot writes go out as single statements on these connections, in the event loop that needs
them: the create (the response and its input items) in the serving process, and the loop's start,
event batches and finish (``loop/supervision/pg.py``) wherever loops run. No thread hop, no
transaction round trips (autocommit: a statement is its own transaction, committed when it
returns), and statements prepared once per connection. The connection settings are Django's own
(``DATABASES["default"]``, its ``OPTIONS`` and ``pool`` sizes), so a test database or a changed
setting is followed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver

T = TypeVar("T")
#: Connections a pool keeps open even when idle (a new connection costs milliseconds, which the
#: first event of a stream would wait for), and at most unless the site's pool ``max_size`` is larger:
#: event INSERTs in flight plus starts, finishes and creates meanwhile.
MIN_SIZE = 3
MAX_SIZE = 6
#: How ``pg_stat_activity`` names these connections, and those of the threads' pool.
APPLICATION_NAME = "openresponses-async"
THREADS_APPLICATION_NAME = "openresponses-threads"
_pools: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
_vendors: dict[str, str] = {}
#: Connections of the threads' pool (:func:`thread_pool`) at most. Its statements are one round
#: trip each (a task's start): a few connections serve dozens of threads, and a burst of starts
#: does not open a connection per thread (each a PostgreSQL backend kept until it idles out).
THREAD_POOL_MAX_SIZE = 4
#: The process's pool of synchronous connections, for threads (:func:`run_sync`).
_thread_pool: Any = None
_thread_pool_lock = threading.Lock()


def vendor(alias: str = "default") -> str:
    """The ``vendor`` of database ``alias`` ("postgresql", "sqlite"...), without touching ``connections[alias]``.

    On an event loop Django keeps one connection object per async context (``connections`` is
    thread-critical: a context variable in async code), so ``connections[alias]`` there builds a
    ``DatabaseWrapper`` for every request task, kept as long as the task (a stream) lives. This
    reads it from a throwaway wrapper, once per alias (again after ``DATABASES`` changes).
    """
    found = _vendors.get(alias)
    if found is None:
        wrapper = connections.create_connection(alias)
        found = _vendors[alias] = wrapper.vendor
    return found


def available(alias: str = "default") -> bool:
    """True when ``alias`` is PostgreSQL on psycopg 3 and Django is not inside a transaction there
    (statements on another connection would not see its uncommitted rows, nor roll back with it).

    Only connection objects this context has already made are looked at (a context that never
    opened one is in no transaction), so no ``DatabaseWrapper`` is made per request task."""
    if vendor(alias) != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    in_transaction = any(
        made.alias == alias and made.in_atomic_block for made in connections.all(initialized_only=True)
    )
    return is_psycopg3 and not in_transaction


def connection_params(alias: str = "default") -> tuple[dict[str, Any], dict[str, Any]]:
    """psycopg ``connect()`` keyword arguments for ``alias`` (Django's, minus what only its sync
    connections use: the cursor class, its adapters context and its "never prepare" threshold),
    and the pool sizes of its ``OPTIONS["pool"]``."""
    connection = connections[alias]
    params = dict(connection.get_connection_params())
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    params.setdefault("application_name", APPLICATION_NAME)
    pool_option = connection.settings_dict.get("OPTIONS", {}).get("pool")
    sizes = dict(pool_option) if isinstance(pool_option, dict) else {}
    return params, sizes


def connection_kwargs() -> dict[str, Any]:
    """What each pooled connection is opened with (the default database, autocommit)."""
    params, _ = connection_params()
    return {**params, "autocommit": True}


async def _open_pool(kwargs: dict[str, Any]) -> Any:
    from psycopg_pool import AsyncConnectionPool

    _, sizes = connection_params()
    max_size = max(MAX_SIZE, int(sizes.get("max_size") or 0))
    created = AsyncConnectionPool(
        kwargs=kwargs,
        min_size=MIN_SIZE,
        max_size=max_size,
        timeout=float(sizes.get("timeout") or 30),
        open=False,
        name=APPLICATION_NAME,
    )
    await created.open(wait=True, timeout=10.0)
    return created


async def pool() -> Any:
    """This event loop's connection pool (opened on first use)."""
    loop = asyncio.get_running_loop()
    opening = _pools.get(loop)
    if opening is not None and opening.done() and not opening.cancelled() and opening.exception() is None:
        return opening.result()
    if opening is None or (opening.done() and opening.exception() is not None):
        for gone in [other for other in _pools if other.is_closed()]:
            del _pools[gone]  # (its connections close as they are collected)
        opening = _pools[loop] = loop.create_task(_open_pool(connection_kwargs()))
    return await asyncio.shield(opening)


async def close_pool() -> None:
    """Close this event loop's pool, if it has one (tests; a process shutting down)."""
    opening = _pools.pop(asyncio.get_running_loop(), None)
    if opening is not None and opening.done() and opening.exception() is None:
        await opening.result().close()


def cursor_of(conn: Any) -> Any:
    """The connection's own cursor, made on its first statement and kept with it: a statement
    then builds no cursor (nor its adapters' transformer), a sixth of a trivial statement's CPU.
    (``cursor.execute`` returns the cursor, as ``connection.execute`` returns a new one.)"""
    cursor = getattr(conn, "_openresponses_cursor", None)
    if cursor is None or cursor.closed:
        cursor = conn._openresponses_cursor = conn.cursor()
    return cursor


async def run(work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(cursor)`` on a pooled connection's cursor (:func:`cursor_of`); once more on a fresh
    connection if the first dropped.

    The connection is taken with ``getconn`` and given back with ``putconn`` (which rolls back,
    or closes, one left in a transaction or mid-statement), not with ``pool.connection()``: that
    one also enters the connection's own context, whose exit "commits" an autocommit connection
    (a lock and a wait for nothing), a tenth of a trivial statement's CPU.
    """
    import psycopg

    connections_pool = await pool()
    for attempt in range(2):
        conn = await connections_pool.getconn()
        try:
            return await work(cursor_of(conn))
        except psycopg.OperationalError:
            if attempt:
                raise
        finally:
            await connections_pool.putconn(conn)
        await connections_pool.check()  # drops the broken connections, opens new ones
    raise AssertionError("unreachable")


def thread_pool() -> Any:
    """The process's pool of synchronous connections (opened on first use), shared by its threads.

    The same connections as an event loop's pool (:func:`connection_kwargs`: autocommit, no
    per-checkout health check), for code on a thread: a Celery task's start. Django's own
    connection costs a pooled checkout with a health-check round trip, its session set-up and a
    return to the pool per task."""
    global _thread_pool
    found = _thread_pool
    if found is not None and not found.closed:
        return found
    with _thread_pool_lock:
        if _thread_pool is None or _thread_pool.closed:
            from psycopg_pool import ConnectionPool

            _, sizes = connection_params()
            created = ConnectionPool(
                kwargs={**connection_kwargs(), "application_name": THREADS_APPLICATION_NAME},
                min_size=1,
                max_size=THREAD_POOL_MAX_SIZE,
                timeout=float(sizes.get("timeout") or 30),
                open=False,
                name=THREADS_APPLICATION_NAME,
            )
            created.open(wait=True, timeout=10.0)
            _thread_pool = created
        return _thread_pool


def close_thread_pool() -> None:
    """Close the threads' pool, if open (tests; a process shutting down)."""
    global _thread_pool
    with _thread_pool_lock:
        found, _thread_pool = _thread_pool, None
    if found is not None:
        found.close()


def run_sync(work: Callable[[Any], T]) -> T:
    """:func:`run` for the calling thread: ``work(cursor)`` on a connection of :func:`thread_pool`,
    once more on a fresh connection if the first dropped."""
    import psycopg

    connections_pool = thread_pool()
    for attempt in range(2):
        conn = connections_pool.getconn()
        try:
            return work(cursor_of(conn))
        except psycopg.OperationalError:
            if attempt:
                raise
        finally:
            connections_pool.putconn(conn)
        connections_pool.check()  # drops the broken connections, opens new ones
    raise AssertionError("unreachable")


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        _pools.clear()
        _vendors.clear()
        close_thread_pool()
