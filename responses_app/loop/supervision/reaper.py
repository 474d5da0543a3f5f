"""The reaper: responses whose loop died (no heartbeat) are taken over, or ended as ``failed``.

An in-progress orphan is handed to a new loop (``runner.resume_response``: on a Celery worker,
or in this process with in-process dispatch) that carries on from its last durable step,
up to ``MAX_TAKEOVERS`` times; after that, and for a response that never started, it is ended
``failed`` (``worker_lost_repeatedly`` / ``worker_lost``).

Failed orphans end through ``services.response_finish`` like any response (usage record, limits settled,
metrics); their stream gets ``error`` + ``response.failed`` from the shared emitter with the next
sequence numbers, and the output items that had been completed (from the event log) are kept.

It runs wherever something survives a dead worker: periodically on every process's loop host
(each Celery worker, and the web process once it has dispatched a loop) and as a Celery beat
task. Several reapers at once are safe: each orphan is locked (``skip_locked``) and re-checked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from asgiref.sync import async_to_sync
from django.db import transaction

from responses_app.conf import openresponses_settings
from responses_app.events.bus import get_bus
from responses_app.events.resume import resume_emitter, stored_prefix
from responses_app.models import Response, ResponseEvent
from responses_app.resource import build_resource
from responses_app.services.responses import response_finish
from responses_app.states import ResponseStatus

logger = logging.getLogger(__name__)
QUEUED_TIMEOUT_SECONDS = 600.0
REAP_EVERY_SECONDS = 5.0
ORPHAN_ERROR = {
    "code": "worker_lost",
    "message": "The process running this response stopped before it finished; the response was ended by the reaper.",
    "type": "server_error",
    "param": None,
    "status": 500,
}
REPEATED_ERROR = {
    "code": "worker_lost_repeatedly",
    "message": "The processes running this response stopped before it finished, too many times; "
    "the response was ended by the reaper.",
    "type": "server_error",
    "param": None,
    "status": 500,
}


def reap_orphans(*, now: float | None = None) -> int:
    """Take over or end every orphaned response now (synchronous: Celery beat, commands); returns how many."""
    from responses_app.loop.supervision.dispatch import dispatch_resume_sync

    reaped, taken = _reap(now)
    for response_id, takeover in taken:
        dispatch_resume_sync(response_id, takeover)
    for response_id, batch in reaped:
        try:
            async_to_sync(get_bus().publish)(response_id, batch)
        except Exception:  # noqa: BLE001 - readers catch up from the store
            logger.warning("could not publish the reaper's events for %s", response_id)
    return len(reaped) + len(taken)


async def areap_orphans() -> int:
    """The same from an event loop: database work on the loop-database thread, publish here."""
    from responses_app.loop.supervision.activity import local_response_ids
    from responses_app.loop.supervision.db import run_control_db
    from responses_app.loop.supervision.dispatch import dispatch_resume

    reaped, taken = await run_control_db(_reap, None, local_response_ids())
    for response_id, takeover in taken:
        await dispatch_resume(response_id, takeover)
    for response_id, batch in reaped:
        try:
            await get_bus().publish(response_id, batch)
        except Exception:  # noqa: BLE001 - readers catch up from the store
            logger.warning("could not publish the reaper's events for %s", response_id)
    return len(reaped) + len(taken)


async def reap_periodically(interval: float = REAP_EVERY_SECONDS) -> None:
    """Run the reaper forever on this event loop (jittered, so many processes spread out)."""
    while True:
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))
        try:
            await areap_orphans()
        except Exception:  # noqa: BLE001 - the store may be briefly away; next round
            logger.warning("reaping orphans failed; retrying", exc_info=True)


_reapers: dict[int, asyncio.Task] = {}


def ensure_reaper() -> None:
    """Start the periodic reaper on the running event loop, once per loop."""
    loop = asyncio.get_running_loop()
    task = _reapers.get(id(loop))
    if task is None or task.done():
        _reapers[id(loop)] = loop.create_task(reap_periodically(), name="openresponses-reaper")


def _reap(
    now: float | None, alive: set[str] = frozenset()
) -> tuple[list[tuple[str, list]], list[tuple[str, int]]]:
    """(failed orphans with their terminal events, taken-over orphans with their takeover number)."""
    from responses_app.services.durability import response_take_over

    now = now or time.time()
    stale = now - float(openresponses_settings.ORPHAN_AFTER_SECONDS)
    ids = list(
        Response.objects.filter(status=ResponseStatus.IN_PROGRESS, heartbeat_at__lt=stale).values_list(
            "id", flat=True
        )
    ) + list(
        Response.objects.filter(
            status=ResponseStatus.QUEUED, heartbeat_at__lt=now - QUEUED_TIMEOUT_SECONDS
        ).values_list("id", flat=True)
    )
    max_takeovers = int(openresponses_settings.MAX_TAKEOVERS)
    reaped, taken = [], []
    for response_id in ids:
        if response_id in alive:
            continue  # running right here: its heartbeat is only late
        takeover = response_take_over(
            response_id=response_id, stale_before=stale, max_takeovers=max_takeovers
        )
        if takeover is not None:
            logger.warning("response %s lost its worker: taken over (takeover %d)", response_id, takeover)
            _record_takeover("resumed")
            taken.append((response_id, takeover))
            continue
        batch = _fail_orphan(response_id, stale)
        if batch is not None:
            reaped.append((response_id, batch))
    return reaped, taken


def _record_takeover(outcome: str) -> None:
    from responses_app.gateway.metrics import record_takeover

    record_takeover(outcome=outcome)


def fail_orphan(*, response_id: str, stale_before: float) -> bool:
    """End one orphan as ``failed`` (if it still is one) and publish its terminal events."""
    batch = _fail_orphan(response_id, stale_before)
    if batch is None:
        return False
    try:
        async_to_sync(get_bus().publish)(response_id, batch)
    except Exception:  # noqa: BLE001 - readers catch up from the store
        logger.warning("could not publish the reaper's events for %s", response_id)
    return True


class _Collect:
    """A sink that keeps the emitter's events: they are stored with the final state, then published."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str]] = []

    def add(self, sequence_number: int, event_type: str, payload: str) -> None:
        self.events.append((sequence_number, event_type, payload))


