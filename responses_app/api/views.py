"""Thin HTTP views for the Responses API: parse, call services, shape the answer."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig, SynchronousOnlyOperation
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from responses_app import selectors
from responses_app.api.conversation_params import parse_page
from responses_app.api.db import db_call
from responses_app.api.streaming import sse_response, sse_stream
from responses_app.api.validation import parse_json_body, validate_create
from responses_app.conf import openresponses_settings
from responses_app.errors import ApiError, invalid
from responses_app.events.reader import terminal_response
from responses_app.gateway.auth import ClientIdentity, authenticate
from responses_app.observability import tracing
from responses_app.observability.logs import bind as bind_log_context
from responses_app.observability.logs import new_request_id
from responses_app.resource import build_resource
from responses_app.services import flows

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


def json_content_type(request: HttpRequest) -> bool:
    """A JSON body (``application/json`` or ``application/*+json``), or no body at all.

    Browsers send ``text/plain``, form and multipart bodies cross-site without asking (no CORS
    preflight); refusing them keeps another site's page from running requests with this server's
    provider keys, in open mode too.
    """
    content_type = (request.content_type or "").strip().lower()
    if content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    ):
        return True
    return not content_type and not request.body


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
            if request.method == "POST" and not json_content_type(request):
                return ApiError(
                    415,
                    f"Unsupported Content-Type {request.content_type or '(none)'!r}: send 'application/json'.",
                    code="unsupported_media_type",
                ).to_response()
            try:
                return await view(request, *args, **kwargs)
            except ApiError as exc:
                return exc.to_response()
            except RequestDataTooBig:
                return ApiError(413, "The request body is too large.", code="request_too_large").to_response()
            except DATABASE_UNAVAILABLE:
                # PostgreSQL restarting, unreachable, or out of connections: not this request's
                # fault and not a bug; the client retries (a read met a dead connection first is
                # retried already, ``api/db.py``).
                logger.warning("database unavailable in %s", view.__name__, exc_info=True)
                return ApiError(
                    503,
                    "The server's database is unavailable right now. Retry shortly.",
                    code="service_unavailable",
                    headers={"Retry-After": "1"},
                ).to_response()
            except Exception:
                logger.exception("unhandled error in %s", view.__name__)
                return ApiError(
                    500, "The server failed to handle the request.", code="server_error"
                ).to_response()

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        wrapper.openresponses_api = True  # type: ignore[attr-defined]  # see middleware.ApiFastPathMiddleware
        return wrapper

    return decorate


def _database_unavailable() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        return (OperationalError, InterfaceError)
    return (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


DATABASE_UNAVAILABLE = _database_unavailable()


async def identify(request: HttpRequest) -> ClientIdentity:
    """Run the authentication hook on the event loop; in a thread only when it needs the database.

    (Keys are cached in-process, so most requests need no query and no thread hop.)
    """
    try:
        return authenticate(request)
    except SynchronousOnlyOperation:
        return await db_call(authenticate, reads=True)(request)


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
    create = validate_create(parse_json_body(request.body), hosted_tool_names=flows.hosted_tool_names())
    parsed = time.perf_counter()
    created = await flows.create(
        request=create,
        identity=identity,
        request_id=request.openresponses_request_id,  # type: ignore[attr-defined]
        idempotency_key=request.headers.get("Idempotency-Key") or "",
    )
    if created.replayed:
        return await _replayed(created, stream=create.stream)
    marks = (started, parsed, created.stored_at, created.dispatched_at)
    if created.subscription is None:  # background: the queued resource at once
        timing = _server_timing(marks, wall)
        return json_response(build_resource(created.response, []), headers={"Server-Timing": timing})
    if create.stream:
        return await _stream_new(created.response.id, created.subscription, marks, wall, identity)
    resource = await flows.result(created)
    return json_response(
        resource, headers={"Server-Timing": _server_timing((*marks, time.perf_counter()), wall)}
    )


async def _replayed(created: flows.Created, *, stream: bool) -> HttpResponse:
    """The answer to a create retried with an ``Idempotency-Key``: the first create's response, as
    the first create answered it (a stream replays from its first event)."""
    headers = {"Idempotent-Replayed": "true"}
    if created.subscription is None:
        resource = await db_call(selectors.response_resource)(response=created.response)
        return json_response(resource, headers=headers)
    if stream:
        response = sse_response(sse_stream(created.response.id, created.subscription, after=-1))
        for name, value in headers.items():
            response[name] = value
        return response
    return json_response(await flows.result(created), headers=headers)


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
    if terminal is not None:
        try:
            await flows.raise_upstream_error(terminal)
        except ApiError:
            await subscription.close()
            raise
    on_disconnect = None
    if openresponses_settings.DISCONNECT_CANCELS:

        async def on_disconnect() -> None:
            await flows.cancel(response_id=response_id, owner=identity.owner)

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


@api_view({"GET", "DELETE"})
async def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    identity = await identify(request)
    if request.method == "DELETE":
        await flows.delete(response_id=response_id, owner=identity.owner)
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})
    streamed = request.GET.get("stream") in {"true", "1"}
    after = _starting_after(request) if streamed else -1
    get = flows.released(selectors.response_get) if streamed else selectors.response_get
    response = await db_call(get, reads=True)(response_id=response_id, owner=identity.owner)
    if streamed:
        return await _replay(request, response.id, identity, after)
    resource = await db_call(selectors.response_resource, reads=True)(response=response)
    return json_response(resource)


def _starting_after(request: HttpRequest) -> int:
    """``starting_after``: -1 (everything) or a sequence number; anything else is a 400."""
    raw_after = request.GET.get("starting_after", "-1")
    try:
        after = int(raw_after)
    except ValueError:
        raise invalid(
            f"Invalid 'starting_after': {raw_after!r} is not an integer.", "starting_after"
        ) from None
    if after < -1:
        raise invalid(
            f"Invalid 'starting_after': {after} is below -1 (-1 replays every event).", "starting_after"
        )
    return after


async def _replay(
    request: HttpRequest, response_id: str, identity: ClientIdentity, after: int
) -> HttpResponse:
    """``GET …?stream=true``: the stored events, then live ones, holding a concurrency slot."""
    request_id = request.openresponses_request_id  # type: ignore[attr-defined]
    subscription, release = await flows.replay_start(
        response_id=response_id, identity=identity, request_id=request_id
    )
    return sse_response(sse_stream(response_id, subscription, after=after, catch_up=True, on_close=release))


@api_view({"POST"})
async def cancel_response(request: HttpRequest, response_id: str) -> HttpResponse:
    identity = await identify(request)
    return json_response(await flows.cancel(response_id=response_id, owner=identity.owner))


@api_view({"GET"})
async def list_input_items(request: HttpRequest, response_id: str) -> HttpResponse:
    identity = await identify(request)
    after, limit, order = parse_page(request.GET)

    def page() -> dict[str, Any]:
        response = selectors.response_get(response_id=response_id, owner=identity.owner)
        return selectors.response_input_items_page(response=response, after=after, limit=limit, order=order)

    return json_response(await db_call(page, reads=True)())


async def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return ApiError(404, f"No route for {request.method} {request.path}.", code="not_found").to_response()
