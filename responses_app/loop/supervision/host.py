"""A long-lived event loop on a background thread: where a process runs many loops at once.

Celery tasks (threads pool) hand their coroutine to this loop and wait for it, so one worker
process holds hundreds of concurrent loops on one event loop instead of one loop per process.
The host also runs the periodic reaper, so every process that runs loops looks for orphans.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopHost:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
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
