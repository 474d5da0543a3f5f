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
from django.urls import set_script_prefix

from responses_app.api.streaming import ClientTooSlow, bounded_send

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
        send = bounded_send(send)  # backpressure: a client that stops reading is dropped
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process() -> Any:
            try:
                response = await self.get_response_async(request)
            except Exception as exc:  # noqa: BLE001 - Django's own conversion to a response
                response = response_for_exception(request, exc)
            response._handler_class = self.__class__
            try:
                await self.send_response(response, send)
            except (asyncio.CancelledError, ClientTooSlow):
                pass
            except Exception:
                # A stream whose body failed half-way: logged, and ended (left open, daphne would
                # keep the client waiting forever); the client reconnects with starting_after.
                logger.exception("sending the response to %s failed", request.path)
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body"})
            return response

        tasks = [asyncio.ensure_future(self.listen_for_disconnect(receive)), asyncio.ensure_future(process())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - a dropped client
                    pass
            elif not task.cancelled():
                task.exception()  # retrieved: RequestAborted from the disconnect listener is expected
        # No request_finished here: API views hold no database connection on this thread.
        body_file.close()

    async def send_response(self, response: Any, send: Callable) -> None:
        """Django's, with an async streaming body read one layer closer to its source: its
        ``streaming_content`` (parts as bytes) rather than ``__aiter__``, which wraps it in one
        more async generator, and each part sent whole when it fits one chunk. That is per SSE
        batch of every stream; the messages sent are the same."""
        if not (response.streaming and getattr(response, "is_async", False)):
            await super().send_response(response, send)
            return
        headers = []
        for header, value in response.items():  # as Django builds them
            if isinstance(header, str):
                header = header.encode("ascii")
            if isinstance(value, str):
                value = value.encode("latin1")
            headers.append((bytes(header), bytes(value)))
        for cookie in response.cookies.values():
            headers.append((b"Set-Cookie", cookie.output(header="").encode("ascii").strip()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        size = self.chunk_size
        async with contextlib.aclosing(response.streaming_content) as content:
            async for part in content:
                if len(part) <= size:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                    continue
                for start in range(0, len(part), size):
                    await send(
                        {"type": "http.response.body", "body": part[start : start + size], "more_body": True}
                    )
        await send({"type": "http.response.body"})


def api_asgi_app(django_app: App, *, prefix: str = "/v1/") -> App:
    """``django_app``, with HTTP requests under ``prefix`` served by :class:`LeanASGIHandler`."""
    lean = LeanASGIHandler()

    async def app(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(prefix):
            await lean(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return app
