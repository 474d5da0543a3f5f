"""Celery tasks: load by id and call the loop or a service; nothing else lives here."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import task_received, worker_ready, worker_shutdown

logger = logging.getLogger(__name__)

# The loop tasks return once their loop has started: its start (and heartbeat) is stored, so
# from then on a lost worker's loop is the reaper's to take over (``loop/durability.py``), and
# the message is acked then (late ack still covers a worker lost before the start). The loop
# goes on on the worker's loop host, which holds no pool thread for it; the host keeps the
# worker's loops to ``OPENRESPONSES_WORKER_CONCURRENCY`` (default: its concurrency), and the consumer's
# prefetch shrinks to the free slots (``start_loop_host``), so a full worker leaves new messages
# to the others.


@shared_task(name="responses_app.tasks.run_response", acks_late=True, reject_on_worker_lost=True)
def run_response_task(response_id: str) -> str | None:
    """Start one response's loop on this worker's shared event loop (many loops per process).

    The start is stored here, on the task's thread, before the loop goes to the host: a host
    busy with hundreds of streams takes a while for each of the several turns a start on it
    needs, and a burst of thousands of responses then started a few per second while its
    streams waited. On a quiet host the loop was begun already as the message arrived
    (:func:`begin_loop`): the task only waits for its start."""
    from responses_app.loop.runner import run_response, start_now
    from responses_app.loop.supervision.host import loop_host

    response = None

    def ready() -> bool:  # once the host has a slot for the loop
        nonlocal response
        response = start_now(response_id)
        return response is not None

    return loop_host.start(
        lambda started: run_response(response_id, started=response, on_start=started),
        ready=ready,
        key=run_response_task.request.id,
    )


#: Loops running on a worker's host below which a response's loop begins as its message arrives.
EARLY_BEGIN_BELOW = 16


@task_received.connect
def begin_loop(request: Any = None, **_: Any) -> None:
    """Begin a response's loop on the loop host as its message arrives, on Celery's consumer thread.

    The loop's start (one statement on the host's own connections) then overlaps the task's
    hand-off to a pool thread, its database connection check and its own start; the task joins
    the loop (``LoopHost.start(key=...)``) and returns once it has started, so the message is
    acknowledged only then, as before. Only on a quiet host (fewer than ``EARLY_BEGIN_BELOW``
    loops) with a slot free, for a message without ETA or rate limit: under a burst, starts stay
    on the task threads, where they do not wait for the turns of a host busy with hundreds of
    streams.
    """
    if request is None or request.name != run_response_task.name or request.eta or request.kwargs:
        return
    if getattr(request.task, "rate_limit", None):
        return
    args = request.args
    if len(args) != 1 or not isinstance(args[0], str):
        return
    from responses_app.loop.runner import run_response
    from responses_app.loop.supervision.dispatch import START_HEADER
    from responses_app.loop.supervision.host import loop_host

    response_id = args[0]
    # The response and its input, when the message carries them: the loop then sends its upstream
    # request while its start is being stored (``runner.run_response``).
    carried = (getattr(request, "request_dict", None) or {}).get(START_HEADER)
    if not isinstance(carried, str):
        carried = None
    loop_host.begin(
        request.id,
        lambda started: run_response(response_id, on_start=started, carried=carried),
        quiet=EARLY_BEGIN_BELOW,
    )


@shared_task(name="responses_app.tasks.resume_response", acks_late=True, reject_on_worker_lost=True)
def resume_response_task(response_id: str, takeover: int) -> str | None:
    """Carry on a response taken over from a lost worker (see ``loop/durability.py``)."""
    from responses_app.loop.runner import resume_response
    from responses_app.loop.supervision.host import loop_host

    return loop_host.start(lambda started: resume_response(response_id, takeover=takeover, on_start=started))


@shared_task(name="responses_app.tasks.reap_orphans")
def reap_orphans() -> int:
    """End responses whose loop died (no heartbeat): see ``responses_app.loop.supervision.reaper``."""
    from responses_app.loop.supervision.reaper import reap_orphans as reap

    return reap()


@shared_task(name="responses_app.tasks.purge_expired")
def purge_expired() -> int:
    """Apply the retention rules (see ``responses_app.gateway.retention``) and reclaim stale concurrency slots."""
    from responses_app.gateway.limits import reclaim_all
    from responses_app.gateway.retention import purge_expired as purge

    deleted = purge().responses
    reclaim_all()
    return deleted


@worker_ready.connect
def start_loop_host(sender: Any = None, **_: Any) -> None:
    """Start the worker's loop host at once (its periodic reaper runs even before the first task),
    its loops capped at ``OPENRESPONSES_WORKER_CONCURRENCY`` (default: the worker's concurrency)."""
    from responses_app.loop.supervision.host import (
        loop_host,
        loop_implementation,
        prefetch_follows_loops,
        worker_loops,
    )

    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
    loops = worker_loops(int(concurrency)) if concurrency else None
    if loops:
        loop_host.limit(loops, prefetch_follows_loops(sender, loops))
    logger.info("worker: loop host on %s, at most %s loops", loop_implementation(loop_host.loop()), loops)


@worker_shutdown.connect
def drain_loop_host(**_: Any) -> None:
    """A warm shutdown waits for the loops running here, as it waits for running tasks."""
    from responses_app.loop.supervision.host import loop_host

    if loop_host.running:
        logger.info("worker: waiting for %d loops to finish", loop_host.running)
        loop_host.wait_idle()
