"""One flow per operation, called by every front end: HTTP views, the WebSocket consumer, the admin, tasks.

A front end parses, calls one of these and shapes the answer; everything of substance (routing,
the key's model allow-list, admission under the key's limits, storage, dispatch to the loop,
cancel signals, compaction as a sample like any other) happens here, once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, close_old_connections

from providers_app.registry import Route, aroute_for_model
from responses_app import selectors
from responses_app.conf import openresponses_settings
from responses_app.errors import ApiError, invalid, not_found
from responses_app.events.bus import Subscription, get_bus
from responses_app.events.emitter import ResponseEmitter
from responses_app.events.reader import follow, terminal_response
from responses_app.gateway import limits
from responses_app.gateway.auth import ClientIdentity, check_model_allowed
from responses_app.loop.supervision.activity import cancel_everywhere_local
from responses_app.loop.supervision.db import run_db
from responses_app.loop.supervision.dispatch import (
    carried_start,
    dispatch_mode,
    dispatch_response,
    prepare_dispatch,
)
from responses_app.loop.tools import hosted_tool_names as tool_names
from responses_app.models import Response
from responses_app.observability.logs import log_prompt
from responses_app.resource import build_resource
from responses_app.services import compaction, pg_async, surface
from responses_app.services import responses as services
from responses_app.states import ResponseStatus
from responses_app.types import CompactRequest, CreateRequest

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


def hosted_tool_names() -> frozenset[str]:
    """Names of the hosted tools a request may declare (what validation accepts)."""
    return tool_names()


def released(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, then the thread's database connection handed back as at the end of a request.

    A stream (or a wait for the loop) lasts as long as the upstream: a pooled connection held
    meanwhile would cap the open streams at the pool size.
    """

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return call


