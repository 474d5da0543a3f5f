"""The loops running in this process: heartbeats for the reaper, and cancel signals.

One watcher per event loop does the bookkeeping for all its loops with one query every half
second, so a cancel reaches the loop within a second whichever process it runs in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from responses_app.loop.supervision import pg
from responses_app.loop.supervision.db import run_control_db

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class CancelSignal:
    """A loop's cancel signal: a flag, and ``on_set``, called once when it is set (the loop's
    sample in flight interrupts itself with it). Set from the loop's own event loop.

    Lighter than an ``asyncio.Event`` and a task waiting on it for each open loop."""

    __slots__ = ("_set", "on_set")

    def __init__(self) -> None:
        self._set = False
        self.on_set: Callable[[], None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self.on_set is not None:
            self.on_set()


class Activity:
    def __init__(self) -> None:
        self.active: dict[str, CancelSignal] = {}
        self._task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def register(self, response_id: str, event: CancelSignal | None = None) -> CancelSignal:
        """Watch ``response_id`` (heartbeats, cancel polling); its cancel signal (``event``, or a new one)."""
        event = self.active[response_id] = event if event is not None else CancelSignal()
        self.loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())
        return event

    def unregister(self, response_id: str) -> None:
        self.active.pop(response_id, None)

    def cancel_local(self, response_id: str) -> bool:
        event = self.active.get(response_id)
        if event is None:
            return False
        event.set()
        return True

    async def _watch(self) -> None:
        from responses_app.conf import openresponses_settings
        from responses_app.services.responses import cancelled_among, responses_heartbeat

        last_heartbeat = time.monotonic()
        while self.active:
            await asyncio.sleep(POLL_SECONDS)
            ids = list(self.active)
            if not ids:
                continue
            try:
                beat = time.monotonic() - last_heartbeat >= float(openresponses_settings.HEARTBEAT_SECONDS)
                if pg.enabled():  # one prepared statement on this event loop's own connection
                    cancelled = await pg.watch(ids, heartbeat=beat)
                elif beat:
                    cancelled = await run_control_db(responses_heartbeat, response_ids=ids)
                else:
                    cancelled = await run_control_db(cancelled_among, response_ids=ids)
                if beat:
                    last_heartbeat = time.monotonic()
            except Exception:  # noqa: BLE001 - the store may be briefly away; try again
                logger.warning("heartbeat failed; retrying", exc_info=True)
                continue
            for response_id in cancelled:
                event = self.active.get(response_id)
                if event is not None:
                    event.set()


_activities: dict[int, Activity] = {}


def activity() -> Activity:
    loop = asyncio.get_running_loop()
    found = _activities.get(id(loop))
    if found is None:
        found = _activities[id(loop)] = Activity()
    return found


def local_response_ids() -> set[str]:
    """Ids of the loops running in this process (the reaper never takes these for orphans)."""
    return {response_id for act in list(_activities.values()) for response_id in list(act.active)}


def cancel_everywhere_local(response_id: str) -> None:
    """Signal a loop of this process directly (no wait for the poll)."""
    for act in list(_activities.values()):
        event = act.active.get(response_id)
        if event is not None and act.loop is not None:
            act.loop.call_soon_threadsafe(event.set)
