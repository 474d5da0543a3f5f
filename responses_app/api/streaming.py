"""SSE: encode stored/live events as frames, one write per batch, ``data: [DONE]`` at the end.

Writes to a client are bounded (:class:`BoundedSend`): a stream waits while the client is not
reading and is dropped after ``STREAM_WRITE_TIMEOUT`` seconds of that, so a reader that stops
reading holds at most one transport buffer, not the whole stream (issue 16, finding 6; the
reasoning and figures are in docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.http import StreamingHttpResponse

from responses_app.api.db import db_call
from responses_app.conf import openresponses_settings
from responses_app.events.bus import Subscription
from responses_app.events.reader import follow
from responses_app.events.sink import Batch
from responses_app.states import TERMINAL_EVENT_TYPES

logger = logging.getLogger(__name__)
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode_batch(batch: Batch) -> bytes:
    """A batch's SSE frames as the bytes sent (UTF-8, the response's charset; bytes pass
    Django's streaming response as they are, with no charset lookup per part)."""
    frames = "".join(f"event: {event_type}\ndata: {payload}\n\n" for _, event_type, payload in batch).encode()
    if batch and batch[-1][1] in TERMINAL_EVENT_TYPES:
        frames += DONE
    return frames


async def sse_stream(
    response_id: str,
    subscription: Subscription,
    *,
    after: int = -1,
    catch_up: bool = True,
    prefetched: list[Batch] | None = None,
    on_disconnect: object = None,
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    keepalive = float(openresponses_settings.KEEPALIVE_SECONDS)
    finished = False
    try:
        # Taken out as sent: the first batches (response.created and .in_progress carry the
        # whole response) are not kept for the life of the stream by this frame.
        while prefetched:
            batch = prefetched.pop(0)
            if batch:
                after = batch[-1][0]
                yield encode_batch(batch)
                if batch[-1][1] in TERMINAL_EVENT_TYPES:
                    finished = True
                    return
        prefetched = batch = None
        async for batch in follow(
            response_id, subscription, after=after, catch_up=catch_up, keepalive=keepalive
        ):
            if not batch:
                yield KEEPALIVE
                continue
            finished = batch[-1][1] in TERMINAL_EVENT_TYPES
            frames = encode_batch(batch)
            batch = None  # (neither held while the stream waits for its next events)
            yield frames
            frames = None
        if not finished:
            yield DONE
    finally:
        try:
            await subscription.close()
            if not finished and callable(on_disconnect):
                await on_disconnect()
        finally:
            if on_close is not None:
                await on_close()


class EventStreamResponse(StreamingHttpResponse):
    """An SSE response: ``parts`` is its body as given, bytes, which the API's ASGI handler sends
    as they come (without the per-part wrapper of ``streaming_content``)."""

    def __init__(self, parts: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(parts, **kwargs)
        self.parts = parts


def sse_response(iterator: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = EventStreamResponse(iterator, content_type="text/event-stream; charset=utf-8")
    for key, value in SSE_HEADERS.items():
        response[key] = value
    return response


aget = db_call


# --------------------------------------------------------------------------- bounded writes


class ClientTooSlow(Exception):
    """The client read nothing for ``STREAM_WRITE_TIMEOUT`` seconds: its stream is dropped."""


class _TransportWritable:
    """A Twisted push producer: the transport pauses it when its write buffer is full (64 KiB)
    and resumes it once the client has read the buffer out."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.event.set()

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's IPushProducer
        self.event.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.event.set()

    def stopProducing(self) -> None:  # noqa: N802
        self.event.set()


def _twisted_request(send: Callable[..., Any]) -> Any:
    """Daphne's HTTP request object behind its ASGI ``send``, if that is what serves us.

    Daphne's ``send`` is ``functools.partial(server.handle_reply, request)`` and writes straight
    into Twisted's transport without ever waiting: the only flow control is Twisted's own
    producer API on the request, which this reaches.
    """
    args = getattr(send, "args", None)
    if not args:
        return None
    request = args[0]
    if callable(getattr(request, "registerProducer", None)) and getattr(request, "channel", None):
        return request
    return None


def _transport_paused(request: Any) -> bool:
    """Whether Twisted's transport has paused the request's connection (its write buffer is
    past 64 KiB), until the client reads it out (``HTTPChannel``'s own flag, set and cleared by
    the same calls that pause and resume a registered producer)."""
    return bool(getattr(getattr(request, "channel", None), "_waitingForTransport", False))


class BoundedSend:
    """An ASGI ``send`` that waits while the client does not read, and gives up after ``timeout``.

    * Under daphne (Twisted), a body message sent while the transport is paused (its buffer past
      64 KiB) registers a producer on the request and waits for the transport to resume it. A
      stalled client is aborted (the buffer freed at once) and :class:`ClientTooSlow` ends the
      stream.
    * Under servers whose ``send`` waits for the socket (uvicorn, hypercorn, granian), the wait
      inside ``send`` is bounded by the same timeout.

    Django sends a streamed part in chunks of at most 64 KiB, so what waits for one client is at
    most one transport buffer, one chunk and the part being sent.
    """

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]], timeout: float) -> None:
        self._send = send
        self.timeout = timeout
        self._request = _twisted_request(send)
        self._writable: _TransportWritable | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        if message.get("type") != "http.response.body":
            await self._send(message)
            return
        more = bool(message.get("more_body"))
        if self._request is not None:
            if self._writable is None and _transport_paused(self._request):
                self._register()
            if self._writable is not None:
                if not self._writable.event.is_set():
                    await self._wait_writable()
                if not more:
                    self._unregister()
            await self._send(message)
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(message)
        except TimeoutError:
            raise ClientTooSlow(f"the client read nothing for {self.timeout:g}s") from None

    def _register(self) -> None:
        """Watch the transport from now on: registered when it is first found paused (its
        buffer full), so the producer starts paused; a stream whose client keeps reading never
        registers one (Twisted's request grows by two attributes for it, about 1.5 KiB)."""
        writable = _TransportWritable()
        writable.pauseProducing()
        try:
            self._request.registerProducer(writable, True)
        except (RuntimeError, ValueError, AttributeError):
            return  # another producer is registered, or the connection is gone: nothing to watch
        self._writable = writable

    def _unregister(self) -> None:
        if self._writable is None:
            return
        self._writable = None
        try:
            self._request.unregisterProducer()
        except AttributeError:  # the connection is already gone
            pass

    async def _wait_writable(self) -> None:
        assert self._writable is not None
        try:
            async with asyncio.timeout(self.timeout):
                await self._writable.event.wait()
        except TimeoutError:
            self._unregister()
            transport = getattr(getattr(self._request, "channel", None), "transport", None)
            if transport is not None:
                transport.abortConnection()  # a close would wait for the client to read the buffer
            logger.warning("dropped a client that read nothing for %gs", self.timeout)
            raise ClientTooSlow(f"the client read nothing for {self.timeout:g}s") from None


DEFAULT_WRITE_TIMEOUT = 30.0


def write_timeout() -> float:
    """``STREAM_WRITE_TIMEOUT`` (seconds; 30 unless set)."""
    try:
        value = float(openresponses_settings.STREAM_WRITE_TIMEOUT or DEFAULT_WRITE_TIMEOUT)
    except (TypeError, ValueError):
        return DEFAULT_WRITE_TIMEOUT
    return value if value > 0 else DEFAULT_WRITE_TIMEOUT


def bounded_send(send: Callable[[dict[str, Any]], Awaitable[None]]) -> BoundedSend:
    """``send`` with backpressure and the ``STREAM_WRITE_TIMEOUT`` bound."""
    return BoundedSend(send, write_timeout())
