"""Database work for loops, off the event loop: dedicated threads per process.

Event rows from every running loop are written together (one INSERT for many streams), so
the store keeps up with hundreds of concurrent streams. On SQLite one thread does all the
writing (one writer, no lock waits); on PostgreSQL a few threads overlap their round trips, so
the starts and ends of many loops never queue behind each other. (On PostgreSQL the hot writes —
a loop's start, its event batches and its finish — run on the event loop's own async connections
instead, see :mod:`responses_app.loop.supervision.pg`; these threads keep what those leave to the ORM.)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, connections
from django.db.utils import InterfaceError, OperationalError

from responses_app.loop.supervision import pg
from responses_app.services.responses import events_insert

T = TypeVar("T")
#: Loop-database threads per process on a database that takes concurrent writers (PostgreSQL).
CONCURRENT_DB_THREADS = 4
_executor: ThreadPoolExecutor | None = None
# Heartbeats, cancel polling and the reaper use a thread (and connection) of their own, so a
# backlog of event writes under heavy load never delays the signs of life of running loops.
_control_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openresponses-db-control")


def _call(func: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return func(*args, **kwargs)
    except (OperationalError, InterfaceError):
        # A dropped connection (database restarted): reconnect once and retry.
        for conn in connections.all():
            conn.close_if_unusable_or_obsolete()
            if conn.connection is not None and not conn.is_usable():
                conn.close()
        close_old_connections()
        return func(*args, **kwargs)


@functools.cache
def _single_writer() -> bool:
    """True on SQLite: one writer at a time (every write goes through one thread)."""
    return connections["default"].vendor == "sqlite"


def _loop_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        threads = 1 if _single_writer() else CONCURRENT_DB_THREADS
        _executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="openresponses-db")
    return _executor


async def run_db(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func`` on a loop-database thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(
        _executor or _loop_executor(), functools.partial(_call, func, args, kwargs)
    )


async def run_control_db(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Like :func:`run_db`, on the control thread (heartbeats, cancel polling, reaping)."""
    return await asyncio.get_running_loop().run_in_executor(
        _control_executor, functools.partial(_call, func, args, kwargs)
    )


class EventWriter:
    """Collects event batches from all loops of one event loop and writes them together.

    Batches that arrive while a write is under way go into the next INSERT; on a database that
    takes concurrent writers, up to :data:`CONCURRENT_EVENT_WRITES` INSERTs run at once, so a
    batch never waits behind more than a moment of queueing (the batches of one response are
    never in flight together: its sink persists one batch at a time).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, list, asyncio.Future]] = []
        self._running = 0
        self._tasks: set[asyncio.Task] = set()

    async def write(self, response_id: str, batch: list) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((response_id, batch, future))
        if self._running < (1 if _single_writer() else CONCURRENT_EVENT_WRITES):
            self._running += 1
            task = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await future

    async def _run(self) -> None:
        try:
            while self._pending:
                work, self._pending = self._pending, []
                rows = [(rid, seq, etype, payload) for rid, batch, _ in work for seq, etype, payload in batch]
                try:
                    if pg.enabled():  # prepared, on this event loop's own connections
                        await pg.insert_events(rows)
                    else:
                        await run_db(events_insert, rows)
                except Exception as exc:  # noqa: BLE001 - handed to every waiter
                    for _, _, future in work:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, _, future in work:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._running -= 1


#: INSERTs of events in flight at once per process, where the database takes concurrent writers.
CONCURRENT_EVENT_WRITES = 3


_writers: dict[int, EventWriter] = {}


def event_writer() -> EventWriter:
    loop = asyncio.get_running_loop()
    writer = _writers.get(id(loop))
    if writer is None:
        writer = _writers[id(loop)] = EventWriter()
    return writer
