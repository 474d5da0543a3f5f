"""Batching sink: events are published promptly and persisted right behind, in order.

(That is ``publish_first``, for loops that run in the serving process: a crash there takes
the loop and its readers down together. Loops in worker processes use ``publish_first=False``:
every batch is stored before it is published, so a reader on another machine can never have
seen an event that a crash lost — the reaper's terminal events then follow the stored log.)

Publishing does not wait for the store: the first token leaves without a database round trip,
and a streaming delta costs one publish. Persistence runs in the background in batches (the
writer groups the batches of every loop in the process into one INSERT). Readers never lose an
event for it: a reader that sees a gap, or silence, reads the store and waits for it to fill the
gap (see ``reader.follow``). ``drain()`` persists everything before it returns, and the loop
drains before it publishes a terminal event — so a client that has seen ``response.completed``
finds the whole log and the final state stored.

Coalescing: when the stream is idle an event is published at once (no added latency), and so
is the first output of a response; its lifecycle events (``response.created``,
``response.in_progress``) wait for it, at most ``lifecycle_hold`` seconds, when batches are stored
before they are published (a worker's loop): they leave in the first output's message, stored
by the same INSERT, instead of costing a round trip to the store and a channel message of their
own that the first token could have to wait behind; while a publish is under way or an output publish happened
less than ``interval`` ago, further events wait and go out together — several events per
channel message under load, never reordered. A stored-first sink's waiting batch leaves on a
tick common to the process's sinks (:func:`aligned`, at most a quarter interval later), so the
batches of many streams share one INSERT and one pipelined publish. A batch the store
refuses stays queued and is retried, so the stored log never has a hole.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from responses_app.states import TERMINAL_EVENT_TYPES

logger = logging.getLogger(__name__)

T = TypeVar("T")
Event = tuple[int, str, str]
Batch = list[Event]
PERSIST_RETRY_SECONDS = 0.5
PERSIST_DELAY_SECONDS = 0.05
PUBLISH_WARN_EVERY = 10.0
#: How long a stored-first sink holds a response's lifecycle events for its first output.
LIFECYCLE_HOLD_SECONDS = 0.25
LIFECYCLE_TYPES = frozenset({"response.created", "response.queued", "response.in_progress"})


#: A stored-first sink's next batch waits for the next tick of a grid of this fraction of the
#: interval, common to every sink of the process: the batches of many streams then come due in
#: the same turn of the event loop and go to the store in one INSERT and to the channel layer in
#: one pipelined round trip (``EventWriter``, ``bus._Publisher``), instead of a round trip each.
ALIGN_FRACTION = 0.25


def aligned(when: float, interval: float) -> float:
    """``when`` moved on to the next tick of the grid of ``interval * ALIGN_FRACTION`` seconds."""
    tick = interval * ALIGN_FRACTION
    return math.ceil(when / tick) * tick if tick > 0 else when


class _Lock(asyncio.Lock):
    """An ``asyncio.Lock`` that lets go of its waiters' deque once nobody waits.

    A plain lock makes the deque at its first contention and keeps it for its life: a 64-slot
    block, ~760 bytes, in each of a sink's two locks for as long as its stream is open."""

    def release(self) -> None:
        super().release()
        if self._waiters is not None and not self._waiters:
            self._waiters = None


