"""Hand a stored response to its loop: in this process (inline) or to a Celery worker."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from responses_app.conf import openresponses_settings

logger = logging.getLogger(__name__)
_background: set[asyncio.Task] = set()

#: The header of a loop task's message that carries what the loop's start would read back: the
#: response as stored and its input items (:func:`carried_start`). Any worker that does not know
#: it ignores it (a header, not an argument), and a message without it starts as before.
START_HEADER = "openresponses_start"
#: The largest start carried in a message (its JSON, characters); a larger one is read back.
CARRIED_START_MAX = 64 * 1024


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


def prepare_dispatch(response_id: str, *, carried: str | None = None) -> Callable[[], Awaitable[None]] | None:
    """With Celery: the message that starts ``response_id``'s loop, built now (it needs only the
    id, and ``carried``: :func:`carried_start`), and the coroutine function that sends it once the
    response is committed. None when loops run in this process (:func:`dispatch_response` then)."""
    if dispatch_mode() != "celery":
        return None
    from responses_app.loop.supervision import celery_redis
    from responses_app.loop.supervision.reaper import ensure_reaper
    from responses_app.tasks import run_response_task

    ensure_reaper()
    options: dict[str, Any] = {"ignore_result": True}
    if carried is not None:
        options["headers"] = {START_HEADER: carried}
    return celery_redis.prepare(run_response_task, (response_id,), **options).push


def carried_start(response: Any, items: list[dict[str, Any]]) -> str | None:
    """What a worker's loop needs to send its first upstream request before its start is stored:
    the queued ``response`` as it is being stored (its fields by column name) and its input items,
    as JSON for the message's :data:`START_HEADER`. Only for a response whose context is its own
    input (no earlier response, no conversation), and up to :data:`CARRIED_START_MAX`; else None
    (the worker's start reads the context back, as before).

    The worker then starts the response (``queued → in_progress``) while its loop builds and
    sends the upstream request: the start's round trip and commit leave the way to the first
    token (``runner.run_response``)."""
    if response.ancestor_ids or response.conversation_id:
        return None
    fields = {f.attname: getattr(response, f.attname) for f in type(response)._meta.concrete_fields}
    try:
        text = json.dumps({"response": fields, "context": items}, separators=(",", ":"))
    except (TypeError, ValueError):  # (a value JSON does not take: the worker reads it back)
        return None
    return text if len(text) <= CARRIED_START_MAX else None


def response_from_carried(text: str) -> tuple[Any, list[dict[str, Any]]]:
    """The response (still queued, as stored) and its context of a :func:`carried_start`."""
    from responses_app.models import Response

    carried = json.loads(text)
    fields = carried["response"]
    names = [f.attname for f in Response._meta.concrete_fields]
    return Response.from_db("default", names, [fields[name] for name in names]), carried["context"]


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
