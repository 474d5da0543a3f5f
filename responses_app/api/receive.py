"""A connection's ASGI messages for the application's ``receive``, as light as daphne's use of its
input queue needs (``put_nowait`` from the protocol, ``get`` from the application).

``asyncio.Queue`` holds three deques and an ``Event`` with a fourth, each a 64-slot block: ~3 KiB
per open connection for two messages (the request's body, its disconnect). This one holds a list,
and the waiting readers' futures only while one waits. A handler that has read the body can
:meth:`ReceiveQueue.take_over` the rest: each later message is handed to its callback as it comes,
with no task waiting on ``receive`` for the client's disconnect (``api.asgi.LeanASGIHandler``).
No Django import here: the web process installs it before Django is set up (``openresponses_site.serve``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class ReceiveQueue:
    __slots__ = ("_items", "_waiters", "_on_message")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future] | None = None
        self._on_message: Callable[[Any], None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._on_message is not None:
            self._on_message(item)
            return
        self._items.append(item)
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
        return self._items.pop(0)

    def take_over(self, on_message: Callable[[Any], None] | None) -> bool:
        """Hand every later message (and any waiting now) to ``on_message`` instead of a reader;
        None gives them back to readers. False, and nothing changes, while a reader waits."""
        if on_message is not None and self._waiters:
            return False
        self._on_message = on_message
        if on_message is not None:
            items, self._items = self._items, []
            for item in items:
                on_message(item)
        return True
