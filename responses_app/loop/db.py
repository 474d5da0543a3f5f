"""Database work for loops, off the event loop: dedicated threads per process.

Event rows from every running loop are written together (one INSERT for many streams), so
the store keeps up with hundreds of concurrent streams. On SQLite one thread does all the
writing (one writer, no lock waits); on PostgreSQL a few threads overlap their round trips, so
the starts and ends of many loops never queue behind each other.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, connections
from django.db.utils import InterfaceError, OperationalError

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


def _loop_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        threads = 1 if connections["default"].vendor == "sqlite" else CONCURRENT_DB_THREADS
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


def _insert_events(rows: list[tuple[str, int, str, str]]) -> None:
    from django.db import connection

    from ..models import ResponseEvent

    now = time.time()
    if connection.vendor == "postgresql":
        # One statement for the whole batch, its rows as one JSON parameter (encoded in C: no
        # per-element quoting by the driver, no model instance per row).
        table = connection.ops.quote_name(ResponseEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (response_id, sequence_number, type, payload, created_at) "
                "SELECT e->>0, (e->>1)::int, e->>2, e->>3, %s FROM json_array_elements(%s::json) AS e "
                "ON CONFLICT DO NOTHING",
                [now, json.dumps(rows, ensure_ascii=False, separators=(",", ":"))],
            )
        return
    if connection.vendor == "sqlite":
        # One statement (one step of the SQLite engine) for the whole batch: executemany steps
        # once per row and releases and takes the GIL at each step, which starves the event loop.
        table = connection.ops.quote_name(ResponseEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT OR IGNORE INTO {table} (response_id, sequence_number, type, payload, created_at) "
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), %s FROM json_each(%s)",
                [now, json.dumps(rows, ensure_ascii=False, separators=(",", ":"))],
            )
        return
    ResponseEvent.objects.bulk_create(
        [
            ResponseEvent(response_id=rid, sequence_number=seq, type=etype, payload=payload, created_at=now)
            for rid, seq, etype, payload in rows
        ],
        ignore_conflicts=True,
    )


class EventWriter:
    """Collects event batches from all loops of one event loop and writes them together."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, list, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def write(self, response_id: str, batch: list) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((response_id, batch, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        await future

    async def _run(self) -> None:
        while self._pending:
            work, self._pending = self._pending, []
            rows = [(rid, seq, etype, payload) for rid, batch, _ in work for seq, etype, payload in batch]
            try:
                await run_db(_insert_events, rows)
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                for _, _, future in work:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in work:
                if not future.done():
                    future.set_result(None)


_writers: dict[int, EventWriter] = {}


def event_writer() -> EventWriter:
    loop = asyncio.get_running_loop()
    writer = _writers.get(id(loop))
    if writer is None:
        writer = _writers[id(loop)] = EventWriter()
    return writer
