"""SSE: encode stored/live events as frames, one write per batch, ``data: [DONE]`` at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

from responses_app.conf import openresponses_settings
from responses_app.events.bus import Subscription
from responses_app.events.reader import follow
from responses_app.events.sink import Batch
from responses_app.states import TERMINAL_EVENT_TYPES

DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode_batch(batch: Batch) -> str:
    frames = "".join(f"event: {event_type}\ndata: {payload}\n\n" for _, event_type, payload in batch)
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
) -> AsyncIterator[str]:
    keepalive = float(openresponses_settings.KEEPALIVE_SECONDS)
    finished = False
    try:
        for batch in prefetched or []:
            if batch:
                after = batch[-1][0]
                yield encode_batch(batch)
                if batch[-1][1] in TERMINAL_EVENT_TYPES:
                    finished = True
                    return
        async for batch in follow(
            response_id, subscription, after=after, catch_up=catch_up, keepalive=keepalive
        ):
            if not batch:
                yield KEEPALIVE
                continue
            yield encode_batch(batch)
            if batch[-1][1] in TERMINAL_EVENT_TYPES:
                finished = True
        if not finished:
            yield DONE
    finally:
        await subscription.close()
        if not finished and callable(on_disconnect):
            await on_disconnect()


def sse_response(iterator: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(iterator, content_type="text/event-stream; charset=utf-8")
    for key, value in SSE_HEADERS.items():
        response[key] = value
    return response


aget = sync_to_async
