"""A long-lived event loop on a background thread: where a process runs many loops at once.

Celery tasks (threads pool) hand their loop to this event loop and return once it has started
(:meth:`LoopHost.start`), so one worker process holds hundreds of concurrent loops on one event
loop, with a pool thread only while a loop starts. The host also runs the periodic reaper, so
every process that runs loops looks for orphans.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Environment variable: "0" (or false/no/off) keeps asyncio's own loop where uvloop is installed.
UVLOOP_ENV = "OPENRESPONSES_UVLOOP"
#: Environment variable: the loops one Celery worker process runs at once (default: its
#: ``--concurrency``). The pool's threads only start loops: a few are enough (``make run``: 16).
WORKER_LOOPS_ENV = "OPENRESPONSES_WORKER_CONCURRENCY"


def worker_loops(concurrency: int) -> int:
    """The loops a worker process of Celery ``concurrency`` runs at once (``OPENRESPONSES_WORKER_CONCURRENCY``)."""
    value = os.environ.get(WORKER_LOOPS_ENV, "").strip()
    return max(1, int(value)) if value else concurrency


def uvloop_enabled() -> bool:
    """Whether event loops are uvloop's: on unless ``OPENRESPONSES_UVLOOP`` is off."""
    return os.environ.get(UVLOOP_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed and enabled, else asyncio's."""
    if uvloop_enabled():
        try:
            import uvloop
        except ImportError:  # an optional speed-up: asyncio's loop works the same
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_implementation(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what runs ``loop`` (the web banner and the worker's log)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class _Loop:
    """One loop of :meth:`LoopHost.start` or :meth:`LoopHost.begin`, as its starter sees it.

    ``lock`` is held from the start until the loop calls ``started()`` or ends; the starting
    thread waits by acquiring it. (A lock, not a ``threading.Event`` and a concurrent future:
    a worker holds one of these per open stream.) Only the host's event loop signals, so
    ``signalled`` needs no lock of its own.
    """

    __slots__ = ("ended", "error", "lock", "result", "signalled")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.signalled = False
        self.ended = False  # ended before it started: ``result`` or ``error`` is the outcome
        self.result: Any = None
        self.error: BaseException | None = None

    def started(self) -> None:
        """Called on the host's event loop once the loop has started (again: nothing happens)."""
        if not self.signalled:
            self.signalled = True
            self.lock.release()

    def joined(self) -> Any:
        """Block until the loop has started (None) or ended first (its result, or its exception)."""
        self.lock.acquire()
        if self.error is not None:
            raise self.error
        return self.result


class LoopHost:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        # Loops started with start(): at most ``capacity`` at once; ``on_running`` hears the count.
        self._capacity: int | None = None
        self._slots: threading.Semaphore | None = None
        self._running = 0
        self._idle = threading.Condition()
        self._on_running: Callable[[int], None] | None = None
        # Loops begun before their task runs (:meth:`begin`), by key, until the task joins them.
        self._begun: dict[str, _Loop] = {}
        # The tasks of running loops (the event loop keeps only weak references to its tasks).
        self._tasks: set[asyncio.Task[Any]] = set()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="openresponses-loop-host", daemon=True
                )
                thread.start()
                self._loop = loop
                asyncio.run_coroutine_threadsafe(_start_services(), loop)
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the host loop and block the calling thread until it is done."""
        return self.submit(coro).result(timeout)

    def limit(self, capacity: int, on_running: Callable[[int], None] | None = None) -> None:
        """Run at most ``capacity`` loops of :meth:`start` at once; ``on_running(n)`` is called
        (on the calling thread of a start, or the host's as a loop ends) whenever ``n`` changes."""
        with self._idle:
            self._capacity = capacity
            self._slots = threading.Semaphore(capacity)
            self._on_running = on_running

    @property
    def running(self) -> int:
        """Loops of :meth:`start` running now."""
        return self._running

    def start(
        self,
        make: Callable[[Callable[[], None]], Coroutine[Any, Any, T]],
        ready: Callable[[], bool] | None = None,
        key: str | None = None,
    ) -> T | None:
        """Run ``make(started)`` on the host loop; block only until it calls ``started()`` (None
        is returned; the loop carries on) or ends first (its result, or its exception).

        ``started`` is to be called on the host loop (from the coroutine). With :meth:`limit`,
        waits first for one of the ``capacity`` slots, which the loop holds until it ends.
        ``ready``: called on the calling thread once the slot is held, before ``make``; when it
        returns False nothing runs (None is returned, the slot is free again). ``key``: a loop
        :meth:`begin` began under it is joined instead (nothing else runs).
        """
        if key is not None:
            with self._idle:
                begun = self._begun.pop(key, None)
            if begun is not None:
                return begun.joined()
        slots = self._slots
        if slots is not None:
            slots.acquire()
        state = _Loop()
        try:
            if ready is not None and not ready():
                if slots is not None:
                    slots.release()
                return None
            self._spawn(make(state.started), state, slots)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        return state.joined()

    def begin(
        self, key: str, make: Callable[[Callable[[], None]], Coroutine[Any, Any, T]], *, quiet: int
    ) -> bool:
        """Run ``make(started)`` on the host loop now, without waiting for anything: only when a
        slot is free and fewer than ``quiet`` loops run. :meth:`start` with the same ``key``
        then joins it. False: nothing was begun (the slot is not held).

        For a thread that must not block (the Celery consumer's, as a message arrives): the
        loop's start overlaps the hand-off of its task to a pool thread. A busy host is left
        alone: there, starts on the task threads do not wait for its turns.
        """
        if self._running >= quiet:
            return False
        slots = self._slots
        if slots is not None and not slots.acquire(blocking=False):
            return False
        state = _Loop()
        with self._idle:
            self._begun[key] = state
        try:
            self._spawn(make(state.started), state, slots, key)
        except BaseException:
            with self._idle:
                self._begun.pop(key, None)
            if slots is not None:
                slots.release()
            raise
        return True

    def _spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        state: _Loop,
        slots: threading.Semaphore | None,
        key: str | None = None,
    ) -> None:
        """Run ``coro`` as a task of the host loop, counted as running until it ends."""

        def create() -> None:
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._ended(done, state, slots, key))

        self._count(+1)
        try:
            self.loop().call_soon_threadsafe(create)
        except BaseException:
            coro.close()
            self._count(-1)
            raise

    def _ended(
        self, done: asyncio.Task[Any], state: _Loop, slots: threading.Semaphore | None, key: str | None
    ) -> None:
        """On the host loop, as a loop's task ends: its outcome to its starter, its slot freed."""
        self._tasks.discard(done)
        error = CancelledError() if done.cancelled() else done.exception()
        if not state.signalled:
            state.ended, state.error = True, error
            state.result = None if error is not None else done.result()
        elif error is not None and not done.cancelled():
            # after start() returned, nobody else sees it (a task would have logged it)
            logger.error("a loop failed after it started", exc_info=error)
        if key is not None and error is None:
            # Ended well with no task joining yet: nothing is left for it (a task that comes
            # after all goes the ordinary way and finds its response no longer queued).
            with self._idle:
                if self._begun.get(key) is state:
                    del self._begun[key]
        if slots is not None:
            slots.release()
        self._count(-1)
        state.started()

    def _count(self, change: int) -> None:
        with self._idle:
            self._running += change
            running, on_running = self._running, self._on_running
            if not running:
                self._idle.notify_all()
        if on_running is not None:
            on_running(running)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no loop of :meth:`start` runs (a worker's warm shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout)


def prefetch_follows_loops(consumer: Any, capacity: int) -> Callable[[int], None]:
    """``on_running`` for a Celery worker's loop host of ``capacity`` loops: the prefetch count of
    ``consumer`` (the worker's): its own, but no more than the free slots, and at least one. The
    consumer's own loop applies it as it applies Celery's own changes (``kombu.common.QoS``:
    ``value`` against ``prev``). Celery may set it otherwise after a broker reconnect until the
    next loop starts or ends; the host's cap holds meanwhile (a message fetched beyond it waits
    in its task for a slot)."""
    full = int(getattr(consumer, "max_prefetch_count", 0) or consumer.initial_prefetch_count or 0)

    def on_running(running: int) -> None:
        qos = getattr(consumer, "qos", None)
        if qos is not None and full:
            qos.value = max(1, min(full, capacity - running))

    return on_running


async def _start_services() -> None:
    from responses_app.loop.supervision.reaper import ensure_reaper

    ensure_reaper()


loop_host = LoopHost()
