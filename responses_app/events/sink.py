"""Batching sink: events are persisted, then published, in order, coalesced under load.

When the stream is idle an event is flushed at once (no added latency); while a flush is
running or one happened less than ``interval`` ago, further events wait and go out together
in the next batch — several deltas per channel message under load, never reordered.

The store is the truth: a batch that cannot be persisted stays pending and is retried (later
events queue behind it, so the stored log never has a hole); a batch that cannot be published
(the channel layer is down) is only logged — readers notice the silence or the gap and catch
up from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Event = tuple[int, str, str]
Batch = list[Event]
PERSIST_RETRY_SECONDS = 0.5
PUBLISH_WARN_EVERY = 10.0


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
        self._publish_warned = 0.0
        self.last_sequence = -1
        self.publish_failures = 0

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
            if not await self._flush_locked() and self.pending:
                # The store refused the batch: try again a little later (drain() also retries).
                self._scheduled = True
                asyncio.get_running_loop().call_later(PERSIST_RETRY_SECONDS, self._spawn)

    async def _flush_locked(self) -> bool:
        """Persist then publish everything pending; False (batch kept) when persisting failed."""
        batch = self.pending[:]
        if not batch:
            return True
        try:
            if self._persist is not None:
                await self._persist(batch)
        except Exception as exc:  # noqa: BLE001 - kept pending, surfaced by drain()
            self._error = exc
            return False
        finally:
            self._last_flush = asyncio.get_running_loop().time()
        self.pending = self.pending[len(batch):]
        self._error = None
        self.last_sequence = batch[-1][0]
        try:
            await self._publish(batch)
        except Exception:  # noqa: BLE001 - readers catch up from the store
            self.publish_failures += 1
            now = time.monotonic()
            if now - self._publish_warned > PUBLISH_WARN_EVERY:
                self._publish_warned = now
                logger.warning("publishing events failed; readers will catch up from the store", exc_info=True)
        return True

    async def drain(self, attempts: int = 5) -> None:
        """Persist and publish everything added so far; re-raise a persist failure after retries."""
        for attempt in range(attempts):
            async with self._lock:
                if await self._flush_locked():
                    return
            if attempt < attempts - 1:
                await asyncio.sleep(PERSIST_RETRY_SECONDS * (attempt + 1))
        error, self._error = self._error, None
        if error is not None:
            raise error
