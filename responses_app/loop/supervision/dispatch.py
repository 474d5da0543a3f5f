"""Hand a stored response to its loop: in this process (inline) or to a Celery worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from responses_app.conf import openresponses_settings

logger = logging.getLogger(__name__)
_background: set[asyncio.Task] = set()


def dispatch_mode() -> str:
    return str(openresponses_settings.DISPATCH)


async def dispatch_response(response_id: str, *, started: Any = None) -> None:
    """Start the loop of a committed response. Returns at once.

    ``started``: a response :func:`services.response_create` stored already started (in-process
    dispatch only), handed to the loop as is.
    """
    from responses_app.loop.supervision.reaper import ensure_reaper

    ensure_reaper()  # the serving process also looks for orphans (a worker may be gone)
    if dispatch_mode() == "celery":
        from responses_app.loop.supervision import celery_redis
        from responses_app.tasks import run_response_task

        await celery_redis.apply_async(run_response_task, (response_id,), ignore_result=True)
        return
    from responses_app.loop.runner import run_response

    task = asyncio.get_running_loop().create_task(run_response(response_id, started=started))
    _background.add(task)
    task.add_done_callback(_done)


def prepare_dispatch(response_id: str) -> Callable[[], Awaitable[None]] | None:
    """With Celery: the message that starts ``response_id``'s loop, built now (it needs only the
    id), and the coroutine function that sends it once the response is committed. None when loops
    run in this process (:func:`dispatch_response` then)."""
    if dispatch_mode() != "celery":
        return None
    from responses_app.loop.supervision import celery_redis
    from responses_app.loop.supervision.reaper import ensure_reaper
    from responses_app.tasks import run_response_task

    ensure_reaper()
    return celery_redis.prepare(run_response_task, (response_id,), ignore_result=True).push


def _done(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("inline loop crashed", exc_info=task.exception())


def dispatch_response_sync(response_id: str) -> None:
    """From synchronous code (admin, commands): Celery, or the process's background loop host."""
    if dispatch_mode() == "celery":
        from responses_app.tasks import run_response_task

        run_response_task.apply_async((response_id,), ignore_result=True)
        return
    from responses_app.loop.runner import run_response
    from responses_app.loop.supervision.host import loop_host

    loop_host.submit(run_response(response_id))


async def dispatch_resume(response_id: str, takeover: int) -> None:
    """Hand a taken-over response to a new loop (a Celery worker, or this process). Returns at once."""
    if dispatch_mode() == "celery":
        from responses_app.loop.supervision import celery_redis
        from responses_app.tasks import resume_response_task

        await celery_redis.apply_async(resume_response_task, (response_id, takeover), ignore_result=True)
        return
    from responses_app.loop.runner import resume_response

    task = asyncio.get_running_loop().create_task(resume_response(response_id, takeover=takeover))
    _background.add(task)
    task.add_done_callback(_done)


def dispatch_resume_sync(response_id: str, takeover: int) -> None:
    """The same from synchronous code (Celery beat, commands)."""
    if dispatch_mode() == "celery":
        from responses_app.tasks import resume_response_task

        resume_response_task.apply_async((response_id, takeover), ignore_result=True)
        return
    from responses_app.loop.runner import resume_response
    from responses_app.loop.supervision.host import loop_host

    loop_host.submit(resume_response(response_id, takeover=takeover))
