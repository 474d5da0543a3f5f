"""An ASGI front for the API paths: Django's handler without its per-request thread hops.

Django's ``ASGIHandler`` gives every request a fresh worker thread (``ThreadSensitiveContext``)
and sends ``request_started``/``request_finished`` through it, for sync middleware and views
that the Responses API does not use (its views are async and keep database work on their own
threads). Under hundreds of concurrent streams those thread starts stall the event loop.
``api_asgi_app(django_app)`` routes paths under ``prefix`` (default ``/v1/``) to this lean
handler and everything else (the admin) to ``django_app`` unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.urls import get_script_prefix as current_script_prefix
from django.urls import set_script_prefix

from responses_app.api.receive import ReceiveQueue
from responses_app.api.streaming import ClientTooSlow, EventStreamResponse, bounded_send

logger = logging.getLogger(__name__)
Scope = dict[str, Any]
App = Callable[[Scope, Callable, Callable], Awaitable[None]]


class LeanASGIHandler(ASGIHandler):
    """Serves async API views on the event loop thread, with no per-request thread."""

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            raise ValueError(f"LeanASGIHandler only serves HTTP, not {scope['type']}")
        try:
            body_file = await self.read_body(receive)
        except Exception:  # noqa: BLE001 - the client went away while sending
            return
        prefix = get_script_prefix(scope)
        if not prefix.endswith("/"):
            prefix += "/"
        if prefix != current_script_prefix():  # (each set keeps a copy in the task's context)
            set_script_prefix(prefix)
        # The request is served in this task, which the client's disconnect cancels: under our
        # daphne, the connection's queue hands the disconnect to a callback; elsewhere a second
        # task waits for it. What this frame keeps for a stream's life is only what sending it
        # needs: the request, its body and Django's response object are dropped once the body is
        # known.
        task = asyncio.current_task()
        gone = _Disconnect(task)
        queue = getattr(receive, "__self__", None)
        if isinstance(queue, ReceiveQueue) and task is not None and queue.take_over(gone.message):
            watcher = None
        else:
            queue = None
            watcher = asyncio.ensure_future(self._cancel_on_disconnect(receive, gone))
        send = bounded_send(send)  # backpressure: a client that stops reading is dropped
        try:
            response = await self._respond(scope, body_file)
            del body_file  # closed: the view has read what it needed
            sending = self.send_response(response, send)
            del response
            try:
                await sending
            except ClientTooSlow:
                pass
            except asyncio.CancelledError:
                raise
            except Exception:
                # A stream whose body failed half-way: logged, and ended (left open, daphne would
                # keep the client waiting forever); the client reconnects with starting_after.
                logger.exception("sending the response to %s failed", scope.get("path", ""))
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body"})
        except asyncio.CancelledError:
            if not gone.seen or task is None:
                raise  # not the client's disconnect (the server shutting down): passed on
            task.uncancel()  # the client went away: nothing more to send
        finally:
            if watcher is not None:
                watcher.cancel()
            if queue is not None:
                queue.take_over(None)
        # No request_finished here: API views hold no database connection on this thread.

    async def _cancel_on_disconnect(self, receive: Callable, gone: _Disconnect) -> None:
        """Cancel the task serving the request when the client disconnects."""
        try:
            await self.listen_for_disconnect(receive)
        except asyncio.CancelledError:
            raise  # the response was sent
        except Exception:  # noqa: BLE001 - RequestAborted: the client went away
            pass
        gone.message({"type": "http.disconnect"})

    async def _respond(self, scope: Scope, body_file: Any) -> Any:
        """The response to the request in ``scope``; its body file is closed once it is made.

        A streamed response keeps no reference to its request (Django's closer of the request,
        which only closes uploaded files and is run at once): a stream holds the request's
        objects (its ``META``, headers, body, resolver match) for none of its life."""
        try:
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                return error_response
            try:
                response = await self.get_response_async(request)
            except Exception as exc:  # noqa: BLE001 - Django's own conversion to a response
                response = response_for_exception(request, exc)
            response._handler_class = self.__class__
            if response.streaming and getattr(response, "is_async", False):
                with contextlib.suppress(ValueError):
                    response._resource_closers.remove(request.close)
                request.close()
            return response
        finally:
            body_file.close()

    async def send_response(self, response: Any, send: Callable) -> None:
        """Django's, with an async streaming body read one layer closer to its source: its
        ``streaming_content`` (parts as bytes) rather than ``__aiter__``, which wraps it in one
        more async generator, and each part sent whole when it fits one chunk. That is per SSE
        batch of every stream; the messages sent are the same. An :class:`EventStreamResponse`
        is read from its own iterator (its parts are bytes already), and the response object is
        not kept once its head is sent."""
        if not (response.streaming and getattr(response, "is_async", False)):
            await super().send_response(response, send)
            return
        start = _start_message(response)
        if isinstance(response, EventStreamResponse):
            content = response.parts
        else:
            content = response.streaming_content
        del response
        size = self.chunk_size
        try:
            await send(start)
            del start
            async for part in content:
                if len(part) <= size:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                    part = None  # sent: not held while the next part is awaited
                    continue
                for offset in range(0, len(part), size):
                    await send(
                        {
                            "type": "http.response.body",
                            "body": part[offset : offset + size],
                            "more_body": True,
                        }
                    )
        finally:
            await _close(content)
        await send({"type": "http.response.body"})


class _Disconnect:
    """Whether a request's client has gone; its arrival cancels the task serving the request."""

    __slots__ = ("task", "seen")

    def __init__(self, task: asyncio.Task | None) -> None:
        self.task = task
        self.seen = False

    def message(self, message: dict[str, Any]) -> None:
        """A message after the request's body: only ever its disconnect (ASGI)."""
        if message.get("type") == "http.disconnect" and not self.seen:
            self.seen = True
            if self.task is not None:
                self.task.cancel()


async def _close(content: Any) -> None:
    """Close a streamed body in a task of its own: its cleanup (a stream's unsubscribe, the
    release of its concurrency slot) is not cut short when the client's disconnect cancels the
    request's task meanwhile (a dropped slow client is disconnected as its stream closes)."""
    aclose = getattr(content, "aclose", None)
    if aclose is None or getattr(content, "ag_frame", True) is None:
        return  # nothing to close, or an async generator that has finished already
    await asyncio.shield(aclose())


def _start_message(response: Any) -> dict[str, Any]:
    """``http.response.start`` for ``response``, its headers as Django builds them."""
    headers = []
    for header, value in response.items():
        if isinstance(header, str):
            header = header.encode("ascii")
        if isinstance(value, str):
            value = value.encode("latin1")
        headers.append((bytes(header), bytes(value)))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


def api_asgi_app(django_app: App, *, prefix: str = "/v1/") -> App:
    """``django_app``, with HTTP requests under ``prefix`` served by :class:`LeanASGIHandler`."""
    lean = LeanASGIHandler()

    async def app(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(prefix):
            await lean(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return app
