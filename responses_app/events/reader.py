"""Follow a response's events: stored ones after a sequence number, then live ones, no gaps, no repeats."""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async

from ..selectors import response_events_after, response_status
from ..states import TERMINAL_EVENT_TYPES, UNFINISHED_STATUSES
from .bus import Subscription
from .sink import Batch

_events_after = sync_to_async(lambda rid, after: response_events_after(response_id=rid, after=after))
_status = sync_to_async(lambda rid: response_status(response_id=rid))


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
    while True:
        batch = await subscription.get(keepalive)
        if batch is None:
            silent_rounds += 1
            # Silence: maybe a message was dropped or the loop died; the store has the truth.
            stored = await _events_after(response_id, last)
            if stored:
                yield stored
                last = stored[-1][0]
                if stored[-1][1] in TERMINAL_EVENT_TYPES:
                    return
                continue
            if silent_rounds >= 2 and await _status(response_id) not in UNFINISHED_STATUSES:
                return
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
        last = batch[-1][0]
        if batch[-1][1] in TERMINAL_EVENT_TYPES:
            return
