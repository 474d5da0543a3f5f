"""Batching sink: events are persisted, then published, in order, coalesced under load.

When the stream is idle an event is flushed at once (no added latency); while a flush is
running or one happened less than ``interval`` ago, further events wait and go out together
in the next batch — several deltas per channel message under load, never reordered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Event = tuple[int, str, str]
Batch = list[Event]


class BatchingSink:
    def __init__(
        self,
        *,
        persist: Callable[[Batch], Awaitable[None]] | None,
        publish: Callable[[Batch], Awaitable[None]],
        interval: float = 0.02,
    ) -> None:
        self._persist = persist
        self._publish = publish
        self.interval = interval
        self.pending: Batch = []
        self._scheduled = False
        self._lock = asyncio.Lock()
        self._last_flush = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._error: BaseException | None = None
        self.last_sequence = -1

    def add(self, sequence_number: int, event_type: str, payload: str) -> None:
        self.pending.append((sequence_number, event_type, payload))
        if self._scheduled:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        delay = self._last_flush + self.interval - loop.time()
        if delay <= 0:
            self._spawn()
        else:
            loop.call_later(delay, self._spawn)

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush_scheduled())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_scheduled(self) -> None:
        async with self._lock:
            self._scheduled = False
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        batch, self.pending = self.pending, []
        if not batch or self._error is not None:
            return
        try:
            if self._persist is not None:
                await self._persist(batch)
            await self._publish(batch)
            self.last_sequence = batch[-1][0]
        except BaseException as exc:  # noqa: BLE001 - surfaced by drain()
            self._error = exc
        finally:
            self._last_flush = asyncio.get_running_loop().time()

    async def drain(self) -> None:
        """Flush everything added so far; re-raise a persist or publish failure."""
        async with self._lock:
            await self._flush_locked()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