def _write(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where a write runs: on SQLite, the loops' database thread (one writer, no lock waits —
    SQLite's busy handler sleeps); elsewhere a request thread whose connection goes back to the pool."""
    if pg_async.vendor() == "sqlite":
        return functools.partial(run_db, func)
    return sync_to_async(released(func))


async def _store_new(
    *,
    meanwhile: Callable[[Response, list[dict[str, Any]] | None, asyncio.Future[bool] | None], Awaitable[None]]
    | None = None,
    early_send: bool = False,
    **kwargs: Any,
) -> Response:
    """Store a new response and its input items (``services.response_create``'s arguments).

    On PostgreSQL in one statement from this event loop (``services.pg_async``): no thread hop,
    no transaction round trips; the reads a chain or a conversation needs first take the
    request's thread. Elsewhere :func:`services.response_create` as :func:`_write` runs it.

    ``meanwhile(response, items, sending)``: work that needs only the response as it is being
    stored and its input items (it must not raise), run while that statement is on its way to and
    in PostgreSQL, else once the response is stored (the items then None). ``early_send``
    (PostgreSQL): the future ``sending`` resolves True once the statement went out on its
    connection (``services.aresponse_insert``), False if the create failed before.
    """
    if not pg_async.available():
        response = await _write(services.response_create)(**kwargs)
        if meanwhile is not None:
            await meanwhile(response, None, None)
        return response
    if services.create_reads_store(kwargs["request"]):
        response, items = await sync_to_async(released(services.response_prepare))(**kwargs)
    else:
        response, items = services.response_prepare(**kwargs)
    if meanwhile is None:
        await services.aresponse_insert(response=response, items=items)
    else:
        # This task sends the statement before it first waits; the side task runs meanwhile.
        sending = asyncio.get_running_loop().create_future() if early_send else None
        side = asyncio.ensure_future(meanwhile(response, items, sending))
        try:
            await services.aresponse_insert(response=response, items=items, sending=sending)
        finally:
            if sending is not None and not sending.done():
                sending.set_result(False)
            await asyncio.wait((side,))  # (it does not raise; a cancel of this task leaves it be)
    if kwargs.get("start"):
        if response.ancestor_ids or response.conversation_id:
            await sync_to_async(released(services.response_attach_context))(response=response, items=items)
        else:
            services.response_attach_context(response=response, items=items)
    return response


async def route_for(model: str, *, what: str = "model") -> Route:
    """The route serving ``model``, else 404 ``model_not_found`` naming ``model``."""
    route = await aroute_for_model(model)
    if route is None:
        raise ApiError(
            404,
            f"The {what} '{model}' does not exist or no provider serves it.",
            param="model",
            code="model_not_found",
        )
    return route


def upstream_error(resource: dict[str, Any], stored_error: dict[str, Any] | None) -> ApiError | None:
    """An HTTP error for a response that failed before producing anything (upstream down, 429…)."""
    if resource.get("status") != "failed" or resource.get("output") or not stored_error:
        return None
    status = int(stored_error.get("status") or 500)
    headers = {}
    if status == 429:
        headers["Retry-After"] = str(max(1, round(stored_error.get("retry_after") or 1)))
    return ApiError(
        status,
        stored_error.get("message") or "The provider failed.",
        param=stored_error.get("param"),
        code=stored_error.get("code"),
        error_type=stored_error.get("type"),
        headers=headers,
    )


def _stored_error(response_id: str) -> dict[str, Any] | None:
    return Response.objects.filter(id=response_id).values_list("error", flat=True).first()


async def stored_error(response_id: str) -> dict[str, Any] | None:
    """The full error stored on a response (status, code, type, param, retry_after)."""
    return await sync_to_async(_stored_error)(response_id)


async def raise_upstream_error(resource: dict[str, Any]) -> None:
    """Raise the stored error of a response that failed before any output, as the upstream gave it."""
    if resource.get("status") != "failed":
        return
    error = upstream_error(resource, await stored_error(resource["id"]))
    if error is not None:
        raise error


# --------------------------------------------------------------------------- create


@dataclass
class Created:
    """A stored, dispatched response. ``subscription``: its events, opened before dispatch (so
    none is missed), None for a background response; the caller closes it."""

    response: Response
    subscription: Subscription | None
    stored_at: float
    dispatched_at: float
    #: An earlier create with the same ``Idempotency-Key``: nothing new was started.
    replayed: bool = False


async def create(
    *,
    request: CreateRequest,
    identity: ClientIdentity,
    request_id: str,
    unstored_ids: Collection[str] = (),
    generate: bool = True,
    idempotency_key: str = "",
) -> Created:
    """Create a response: route, model allow-list, admission, store, dispatch (release on error).

    ``unstored_ids``: ``store: false`` responses the caller may continue (a WebSocket connection's own).
    ``generate=False`` (a prewarm): the context is stored and the response completed at once
    with no output and no sample; it can be continued like any other.
    ``idempotency_key``: a create retried with the same key (same owner) gets the response the
    first one made (``Created.replayed``) instead of starting a second one.
    """
    if idempotency_key:
        if len(idempotency_key) > 255:
            raise invalid("The Idempotency-Key header is longer than 255 characters.", "Idempotency-Key")
        earlier = await _replay(identity, idempotency_key)
        if earlier is not None:
            return earlier
    route = await route_for(request.model)
    surface.apply_surface(request, route)  # fields the route's providers cannot honour: 400 or dropped
    check_model_allowed(identity, request.model)
    try:
        return await _admit_and_start(
            request=request,
            identity=identity,
            route=route,
            request_id=request_id,
            unstored_ids=unstored_ids,
            generate=generate,
            idempotency_key=idempotency_key,
        )
    except IntegrityError:
        earlier = await _replay(identity, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return earlier  # a concurrent create with the same key won


async def _replay(identity: ClientIdentity, key: str) -> Created | None:
    response = await _write(services.response_by_idempotency_key)(owner=identity.owner, key=key)
    if response is None:
        return None
    subscription = None if response.background else await get_bus().subscribe(response.id)
    now = time.perf_counter()
    return Created(response, subscription, now, now, replayed=True)


async def _admit_and_start(
    *,
    request: CreateRequest,
    identity: ClientIdentity,
    route: Route,
    request_id: str,
    unstored_ids: Collection[str] = (),
    generate: bool = True,
    idempotency_key: str = "",
) -> Created:
    await limits.admit(owner=identity.owner, limits=limits.limits_for(identity), ticket=request_id)
    # In-process loops start right away: the response is stored already started, with its context.
    start = generate and dispatch_mode() == "inline" and not request.background
    # A worker's loop: the subscription and the Celery message need only the response and its
    # input, so they are made while the statement storing it runs. A message that carries the
    # response and its input (``dispatch.carried_start``) is sent then too, once that statement
    # is out: the worker's start waits for its commit on the response's start lock
    # (``services.responses.start_lock``) while its loop sends the upstream request. Any other
    # message is sent once the response is stored.
    early: dict[str, Any] = {}

    async def meanwhile(
        response: Response, items: list[dict[str, Any]] | None, sending: asyncio.Future[bool] | None
    ) -> None:
        try:
            subscription = early["subscription"] = await get_bus().subscribe(response.id)
        except Exception as exc:  # noqa: BLE001 - raised below, once the response is stored
            early["error"] = exc
            return
        if early.get("abandoned"):  # the create failed (or was cancelled) meanwhile
            await subscription.close()
            return
        try:
            carried = carried_start(response, items) if items is not None else None
            push = early["push"] = prepare_dispatch(response.id, carried=carried)
        except Exception as exc:  # noqa: BLE001 - raised below, once the response is stored
            del early["subscription"]
            await subscription.close()
            early["error"] = exc
            return
        if carried is None or push is None or sending is None or not await sending:
            return  # (sent once the response is stored, if it is)
        early["sent"] = True
        try:
            await push()
        except Exception as exc:  # noqa: BLE001 - raised below, once the response is stored
            early["push_error"] = exc

    overlap = generate and not request.background and dispatch_mode() == "celery"
    # Sent before the commit only where the message can carry the start (no earlier response or
    # conversation to read), and not with an idempotency key: a create that loses its key's race
    # must start no loop.
    early_send = overlap and not (idempotency_key or request.previous_response_id or request.conversation_id)
    try:
        response = await _store_new(
            request=request,
            owner=identity.owner,
            route=route,
            unstored_ids=frozenset(unstored_ids),
            request_id=request_id,
            start=start,
            idempotency_key=idempotency_key,
            meanwhile=meanwhile if overlap else None,
            early_send=early_send,
        )
    except BaseException:
        early["abandoned"] = True
        if "subscription" in early:
            await early["subscription"].close()
        await limits.release(owner=identity.owner, ticket=request_id)
        raise
    stored_at = time.perf_counter()
    logger.info(
        "created %s: model %s via %s for %s",
        response.id,
        request.model,
        route.provider,
        identity.name or "anonymous",
    )
    log_prompt(logger, response.id, response.search_text)
    try:
        if request.background:
            await dispatch_response(response.id)
            return Created(response, None, stored_at, time.perf_counter())
        if not overlap:
            subscription = await get_bus().subscribe(response.id)
        elif "error" in early:
            raise early["error"]
        else:
            subscription = early["subscription"]
    except UNAVAILABLE as exc:
        raise await _not_started(response, identity, request_id, exc) from exc
    try:
        if "push_error" in early:
            raise early["push_error"]
        if early.get("sent"):
            pass  # sent while the response was being stored
        elif overlap and early.get("push") is not None:
            await early["push"]()
        elif generate:
            await dispatch_response(response.id, started=response if start else None)
        else:
            batch = await _write(_complete_unsampled)(response=response)
            await get_bus().publish(response.id, batch)
    except BaseException as exc:
        await subscription.close()
        if generate and isinstance(exc, UNAVAILABLE):
            raise await _not_started(response, identity, request_id, exc) from exc
        raise
    return Created(response, subscription, stored_at, time.perf_counter())


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    return (OSError, RedisError, OperationalError)


#: What a lost Redis (broker or bus) raises from a dispatch or a subscription.
UNAVAILABLE = _unavailable_errors()


async def _not_started(
    response: Response, identity: ClientIdentity, request_id: str, exc: BaseException
) -> ApiError:
    """A stored response that could not be handed to a loop (Redis unreachable): removed unless
    something started it after all, its limiter slot freed; the client gets a 503 to retry."""
    logger.warning("could not start %s (Redis unreachable): %r", response.id, exc)
    try:
        await _write(services.response_discard_unstarted)(response_id=response.id)
    except Exception:  # noqa: BLE001 - the reaper ends it as never started
        logger.warning("could not remove the unstarted response %s", response.id, exc_info=True)
    await limits.release(owner=identity.owner, ticket=request_id)
    return ApiError(
        503,
        "The server could not hand the response to a worker (its queue is unreachable); "
        "nothing was created. Retry shortly.",
        code="service_unavailable",
        headers={"Retry-After": "1"},
    )


def _complete_unsampled(*, response: Response) -> list[tuple[int, str, str]]:
    """Complete a prewarm response at once (no sample): its events through the emitter, stored
    with its final state by ``response_finish`` (usage, limits settled, metrics)."""
    events: list[tuple[int, str, str]] = []

    class Collect:
        def add(self, sequence_number: int, event_type: str, payload: str) -> None:
            events.append((sequence_number, event_type, payload))

    emitter = ResponseEmitter(
        build_resource(response, [], status=ResponseStatus.QUEUED), Collect(), provider=response.provider
    )
    emitter.emit_lifecycle("response.created")
    emitter.resource["status"] = ResponseStatus.IN_PROGRESS
    emitter.emit_lifecycle("response.in_progress")
    emitter.finish("completed")
    services.response_finish(
        response_id=response.id,
        status=ResponseStatus.COMPLETED,
        output=[],
        usage=emitter.usage,
        response=response,
        events=events,
    )
    return events


async def result(created: Created) -> dict[str, Any]:
    """Wait for a created response's terminal state; its resource (the subscription is closed).

    A response that failed before any output raises the error the upstream gave (429, 5xx…).
    """
    response_id = created.response.id
    subscription = created.subscription
    assert subscription is not None, "a background response has no result to wait for"
    try:
        async for batch in follow(
            response_id,
            subscription,
            catch_up=created.replayed,
            keepalive=float(openresponses_settings.KEEPALIVE_SECONDS),
        ):
            resource = terminal_response(batch)
            if resource is not None:
                break
        else:
            resource = await sync_to_async(_resource_of)(response_id)
    finally:
        await subscription.close()
    await raise_upstream_error(resource)
    return resource


def _resource_of(response_id: str) -> dict[str, Any]:
    return selectors.response_resource(response=Response.objects.get(id=response_id))


# --------------------------------------------------------------------------- cancel and delete


async def replay_start(
    *, response_id: str, identity: ClientIdentity, request_id: str
) -> tuple[Subscription, Callable[[], Awaitable[None]]]:
    """Admit a replay of a stored response's events and subscribe to its live ones.

    A replay streams as long as a live response and costs the server as much, so it holds one of
    the key's concurrency slots (and counts as a request for ``rpm``; not for tokens, it uses no
    model) until the returned ``release`` runs at the end of its stream.
    """
    ticket = limits.REPLAY_PREFIX + request_id
    own = limits.limits_for(identity)
    await limits.admit(
        owner=identity.owner,
        limits=limits.Limits(rpm=own.rpm, max_concurrent=own.max_concurrent),
        ticket=ticket,
    )

    async def release() -> None:
        await limits.release(owner=identity.owner, ticket=ticket)

    try:
        subscription = await get_bus().subscribe(response_id)
    except BaseException:
        await release()
        raise
    return subscription, release


def cancel_response(*, response: Response) -> Response:
    """Cancel through the state machine, then signal the loop if it runs in this process (the
    others notice within a second by polling). Synchronous: the admin calls it as is."""
    cancelled = services.response_cancel(response=response)
    cancel_everywhere_local(response.id)
    return cancelled


def _owned(response_id: str, owner: str | None, *, include_unstored: bool) -> Response:
    if not include_unstored:
        return selectors.response_get(response_id=response_id, owner=owner)
    qs = Response.objects.filter(id=response_id)
    if owner is not None:
        qs = qs.filter(owner=owner)
    response = qs.first()
    if response is None:
        raise not_found(f"Response with id '{response_id}' not found.", "response_id")
    return response


async def cancel(*, response_id: str, owner: str | None, include_unstored: bool = False) -> dict[str, Any]:
    """Cancel the caller's response; its resource as it is now.

    ``include_unstored``: ``store: false`` responses too (a WebSocket connection's own turn).
    """

    def work() -> dict[str, Any]:
        response = _owned(response_id, owner, include_unstored=include_unstored)
        return selectors.response_resource(response=cancel_response(response=response))

    return await sync_to_async(work)()


def delete_response(*, response: Response) -> None:
    """Delete a response with its items and events (synchronous: the admin calls it as is)."""
    services.response_delete(response=response)


async def delete(*, response_id: str, owner: str | None) -> None:
    """Delete the caller's stored response (404 when it has none by that id)."""

    def work() -> None:
        delete_response(response=selectors.response_get(response_id=response_id, owner=owner))

    await sync_to_async(work)()


# --------------------------------------------------------------------------- compact


async def compact(*, request: CompactRequest, identity: ClientIdentity, request_id: str) -> dict[str, Any]:
    """Compact a conversation: its summary is written by a sample like any other.

    The summarizing sample is a ``store: false`` response run by the loop, so it is admitted
    under the key's limits, billed (a usage record with its cost), falls back like any sample
    and keeps its wire log; the ``CompactResource`` carries that response's id.
    """
    route = await route_for(request.model)
    check_model_allowed(identity, request.model)
    items = await sync_to_async(compaction.conversation_items)(
        previous_response_id=request.previous_response_id,
        input_items=request.input_items,
        references=request.item_references,
        owner=identity.owner,
    )
    if not items:
        raise invalid(
            "Nothing to compact: send 'input' and/or 'previous_response_id'.",
            "input",
            "missing_required_parameter",
        )
    writer = compaction.summary_model() or request.model
    writer_route = route if writer == request.model else await route_for(writer, what="compaction model")
    sent = compaction.summary_input(
        items,
        instructions=request.instructions,
        window=compaction.context_window(writer, writer_route.upstream_model),
    )
    sample = CreateRequest(
        model=writer,
        params={"instructions": compaction.SUMMARIZER_INSTRUCTIONS, "truncation": "disabled"},
        input_items=sent,
        store=False,
    )
    created = await _admit_and_start(
        request=sample, identity=identity, route=writer_route, request_id=request_id
    )
    resource = await result(created)
    if resource.get("status") != "completed":
        error = resource.get("error") or {}
        raise ApiError(
            502,
            error.get("message") or f"The compaction model's answer ended {resource.get('status')}.",
            code=error.get("code") or "upstream_error",
        )
    summary = "".join(
        part.get("text") or ""
        for item in resource.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    ).strip()
    if not summary:
        raise ApiError(502, "The compaction model returned an empty summary.", code="upstream_error")
    return compaction.compaction_resource(
        resource_id=resource["id"],
        items=items,
        summary=summary,
        writer=writer,
        usage=compaction.summary_usage(resource.get("usage"), sent=sent, summary=summary),
        source_response_id=request.previous_response_id,
    )
