"""The API's lean ASGI front: a stream whose body fails half-way is ended, never left open."""

from __future__ import annotations

import asyncio
from typing import Any

from django.http import StreamingHttpResponse

from responses_app.api.asgi import LeanASGIHandler


async def _serve(
    respond: Any,
    *,
    method: str = "GET",
    path: str = "/v1/responses/resp_1",
    query: bytes = b"stream=true",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    disconnect: asyncio.Event | None = None,
    receive_from: Any = None,
) -> list[dict[str, Any]]:
    """One request through the lean handler, its view replaced by ``respond``: the messages it
    sends. The client stays connected until ``disconnect`` is set (never, without one);
    ``receive_from``: the handler's ``receive`` instead (a connection's queue, as under daphne)."""
    handler = LeanASGIHandler()
    handler.get_response_async = respond  # type: ignore[method-assign]
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await (disconnect.wait() if disconnect is not None else asyncio.sleep(3600))
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers or [],
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
    }
    await asyncio.wait_for(handler(scope, receive_from or receive, send), timeout=10)
    return sent


async def _test_a_failing_stream_is_ended(monkeypatch) -> list[dict[str, Any]]:
    async def body():
        yield "data: first\n\n"
        raise ConnectionError("the store went away")  # (what a failed read raised before)

    async def respond(request):
        return StreamingHttpResponse(body(), content_type="text/event-stream")

    sent = await _serve(respond)
    return sent


def test_a_stream_whose_body_fails_is_ended(monkeypatch, caplog) -> None:
    sent = asyncio.run(_test_a_failing_stream_is_ended(monkeypatch))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert sent[1]["body"] == b"data: first\n\n" and sent[1]["more_body"] is True
    # The response is ended (no more_body), so the server closes it and the client reconnects.
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    assert "sending the response to /v1/responses/resp_1 failed" in caplog.text


async def _test_a_stream_holds_no_request(monkeypatch) -> tuple[list[dict[str, Any]], list[bool]]:
    import gc
    import weakref

    from responses_app.api.streaming import sse_response

    refs: list[weakref.ref] = []
    alive: list[bool] = []

    async def body():
        yield b"data: first\n\n"
        gc.collect()
        alive.extend(ref() is not None for ref in refs)
        yield b"data: second\n\n"

    async def respond(request):
        response = sse_response(body())
        response._resource_closers.append(request.close)  # as Django's get_response_async does
        refs.extend([weakref.ref(request), weakref.ref(response)])
        return response

    sent = await _serve(
        respond,
        method="POST",
        path="/v1/responses",
        query=b"",
        body=b"{}",
        headers=[(b"content-type", b"application/json")],
    )
    return sent, alive


def test_an_open_stream_holds_neither_its_request_nor_its_response_object(monkeypatch) -> None:
    sent, alive = asyncio.run(_test_a_stream_holds_no_request(monkeypatch))
    assert alive == [False, False]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in [
        (name.lower(), value) for name, value in sent[0]["headers"]
    ]
    assert [m.get("body") for m in sent[1:]] == [b"data: first\n\n", b"data: second\n\n", None]
    assert sent[-1] == {"type": "http.response.body"}


def _stream_left_after_its_first_part(events: list[str], leave: Any) -> Any:
    """A view streaming one part, then ``leave()`` (the client goes away) and a wait for ever;
    its body's end is recorded in ``events``."""
    from responses_app.api.streaming import sse_response

    async def body():
        try:
            yield b"data: first\n\n"
            leave()
            await asyncio.sleep(3600)
            yield b"data: never\n\n"
        finally:
            events.append("closed")

    async def respond(request):
        return sse_response(body())

    return respond


async def _test_a_disconnect_ends_the_stream() -> tuple[list[dict[str, Any]], list[str]]:
    events: list[str] = []
    disconnect = asyncio.Event()
    sent = await _serve(_stream_left_after_its_first_part(events, disconnect.set), disconnect=disconnect)
    return sent, events


def test_a_client_disconnect_ends_the_stream_and_closes_its_body() -> None:
    sent, events = asyncio.run(_test_a_disconnect_ends_the_stream())
    assert events == ["closed"]
    assert [m.get("body") for m in sent[1:]] == [b"data: first\n\n"]  # nothing after the disconnect


async def _test_a_disconnect_through_the_connections_queue() -> tuple[list[dict[str, Any]], list[str], int]:
    """As under our daphne: ``receive`` is a :class:`ReceiveQueue`'s ``get``."""
    from responses_app.api.receive import ReceiveQueue

    queue = ReceiveQueue()
    queue.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    events: list[str] = []
    tasks_while_streaming: list[int] = []

    def leave() -> None:
        tasks_while_streaming.append(len(asyncio.all_tasks()))
        queue.put_nowait({"type": "http.disconnect"})

    # (returns, not cancelled: the disconnect is taken back by the handler)
    sent = await _serve(_stream_left_after_its_first_part(events, leave), receive_from=queue.get)
    queue.put_nowait({"type": "http.disconnect"})  # (a late one, after the handler: queued)
    return sent, events, tasks_while_streaming[0]


def test_a_disconnect_through_the_connections_queue_needs_no_task_of_its_own() -> None:
    """Under our daphne the connection's queue hands the disconnect to the handler: the stream
    ends and its body is closed as with a watching task, and no second task is made for it."""
    sent, events, tasks = asyncio.run(_test_a_disconnect_through_the_connections_queue())
    assert events == ["closed"]
    assert [m.get("body") for m in sent[1:]] == [b"data: first\n\n"]
    assert tasks == 2  # the test's own and the one serving the request (``wait_for``'s)
