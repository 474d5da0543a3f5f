"""Thin HTTP views for the Responses API: parse, call services, shape the answer."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig, SynchronousOnlyOperation
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from providers_app.registry import aroute_for_model
from responses_app import selectors
from responses_app.api.streaming import sse_response, sse_stream, terminal_response
from responses_app.api.validation import parse_json_body, validate_create
from responses_app.conf import openresponses_settings
from responses_app.errors import ApiError, invalid
from responses_app.events.bus import get_bus
from responses_app.events.reader import follow
from responses_app.gateway import limits
from responses_app.gateway.auth import ClientIdentity, authenticate, check_model_allowed
from responses_app.loop.supervision.activity import cancel_everywhere_local
from responses_app.loop.supervision.db import run_db
from responses_app.loop.supervision.dispatch import dispatch_mode, dispatch_response
from responses_app.loop.tools import hosted_tools
from responses_app.observability import tracing
from responses_app.observability.logs import bind as bind_log_context
from responses_app.observability.logs import log_prompt, new_request_id
from responses_app.resource import build_resource
from responses_app.services import responses as services

logger = logging.getLogger(__name__)
FIRST_EVENT_WAIT = 2.0


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def api_view(
    methods: set[str],
) -> Callable[[Callable[..., Awaitable[HttpResponse]]], Callable[..., Awaitable[HttpResponse]]]:
    """Errors in the spec's shape for everything (never an HTML page), and method checks."""

    def decorate(view: Callable[..., Awaitable[HttpResponse]]) -> Callable[..., Awaitable[HttpResponse]]:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            # A request id per request: in the X-Request-Id header, on the response row, in every log line.
            request_id = new_request_id()
            bind_log_context(request_id=request_id)
            request.openresponses_request_id = request_id  # type: ignore[attr-defined]
            with tracing.span(
                "openresponses.request",
                {
                    "http.request.method": request.method,
                    "openresponses.endpoint": view.__name__,
                    "openresponses.request_id": request_id,
                },
            ):
                response = await handle(request, *args, **kwargs)
            response["X-Request-Id"] = request_id
            return response

        async def handle(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return ApiError(
                    405,
                    f"Method {request.method} is not allowed here.",
                    code="method_not_allowed",
                    headers={"Allow": ", ".join(sorted(methods))},
                ).to_response()
            try:
                return await view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.to_response()
            except RequestDataTooBig:
                return ApiError(413, "The request body is too large.", code="request_too_large").to_response()
            except Exception:
                logger.exception("unhandled error in %s", view.__name__)
                return ApiError(
                    500, "The server failed to handle the request.", code="server_error"
                ).to_response()

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        wrapper.openresponses_api = True  # type: ignore[attr-defined]  # see middleware.ApiFastPathMiddleware
        return wrapper

    return decorate


async def identify(request: HttpRequest) -> ClientIdentity:
    """Run the authentication hook on the event loop; in a thread only when it needs the database.

    (Keys are cached in-process, so most requests need no query and no thread hop.)
    """
    try:
        return authenticate(request)
    except SynchronousOnlyOperation:
        return await sync_to_async(authenticate)(request)


def _upstream_error(resource: dict[str, Any], stored_error: dict[str, Any] | None) -> ApiError | None:
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


def _released(func: Callable[..., Any]) -> Callable[..., Any]:
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


def _write(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Where a write runs: on SQLite, the loops' database thread (one writer, no lock waits —
    SQLite's busy handler sleeps); elsewhere a request thread whose connection goes back to the pool."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return functools.partial(run_db, func)
    return sync_to_async(_released(func))


def _server_timing(marks: tuple[float, ...], wall: float) -> str:
    """``Server-Timing`` of a create: parse, db, dispatch, wait (for the first output or the end), t0 (epoch)."""
    names = ("parse", "db", "dispatch", "wait")
    parts = [
        f"{name};dur={(marks[i + 1] - marks[i]) * 1000:.2f}" for i, name in enumerate(names[: len(marks) - 1])
    ]
    return ", ".join(parts) + f', t0;desc="{wall:.6f}"'


@api_view({"POST"})
async def create_response(request: HttpRequest) -> HttpResponse:
    started = time.perf_counter()
    wall = time.time()
    identity = await identify(request)
    body = parse_json_body(request.body)
    create = validate_create(body, hosted_tool_names=frozenset(hosted_tools()))
    route = await aroute_for_model(create.model)
    if route is None:
        raise ApiError(
            404,
            f"The model '{create.model}' does not exist or no provider serves it.",
            param="model",
            code="model_not_found",
        )
    check_model_allowed(identity, create.model)
    request_id = request.openresponses_request_id  # type: ignore[attr-defined]
    await limits.admit(owner=identity.owner, limits=limits.limits_for(identity), ticket=request_id)
    parsed = time.perf_counter()
    # In-process loops start right away: the response is stored already started, with its context.
    start = dispatch_mode() == "inline" and not create.background
    try:
        response = await _write(services.response_create)(
            request=create, owner=identity.owner, route=route, request_id=request_id, start=start
        )
    except BaseException:
        await limits.release(owner=identity.owner, ticket=request_id)
        raise
    stored = time.perf_counter()
    logger.info(
        "created %s: model %s via %s for %s",
        response.id,
        create.model,
        route.provider,
        identity.name or "anonymous",
    )
    log_prompt(logger, response.id, response.search_text)

    if create.background:
        await dispatch_response(response.id)
        timing = _server_timing((started, parsed, stored, time.perf_counter()), wall)
        return json_response(build_resource(response, []), headers={"Server-Timing": timing})

    bus = get_bus()
    subscription = await bus.subscribe(response.id)
    try:
        await dispatch_response(response.id, started=response if start else None)
    except Exception:
        await subscription.close()
        raise
    marks = (started, parsed, stored, time.perf_counter())
    if create.stream:
        return await _stream_new(response.id, subscription, marks, wall, identity)
    try:
        async for batch in follow(
            response.id,
            subscription,
            catch_up=False,
            keepalive=float(openresponses_settings.KEEPALIVE_SECONDS),
        ):
            resource = terminal_response(batch)
            if resource is not None:
                break
        else:
            resource = await sync_to_async(
                lambda: selectors.response_resource(
                    response=selectors.response_get(response_id=response.id, owner=None)
                )
            )()
    finally:
        await subscription.close()
    if resource.get("status") == "failed":
        stored_error = await sync_to_async(
            lambda: type(response).objects.filter(id=response.id).values_list("error", flat=True).first()
        )()
        error = _upstream_error(resource, stored_error)
        if error is not None:
            raise error
    return json_response(
        resource, headers={"Server-Timing": _server_timing((*marks, time.perf_counter()), wall)}
    )


async def _stream_new(
    response_id: str, subscription: Any, marks: tuple[float, ...], wall: float, identity: ClientIdentity
) -> HttpResponse:
    """Wait briefly for the first output so an upstream refusal (429, 5xx) can still be an HTTP error."""
    prefetched = []
    deadline = time.monotonic() + FIRST_EVENT_WAIT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        batch = await subscription.get(remaining)
        if batch is None:
            break
        prefetched.append(batch)
        types = {event_type for _, event_type, _ in batch}
        if types - {
            "response.created",
            "response.in_progress",
            "error",
        }:  # an error: its response.failed follows
            break
    timing = _server_timing((*marks, time.perf_counter()), wall)
    terminal = terminal_response(prefetched[-1]) if prefetched else None
    if terminal is not None and terminal.get("status") == "failed":
        from responses_app.models import Response

        stored_error = await sync_to_async(
            lambda: Response.objects.filter(id=response_id).values_list("error", flat=True).first()
        )()
        error = _upstream_error(terminal, stored_error)
        if error is not None:
            await subscription.close()
            raise error
    on_disconnect = None
    if openresponses_settings.DISCONNECT_CANCELS:

        async def on_disconnect() -> None:
            await _cancel(response_id, identity.owner)

    last = -1
    if prefetched:
        last = prefetched[-1][-1][0]
    iterator = sse_stream(
        response_id,
        subscription,
        after=last,
        catch_up=False,
        prefetched=prefetched,
        on_disconnect=on_disconnect,
    )
    response = sse_response(iterator)
    response["Server-Timing"] = timing
    return response


async def _cancel(response_id: str, owner: str | None) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        response = selectors.response_get(response_id=response_id, owner=owner)
        cancelled = services.response_cancel(response=response)
        return selectors.response_resource(response=cancelled)

    resource = await sync_to_async(work)()
    cancel_everywhere_local(response_id)
    return resource


@api_view({"GET", "DELETE"})
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    identity = await identify(request)
    if request.method == "DELETE":

        def delete() -> None:
            response = selectors.response_get(response_id=response_id, owner=identity.owner)
            services.response_delete(response=response)

        await sync_to_async(delete)()
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})
    streamed = request.GET.get("stream") in {"true", "1"}
    get = _released(selectors.response_get) if streamed else selectors.response_get
    response = await sync_to_async(get)(response_id=response_id, owner=identity.owner)
    if streamed:
        raw_after = request.GET.get("starting_after", "-1")
        try:
            after = int(raw_after)
        except ValueError:
            raise invalid(
                f"Invalid 'starting_after': {raw_after!r} is not an integer.", "starting_after"
            ) from None
        subscription = await get_bus().subscribe(response.id)
        return sse_response(sse_stream(response.id, subscription, after=after, catch_up=True))
    resource = await sync_to_async(selectors.response_resource)(response=response)
    return json_response(resource)


@api_view({"POST"})
async def cancel_response(request: HttpRequest, response_id: str) -> HttpResponse:
    identity = await identify(request)
    resource = await _cancel(response_id, identity.owner)
    return json_response(resource)


@api_view({"GET"})
async def list_input_items(request: HttpRequest, response_id: str) -> HttpResponse:
    identity = await identify(request)
    try:
        limit = int(request.GET.get("limit", "20"))
    except ValueError:
        raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit") from None
    if not 1 <= limit <= 100:
        raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit")
    order = request.GET.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise invalid("Invalid 'order': expected 'asc' or 'desc'.", "order")
    after = request.GET.get("after") or None

    def page() -> dict[str, Any]:
        response = selectors.response_get(response_id=response_id, owner=identity.owner)
        return selectors.response_input_items_page(response=response, after=after, limit=limit, order=order)

    return json_response(await sync_to_async(page)())


async def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return ApiError(404, f"No route for {request.method} {request.path}.", code="not_found").to_response()
