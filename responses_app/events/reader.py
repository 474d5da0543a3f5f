"""Follow a response's events: stored ones after a sequence number, then live ones, no gaps, no repeats.

The store is the truth and the bus only a shortcut: after silence, on a gap, or while the
channel layer is unreachable (Redis restarting) the reader reads the store instead. While the
store is unreachable (PostgreSQL restarting) its reads are tried again; the stream goes on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections

from responses_app.events.bus import Subscription
from responses_app.events.sink import Batch
from responses_app.selectors import response_events_after, response_status
from responses_app.services import pg_async
from responses_app.states import TERMINAL_EVENT_TYPES, UNFINISHED_STATUSES, ResponseStatus

logger = logging.getLogger(__name__)
T = TypeVar("T")
BROKEN_BUS_POLL_SECONDS = 0.5


def _store_read(read: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``read`` on Django's sync thread; its dead connection closed when it fails (PostgreSQL
    restarted), so that the next read takes a fresh one."""

    def run(*args: Any) -> T:
        try:
            return read(*args)
        except DatabaseError:
            close_old_connections()
            raise

    return sync_to_async(run)


_events_after_orm = _store_read(lambda rid, after: response_events_after(response_id=rid, after=after))


@functools.cache
def _events_after_sql() -> str:
    from responses_app.models import ResponseEvent
    from responses_app.services.responses import pg_table

    return (
        f"SELECT sequence_number, type, payload FROM {pg_table(ResponseEvent)} "
        "WHERE response_id = %s AND sequence_number > %s ORDER BY sequence_number"
    )


async def _events_after(response_id: str, after: int) -> list[tuple[int, str, str]]:
    """Stored events after ``after``: on PostgreSQL one prepared statement on this event loop's
    own connections (``services.pg_async``), else the ORM on Django's sync thread.

    Every silent or gapped stream reads here. On the sync thread (one per process, shared with
    every other sync call of the serving process) thousands of open streams queued their reads
    behind each other under load, and a stream whose read waited delivered nothing meanwhile,
    however many live events had reached it.
    """
    if not pg_async.available():
        return await _events_after_orm(response_id, after)
    import psycopg

    sql = _events_after_sql()

    async def work(cursor: Any) -> list[tuple[int, str, str]]:
        await cursor.execute(sql, (response_id, after), prepare=True)
        return await cursor.fetchall()

    try:
        return await pg_async.run(work)
    except psycopg.Error as exc:  # the store is unreachable: as the ORM path reports it
        raise DatabaseError(str(exc)) from exc


_page_after = _store_read(
    lambda rid, after: response_events_after(
        response_id=rid, after=after, limit=CATCH_UP_PAGE, max_chars=CATCH_UP_PAGE_CHARS
    )
)
#: Stored events read at once when catching up: a replay of a long response holds one page (and
#: at least one event), never the whole log, while its client reads.
CATCH_UP_PAGE = 256
CATCH_UP_PAGE_CHARS = 1 << 18
_status = _store_read(lambda rid: response_status(response_id=rid))
#: While the store is unreachable (PostgreSQL restarting, cut off), a failed read is tried again
#: after this long; the stream goes on from the bus meanwhile and from the store once it is back.
BROKEN_STORE_POLL_SECONDS = 0.5


async def _try_store(read: Callable[..., Awaitable[T]], *args: Any, default: T) -> tuple[T, bool]:
    """``await read(*args)`` and True; ``default`` and False when the database failed."""
    try:
        return await read(*args), True
    except DatabaseError:
        # (debug: every open stream retries twice a second; the pool logs the outage itself)
        logger.debug("the event store is unreachable; reading it again shortly", exc_info=True)
        await asyncio.sleep(BROKEN_STORE_POLL_SECONDS)
        return default, False


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


GAP_POLL_SECONDS = 0.05
GAP_GIVE_UP_SECONDS = 30.0
#: The first store read after a stream that was flowing falls silent, doubling up to the keep-alive:
#: a live message lost on the way (the web's subscription dropped while Redis restarted, a PubSub
#: client cut off for its output buffer) delays a stream by about a second, not by a whole
#: keep-alive, while a pause (a long tool call) costs a few indexed reads. A stream that has not
#: delivered anything yet (waiting for its loop to start, or for the upstream's first token) reads
#: the store at the keep-alive only: thousands of streams queued behind a busy worker would
#: otherwise poll the store together, on the web process's database thread, for nothing.
SILENCE_CHECK_SECONDS = 1.0