def _fail_orphan(response_id: str, stale_before: float) -> list | None:
    """End one orphan through ``response_finish`` (usage, limits, metrics) with the emitter's events."""
    with transaction.atomic():
        response = Response.objects.select_for_update(skip_locked=True).filter(id=response_id).first()
        if response is None or response.is_finished:
            return None
        if response.status == ResponseStatus.IN_PROGRESS and (response.heartbeat_at or 0) >= stale_before:
            return None
        error = (
            REPEATED_ERROR
            if response.status == ResponseStatus.IN_PROGRESS and response.takeovers
            else ORPHAN_ERROR
        )
        events = list(
            ResponseEvent.objects.filter(response=response)
            .order_by("sequence_number")
            .values_list("sequence_number", "type", "payload")
        )
        events = stored_prefix(events)
        sink = _Collect()
        first = events[-1][0] + 1 if events else 0
        checkpoint = response.checkpoint or {}
        # The stored output, with an item the lost loop left open closed ``incomplete``.
        emitter = resume_emitter(
            build_resource(response, [], status=ResponseStatus.IN_PROGRESS),
            sink,
            events,
            provider=response.provider or "",
            usage=checkpoint.get("usage"),
        )
        output = [emitter.stored_item(item) for item in emitter.output]
        if not events:  # it never started: its stream still opens with response.created
            emitter.resource["status"] = ResponseStatus.QUEUED
            emitter.emit_lifecycle("response.created")
        emitter.finish(ResponseStatus.FAILED, error=error)
        status = response_finish(
            response_id=response.id,
            status=ResponseStatus.FAILED,
            output=output,
            usage=emitter.usage,
            error=error,
            first_token_at=response.first_token_at,
            iterations=response.iterations or 0,
            response=response,
            events=sink.events,
            terminal_from=first,
        )
    if status != ResponseStatus.FAILED:
        return None
    logger.warning("reaped orphaned response %s (%s)", response_id, error["code"])
    if error is REPEATED_ERROR:
        _record_takeover("failed")
    return sink.events
