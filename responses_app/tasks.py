"""Celery tasks: load by id and call the loop or a service; nothing else lives here."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

logger = logging.getLogger(__name__)


@shared_task(name="responses_app.tasks.run_response", acks_late=True, reject_on_worker_lost=True)
def run_response_task(response_id: str) -> str | None:
    """Run one response's loop on this worker's shared event loop (many loops per process)."""
    from responses_app.loop.runner import run_response
    from responses_app.loop.supervision.host import loop_host

    return loop_host.run(run_response(response_id))


@shared_task(name="responses_app.tasks.resume_response", acks_late=True, reject_on_worker_lost=True)
def resume_response_task(response_id: str, takeover: int) -> str | None:
    """Carry on a response taken over from a lost worker (see ``loop/durability.py``)."""
    from responses_app.loop.runner import resume_response
    from responses_app.loop.supervision.host import loop_host

    return loop_host.run(resume_response(response_id, takeover=takeover))


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
def start_loop_host(**_: Any) -> None:
    """Start the worker's loop host at once: its periodic reaper runs even before the first task."""
    from responses_app.loop.supervision.host import loop_host, loop_implementation

    logger.info("worker: loop host on %s", loop_implementation(loop_host.loop()))
