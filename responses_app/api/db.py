"""Database work of the async API views: on Django's sync thread, with a dead connection healed.

The API's lean ASGI front (``api/asgi.py``) sends no ``request_started``/``request_finished``, so
Django never closes the connection that the shared sync thread holds between requests. After
PostgreSQL restarts, that connection is dead, and every request that touched the database on
that thread failed until the process restarted (an error swallowed on the way, like a key lookup
failing closed, answered 401 instead). Each call here closes the thread's connections that
failed and are no longer usable, so the next call takes a fresh one from the pool.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
T = TypeVar("T")


def heal_connections() -> bool:
    """Close this thread's connections that saw an error and are no longer usable (True if any)."""
    healed = False
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and connection.errors_occurred and not connection.is_usable():
            connection.close()
            healed = True
    return healed


def db_call(func: Callable[P, T], *, reads: bool = False) -> Callable[P, Awaitable[T]]:
    """``sync_to_async(func)`` whose thread's dead connections are closed after the call.

    ``reads``: ``func`` only reads, so when it met a dead connection (the thread's connection
    from before a PostgreSQL restart: the first call after it fails at once) it runs once more on
    a fresh one, instead of answering that one request with an error (or, where the error is
    swallowed on purpose, a key lookup failing closed, with a 401).
    """

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        if reads:
            try:
                result = func(*args, **kwargs)
            except Exception:
                if not heal_connections():
                    raise
            else:
                if not heal_connections():
                    return result
        try:
            return func(*args, **kwargs)
        finally:
            heal_connections()

    return sync_to_async(run)
