"""Follow a response's events: stored ones after a sequence number, then live ones, no gaps, no repeats.

The store is the truth and the bus only a shortcut: after silence, on a gap, or while the
channel layer is unreachable (Redis restarting) the reader reads the store instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async

from ..selectors import response_events_after, response_status
from ..states import TERMINAL_EVENT_TYPES, UNFINISHED_STATUSES
from .bus import Subscription
from .sink import Batch

logger = logging.getLogger(__name__)
BROKEN_BUS_POLL_SECONDS = 0.5

_events_after = sync_to_async(lambda rid, after: response_events_after(response_id=rid, after=after))
_status = sync_to_async(lambda rid: response_status(response_id=rid))


async def _receive(subscription: Subscription, timeout: float) -> tuple[Batch | None, bool]:
    """The next live batch (None on silence) and whether the bus failed."""
    try:
        return await subscription.get(timeout), False
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the channel layer is away: poll the store meanwhile
        logger.debug("subscription failed; polling the store", exc_info=True)
        await asyncio.sleep(BROKEN_BUS_POLL_SECONDS)
        return None, True


async def follow(
    response_id: str,
    subscription: Subscription,
    *,
    after: int = -1,
    catch_up: bool = True,
    keepalive: float = 15.0,
) -> AsyncIterator[Batch]:
    """Yield batches of events with ``sequence_number > after`` until the terminal event.

    An empty batch means "nothing for ``keepalive`` seconds" (time for a keep-alive comment).
    ``catch_up=False`` skips the first store read when the subscription predates the loop.
    """
    last = after
    if catch_up:
        stored = await _events_after(response_id, last)
        if stored:
            yield stored
            last = stored[-1][0]
            if stored[-1][1] in TERMINAL_EVENT_TYPES:
                return
    silent_rounds = 0
    finished_checks = 0
    last_yield = time.monotonic()
    while True:
        batch, broken = await _receive(subscription, keepalive)
        if batch is None:
            if not broken:
                silent_rounds += 1
            # Silence or a broken bus: maybe a message was dropped or the loop died; the store has the truth.
            stored = await _events_after(response_id, last)
            if stored:
                yield stored
                last_yield = time.monotonic()
                last = stored[-1][0]
                if stored[-1][1] in TERMINAL_EVENT_TYPES:
                    return
                continue
            if (silent_rounds >= 2 or broken) and await _status(response_id) not in UNFINISHED_STATUSES:
                # Finished, yet its terminal event is not stored: give the loop a moment to write it,
                # then stop (e.g. the response was deleted meanwhile).
                finished_checks += 1
                if finished_checks >= 4:
                    return
            else:
                finished_checks = 0
            if not broken or time.monotonic() - last_yield >= keepalive:
                last_yield = time.monotonic()
                yield []
            continue
        silent_rounds = 0
        if batch[-1][0] <= last:
            continue
        if batch[0][0] > last + 1:
            # A gap: something was missed between ``last`` and this batch.
            stored = await _events_after(response_id, last)
            batch = stored or batch
        elif batch[0][0] <= last:
            batch = [event for event in batch if event[0] > last]
        yield batch
        last_yield = time.monotonic()
        last = batch[-1][0]
        if batch[-1][1] in TERMINAL_EVENT_TYPES:
            return
