"""A long-lived event loop on a background thread: where a process runs many loops at once.

Celery tasks (threads pool) hand their coroutine to this loop and wait for it, so one worker
process holds hundreds of concurrent loops on one event loop instead of one loop per process.
The host also runs the periodic reaper, so every process that runs loops looks for orphans.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

#: Environment variable: "0" (or false/no/off) keeps asyncio's own loop where uvloop is installed.
UVLOOP_ENV = "OPENRESPONSES_UVLOOP"


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


class LoopHost:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

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


async def _start_services() -> None:
    from responses_app.loop.supervision.reaper import ensure_reaper

    ensure_reaper()


loop_host = LoopHost()