class BatchingSink:
    def __init__(
        self,
        *,
        persist: Callable[[Batch], Awaitable[None]] | None,
        publish: Callable[[Batch], Awaitable[None]],
        interval: float | Callable[[], float] = 0.02,
        publish_first: bool = True,
        lifecycle_hold: float = LIFECYCLE_HOLD_SECONDS,
    ) -> None:
        self._persist = persist
        self.publish_first = publish_first
        self._publish = publish
        self._interval = interval
        self.to_publish: Batch = []
        self.to_persist: Batch = []
        self._held: Batch = []
        self._holding = False
        self._coalescing = False
        self._scheduled = False
        self._publish_lock = _Lock()
        self._last_publish = 0.0
        self._tasks: set[asyncio.Task] | None = None  # (made when first needed: an empty set is 216 bytes)
        self._persist_task: asyncio.Task | None = None
        self._persist_lock = _Lock()
        self._persist_timer = False
        self._error: BaseException | None = None
        self._publish_warned = 0.0
        self.publish_failures = 0
        # Stored first: lifecycle events wait for the first output (see the module docstring).
        self._lifecycle_hold = lifecycle_hold if persist is not None and not publish_first else 0.0
        self._seen_output = False
        self._hold_timer: asyncio.TimerHandle | None = None

    @property
    def interval(self) -> float:
        return self._interval() if callable(self._interval) else self._interval

    def add(self, sequence_number: int, event_type: str, payload: str) -> None:
        event = (sequence_number, event_type, payload)
        if self._persist is not None:
            self.to_persist.append(event)
            if self._holding or event_type in TERMINAL_EVENT_TYPES:
                # Held back: published by drain(), once it and everything before it is stored.
                self._held.append(event)
                return
        self.to_publish.append(event)
        if not self._seen_output and event_type not in LIFECYCLE_TYPES:
            self._seen_output = True
            if self._hold_timer is not None:  # the held lifecycle events leave with it, now
                self._hold_timer.cancel()
                self._hold_timer = None
                self._spawn()
                return
        if self._scheduled:
            return
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if self._lifecycle_hold and not self._seen_output:
            self._hold_timer = loop.call_later(self._lifecycle_hold, self._release_held_lifecycle)
            return
        interval = self.interval
        due = self._last_publish + interval
        if due <= loop.time():
            self._spawn()
        elif self.publish_first:
            loop.call_at(due, self._spawn)
        else:
            loop.call_at(aligned(due, interval), self._spawn)

    def _release_held_lifecycle(self) -> None:
        self._hold_timer = None
        self._spawn()

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._publish_scheduled())
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None

    async def _publish_scheduled(self) -> None:
        async with self._publish_lock:
            self._scheduled = False
            count = len(self.to_publish)
            if (
                count
                and not self.publish_first
                and self._persist is not None
                # Only this batch waits for the store: events added meanwhile go in the next one.
                and not await self._persist_loop(attempts=1, upto=self.to_publish[count - 1][0])
            ):
                # Stored first or not at all: keep the batch and try again a little later.
                self._scheduled = True
                asyncio.get_running_loop().call_later(PERSIST_RETRY_SECONDS, self._spawn)
                return
            await self._publish_pending(count)
        if self.publish_first:
            self._start_persisting()

    async def _publish_pending(self, count: int | None = None) -> None:
        """Publish the first ``count`` unpublished events (all by default)."""
        if self._hold_timer is not None:  # drain() or store_with(): what was held leaves now
            self._hold_timer.cancel()
            self._hold_timer = None
            self._scheduled = False
        batch = self.to_publish[:count]
        del self.to_publish[: len(batch)]
        if not batch:
            return
        if self._coalescing or any(event[1].endswith(".delta") for event in batch):
            # The coalescing window opens with the first output: the first token leaves at once
            # however soon it follows the lifecycle events.
            self._coalescing = True
            self._last_publish = asyncio.get_running_loop().time()
        try:
            await self._publish(batch)
        except Exception:  # noqa: BLE001 - readers catch up from the store
            self.publish_failures += 1
            now = time.monotonic()
            if now - self._publish_warned > PUBLISH_WARN_EVERY:
                self._publish_warned = now
                logger.warning(
                    "publishing events failed; readers will catch up from the store", exc_info=True
                )

    # ---- persistence, in the background

    def _start_persisting(self) -> None:
        if self._persist is None or not self.to_persist or self._persist_timer:
            return
        if self._persist_task is None or self._persist_task.done():
            # A short wait first: the events of the next moments go into the same INSERT.
            self._persist_timer = True
            asyncio.get_running_loop().call_later(PERSIST_DELAY_SECONDS, self._persist_now)

    def _persist_now(self) -> None:
        self._persist_timer = False
        if self.to_persist and (self._persist_task is None or self._persist_task.done()):
            self._persist_task = asyncio.get_running_loop().create_task(self._persist_loop(attempts=3))

    async def _persist_loop(self, attempts: int | None = None, upto: int | None = None) -> bool:
        """Persist until nothing is queued (or nothing up to sequence number ``upto``); False when
        the store kept refusing (one runner at a time)."""
        async with self._persist_lock:
            return await self._persist_queued(attempts, upto)

    async def _persist_queued(self, attempts: int | None, upto: int | None = None) -> bool:
        failures = 0
        while self.to_persist and (upto is None or self.to_persist[0][0] <= upto):
            batch = self.to_persist[:]
            try:
                await self._persist(batch)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - kept queued, surfaced by drain()
                self._error = exc
                failures += 1
                if attempts is not None and failures >= attempts:
                    return False
                await asyncio.sleep(PERSIST_RETRY_SECONDS * min(failures, 4))
                continue
            self._error = None
            del self.to_persist[: len(batch)]
        return True

    def hold(self) -> None:
        """Hold every event added from now on until :meth:`store_with` has stored it (the last
        events of a response, built before its final state is known to have won)."""
        self._holding = True

    async def store_with(self, write: Callable[[Batch], Awaitable[T]]) -> T:
        """Persist every queued event through ``write`` (say, inside the transaction that stores
        the response's final state) instead of the event writer; then publish what waited.

        ``write`` gets the queued events and returns a value handed back to the caller; it may
        call :meth:`discard_from` for events it chose not to store. If it raises, the events stay
        queued and held (a later :meth:`drain` persists and publishes them).
        """
        if self.publish_first:
            async with self._publish_lock:  # what need not wait for the store goes out first
                await self._publish_pending()
        async with self._persist_lock:
            batch = self.to_persist[:]
            result = await write(batch)
            written = {event[0] for event in batch}
            self.to_persist = [event for event in self.to_persist if event[0] not in written]
        self._holding = False
        async with self._publish_lock:
            self.to_publish.extend(self._held)
            self._held = []
            await self._publish_pending()
        return result

    def discard_from(self, sequence_number: int) -> None:
        """Forget unsent, unstored events from ``sequence_number`` on (terminal events built for
        a final state that did not win)."""
        self.to_publish = [e for e in self.to_publish if e[0] < sequence_number]
        self.to_persist = [e for e in self.to_persist if e[0] < sequence_number]
        self._held = [e for e in self._held if e[0] < sequence_number]

    def abandon(self) -> None:
        """Drop every event not yet sent or stored and stop the work scheduled for them: nothing
        added so far is ever published or stored (a loop whose start was refused)."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for task in list(self._tasks or ()):
            task.cancel()
        if self._persist_task is not None:
            self._persist_task.cancel()
        self.to_publish, self.to_persist, self._held = [], [], []

    async def drain(self, attempts: int = 5) -> None:
        """Publish and persist everything added so far, then publish held terminal events.

        A persist failure (after retries) is re-raised — after the held events are published
        anyway, so that live readers still see the end of the stream. A stored-first sink
        stores before it publishes anything.
        """
        if self.publish_first or self._persist is None:
            async with self._publish_lock:
                await self._publish_pending()
        if self._persist is None:
            return
        stored = await self._persist_loop(attempts)
        self._holding = False
        if self._held or self.to_publish:
            async with self._publish_lock:
                self.to_publish.extend(self._held)
                self._held = []
                await self._publish_pending()
        if not stored:
            error, self._error = self._error, None
            if error is not None:
                raise error