async def follow(
    response_id: str,
    subscription: Subscription,
    *,
    after: int = -1,
    catch_up: bool = True,
    keepalive: float = 15.0,
) -> AsyncIterator[Batch]:
    """Yield batches of events with ``sequence_number > after`` until the terminal event, in order.

    An empty batch means "nothing for ``keepalive`` seconds" (time for a keep-alive comment).
    ``catch_up=False`` skips the first store read when the subscription predates the loop.
    Live events beyond a gap wait in a buffer until the store fills the gap (events are
    published before they are persisted, so the store may lag the bus by a moment).
    """
    last = max(after, -1)  # sequence numbers start at 0: below -1 would be a gap forever
    ahead: dict[int, tuple] = {}  # events received beyond a gap, by sequence number

    def contiguous() -> Batch:
        nonlocal last
        out: Batch = []
        while last + 1 in ahead:
            event = ahead.pop(last + 1)
            out.append(event)
            last = event[0]
        return out

    store_ok = True

    async def from_store() -> Batch:
        nonlocal store_ok
        rows, store_ok = await _try_store(_events_after, response_id, last, default=[])
        for event in rows:
            if event[0] > last:
                ahead.setdefault(event[0], event)
        return contiguous()

    if catch_up:
        while True:
            rows, _ = await _try_store(_page_after, response_id, last, default=[])
            for event in rows:
                if event[0] > last:
                    ahead.setdefault(event[0], event)
            stored = contiguous()
            if stored:
                yield stored
                if stored[-1][1] in TERMINAL_EVENT_TYPES:
                    return
            if not rows or not stored:
                break
    finished_checks = 0
    last_yield = time.monotonic()
    gap_since: float | None = None
    flowing = min(SILENCE_CHECK_SECONDS, keepalive)
    silence_check = flowing if last >= 0 else keepalive
    silent_since: float | None = None
    while True:
        # Silence is checked in growing steps, never past the next keep-alive.
        until_keepalive = max(keepalive - (time.monotonic() - last_yield), GAP_POLL_SECONDS)
        timeout = GAP_POLL_SECONDS if ahead else min(silence_check, until_keepalive)
        batch, broken = await _receive(subscription, timeout)
        if batch is not None:
            silence_check = flowing
            silent_since = None
            for event in batch:
                if event[0] > last:
                    ahead[event[0]] = event
            out = contiguous()
            if ahead:
                out += await from_store()
        else:
            if not broken and not ahead:
                silent_since = silent_since or time.monotonic() - silence_check
                silence_check = min(silence_check * 2, keepalive)
            # Silence, a gap or a broken bus: the store has the truth.
            out = await from_store()
        if ahead and store_ok:
            gap_since = gap_since or time.monotonic()
            if time.monotonic() - gap_since > GAP_GIVE_UP_SECONDS:
                logger.warning(
                    "events %s..%s of %s never reached the store; skipping them",
                    last + 1,
                    min(ahead) - 1,
                    response_id,
                )
                last = min(ahead) - 1
                out += contiguous()
        else:
            gap_since = None
        if out:
            yield out
            if out[-1][1] in TERMINAL_EVENT_TYPES:
                return
            # Sent: not held by this frame while the stream waits for its next events.
            out = batch = event = None
            last_yield = time.monotonic()
            silence_check = flowing
            silent_since = None
            continue
        if batch is not None or ahead:
            continue
        silent_for = time.monotonic() - silent_since if silent_since is not None else 0.0
        if (silent_for >= 2 * keepalive or broken) and (
            await _try_store(_status, response_id, default=ResponseStatus.IN_PROGRESS)
        )[0] not in UNFINISHED_STATUSES:
            # Finished, yet its terminal event is not stored: give the loop a moment to write it,
            # then stop (e.g. the response was deleted meanwhile).
            finished_checks += 1
            if finished_checks >= 4:
                return
        else:
            finished_checks = 0
        if time.monotonic() - last_yield >= keepalive:
            last_yield = time.monotonic()
            yield []


def terminal_response(batch: Batch) -> dict | None:
    """The ResponseResource carried by a terminal event in ``batch``, if any."""
    for _, event_type, payload in reversed(batch):
        if event_type in TERMINAL_EVENT_TYPES:
            return json.loads(payload)["response"]
    return None
