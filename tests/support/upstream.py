"""The one fake provider of the test suite: a loopback HTTP/1.1 server that records every request.

* :class:`RawServer` — the server, inside the test's own event loop, each connection driven by a
  coroutine through a :class:`Peer` (exact bytes, split reads, malformed framing: client tests).
* :class:`FakeUpstream` — the same server on a thread of its own, answering each request with a
  queued :class:`Reply` (or a handler's): adapter tests, and the daphne servers of the end-to-end
  tests. Replies can be recorded fixtures, scripted provider wire data (``tests.support.wire``) or
  built here (:meth:`Reply.json`, :meth:`Reply.sse`, :meth:`Reply.ndjson`).
* :class:`ScriptedUpstream` — a :class:`FakeUpstream` whose Chat Completions answers follow the last
  user message (production-topology, loop and worker tests), with the calls it saw and how they ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture_path(name: str) -> Path:
    """Path of a recorded fixture, e.g. ``fixture_path("openai/text_stream.sse")``."""
    return FIXTURES / name


def fixture_json(name: str) -> Any:
    """A recorded JSON fixture (or ``*.request.json``), parsed."""
    return json.loads(fixture_path(name).read_text())


CONTENT_TYPES = {
    ".sse": "text/event-stream; charset=utf-8",
    ".ndjson": "application/x-ndjson",
    ".json": "application/json",
}


# --------------------------------------------------------------------------- what is sent and answered


@dataclass
class Recorded:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names; the last of a repeated header wins
    body: bytes
    head: bytes = b""  # request line and headers as sent, without the blank line
    connection: int = 0  # 1 for the first accepted connection, 2 for the next…

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def request_line(self) -> str:
        return self.head.decode("latin-1").split("\r\n", 1)[0]

    @property
    def header_lines(self) -> list[tuple[str, str]]:
        """Header (name, value) pairs in the order and spelling sent."""
        pairs = []
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            pairs.append((name, value.strip()))
        return pairs

    def header(self, name: str) -> str | None:
        """The one value of header ``name`` (asserting it was not sent twice)."""
        values = [v for k, v in self.header_lines if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


@dataclass
class Reply:
    """One canned answer, sent chunked: ``chunks`` one by one with ``delay`` seconds between them."""

    status: int = 200
    content_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=list)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    hang_after: float = 0.0  # keep the connection open (silent) this long after the last chunk

    @classmethod
    def fixture(cls, name: str, *, status: int = 200, split_events: bool = True, delay: float = 0.0) -> Reply:
        """A recorded fixture, one chunk per event (SSE) or line (NDJSON) unless ``split_events`` is off."""
        path = fixture_path(name)
        raw = path.read_bytes()
        ctype = CONTENT_TYPES.get(path.suffix, "application/json")
        if split_events and path.suffix == ".sse":
            sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
            parts = [p + sep for p in raw.split(sep) if p]
        elif split_events and path.suffix == ".ndjson":
            parts = [line + b"\n" for line in raw.split(b"\n") if line]
        else:
            parts = [raw]
        return cls(status=status, content_type=ctype, chunks=parts, delay=delay)

    @classmethod
    def json(cls, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status=status, chunks=[json.dumps(body).encode()], headers=headers or {})

    @classmethod
    def sse(
        cls,
        events: list[dict[str, Any]] | list[tuple[str | None, dict[str, Any]]],
        *,
        named: bool = True,
        done: bool = False,
        delay: float = 0.0,
        crlf: bool = False,
    ) -> Reply:
        """Server-sent events, one chunk each: dicts (``event:`` from their ``type`` when ``named``)
        or ``(event name, data)`` pairs; ``done`` adds ``data: [DONE]``; ``crlf`` ends lines with CRLF."""
        sep = "\r\n\r\n" if crlf else "\n\n"
        chunks = []
        for event in events:
            if isinstance(event, tuple):
                name, data = event
                text = json.dumps(data, separators=(",", ":"))
            else:
                name = event.get("type") if named else None
                text = json.dumps(event)
            chunks.append(((f"event: {name}\n" if name else "") + f"data: {text}{sep}").encode())
        if done:
            chunks.append(f"data: [DONE]{sep}".encode())
        return cls(content_type="text/event-stream; charset=utf-8", chunks=chunks, delay=delay)

    @classmethod
    def ndjson(cls, objects: list[dict[str, Any]], *, delay: float = 0.0) -> Reply:
        """One JSON object per line, one chunk each."""
        chunks = [(json.dumps(o) + "\n").encode() for o in objects]
        return cls(content_type="application/x-ndjson", chunks=chunks, delay=delay)


# --------------------------------------------------------------------------- the server


class Peer:
    """One accepted connection, as a connection handler drives it."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: RawServer, number: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.server = server
        self.number = number

    async def request(self) -> Recorded | None:
        """The next request on this connection (recorded on the server), or None when the client
        closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        head = head[:-4]
        text = head.decode("latin-1")
        method, _, rest = text.split("\r\n", 1)[0].partition(" ")
        headers = {}
        for line in text.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        recorded = Recorded(method, rest.rsplit(" ", 1)[0], headers, b"", head, self.number)
        recorded.body = await self.reader.readexactly(int(headers.get("content-length") or 0))
        self.server.requests.append(recorded)
        return recorded

    async def send(self, *pieces: bytes, gap: float = 0.0) -> None:
        """Write ``pieces`` one by one (drained), pausing ``gap`` seconds between them."""
        for index, piece in enumerate(pieces):
            if index and gap:
                await asyncio.sleep(gap)
            self.writer.write(piece)
            await self.writer.drain()

    async def reply(self, reply: Reply) -> bool:
        """Send ``reply`` (chunked); False when the client hung up before its end."""
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        head.append(f"Content-Type: {reply.content_type}")
        head += [f"{key}: {value}" for key, value in reply.headers.items()]
        head.append("Transfer-Encoding: chunked")
        try:
            await self.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for index, chunk in enumerate(reply.chunks):
                if index and reply.delay:
                    await asyncio.sleep(reply.delay)
                if self.reader.at_eof() or self.writer.is_closing():
                    return False  # the client closed the connection
                await self.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if reply.hang_after:
                await asyncio.sleep(reply.hang_after)
            await self.send(b"0\r\n\r\n")
        except ConnectionError:
            return False
        return True

    async def until_closed(self) -> None:
        """Wait (silently) until the client closes the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}

ConnectionHandler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A loopback server running ``on_connection`` for every accepted connection (TCP_NODELAY on),
    in the running event loop. Errors of a handler are raised again when the server stops."""

    def __init__(self, on_connection: ConnectionHandler) -> None:
        self.on_connection = on_connection
        self.connections = 0
        self.requests: list[Recorded] = []
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: Any, *_: Any) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.errors and exc_type is None:
            raise self.errors[0]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.on_connection(Peer(reader, writer, self, self.connections))
        except asyncio.CancelledError:
            pass  # stopped by __aexit__ (re-raising would make asyncio log the cancelled task)
        except ConnectionError:
            pass  # the client hung up: the test looks at what the client saw
        except Exception as exc:  # noqa: BLE001 - re-raised by __aexit__
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            writer.close()


class FakeUpstream(RawServer):
    """Serve queued replies (or ``handler``'s) in order, on a thread of its own; every request is
    recorded in ``requests``. Use as a context manager; ``base_url`` is ``http://127.0.0.1:<port>``.

    ``handler`` (a plain function of the :class:`Recorded` request) may block: it runs in a worker
    thread, so a slow answer never holds up the other connections.
    """

    def __init__(self, handler: Callable[[Recorded], Reply] | None = None) -> None:
        super().__init__(self._serve_connection)
        self.replies: list[Reply] = []
        self.handler = handler
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def queue(self, *replies: Reply) -> FakeUpstream:
        with self._lock:
            self.replies.extend(replies)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_reply(self, recorded: Recorded) -> Reply:
        """The next queued reply, else the handler's, else a 500 saying nothing was queued."""
        with self._lock:
            if self.replies:
                return self.replies.pop(0)
        if self.handler is not None:
            return self.handler(recorded)
        return Reply.json({"error": {"message": "no reply queued"}}, status=500)

    async def serve(self, peer: Peer, recorded: Recorded) -> None:
        """Answer one request (subclasses script their own answers here)."""
        if self.replies or self.handler is None:
            reply = self.next_reply(recorded)
        else:
            reply = await asyncio.get_running_loop().run_in_executor(None, self.next_reply, recorded)
        await peer.reply(reply)

    async def _serve_connection(self, peer: Peer) -> None:
        while (recorded := await peer.request()) is not None:
            await self.serve(peer, recorded)
            if recorded.headers.get("connection", "").lower() == "close":
                break

    def __enter__(self) -> FakeUpstream:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.__aenter__(), loop).result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        self.errors.clear()  # a handler's failure shows as a 500 or a dropped answer in the test
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None


# --------------------------------------------------------------------------- a scripted Chat Completions server


@dataclass
class UpstreamCall:
    body: dict[str, Any]
    started: float
    ended: float | None = None
    disconnected: float | None = None  # when a write failed: the client closed the stream


class ScriptedUpstream(FakeUpstream):
    """An OpenAI Chat Completions server whose answers follow the last user message.

    * ``CALL name {json} ; name2 {json}`` — call these tools (in parallel), then, once the tool
      results come back, answer ``The tool returned: <outputs joined by " | ">``;
    * ``ALWAYS name {json}`` — call the tool every time (for iteration limits);
    * anything else — answer ``You said: <text>``, one word per chunk.

    Models whose name contains ``paced`` wait ``delay`` seconds between chunks; with ``failsecond``
    the sample after a tool result fails with HTTP 500. ``calls`` says what was asked and how each
    call ended; ``peak`` is the most streams open at once.
    """

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__()
        self.delay = delay
        self.calls: list[UpstreamCall] = []
        self.active = 0
        self.peak = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        self.calls.clear()
        self.peak = self.active

    def wait_for_calls(self, count: int, timeout: float = 30.0) -> list[UpstreamCall]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} upstream calls, got {len(self.calls)}")
            time.sleep(0.02)
        return list(self.calls)

    # ---- the script

    @staticmethod
    def _text(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""

    def plan(self, body: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
        """(tool calls, text) to answer ``body`` with."""
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        text = self._text(users[-1]).strip() if users else ""
        trailing_tools = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            trailing_tools.insert(0, self._text(message))
        tools = body.get("tools") or []
        if tools and text.startswith("ALWAYS "):
            return [self._parse_call(text[len("ALWAYS ") :])], ""
        if trailing_tools:
            return [], "The tool returned: " + " | ".join(trailing_tools)
        if tools and text.startswith("CALL "):
            return [self._parse_call(part) for part in text[len("CALL ") :].split(" ; ")], ""
        return [], f"You said: {text}"

    @staticmethod
    def _parse_call(spec: str) -> tuple[str, str]:
        name, _, arguments = spec.strip().partition(" ")
        return name, arguments.strip() or "{}"

    def chunks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        calls, text = self.plan(body)
        base = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }

        def delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        out = [delta({"role": "assistant", "content": None})]
        for index, (name, arguments) in enumerate(calls):
            call_id = f"call_{uuid.uuid4().hex[:12]}"
            function = {"name": name, "arguments": ""}
            out.append(
                delta(
                    {
                        "tool_calls": [
                            {"index": index, "id": call_id, "type": "function", "function": function}
                        ]
                    }
                )
            )
            out.append(delta({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}))
        words = re.findall(r"\S+\s*", text)
        out += [delta({"content": word}) for word in words]
        out.append(delta({}, "tool_calls" if calls else "stop"))
        prompt = sum(len(self._text(m).split()) for m in body.get("messages") or []) or 1
        completion = len(words) + len(calls)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        out.append({**base, "choices": [], "usage": usage})
        return out

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        calls, text = self.plan(body)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": n, "arguments": a},
                }
                for n, a in calls
            ]
        prompt = sum(len(self._text(m).split()) for m in body.get("messages") or []) or 1
        completion = len(text.split()) + len(calls)
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    async def serve(self, peer: Peer, recorded: Recorded) -> None:
        body = json.loads(recorded.body or b"{}")
        call = UpstreamCall(body, time.monotonic())
        self.calls.append(call)
        messages = body.get("messages") or [{}]
        if "failsecond" in str(body.get("model")) and messages[-1].get("role") == "tool":
            error = {"error": {"message": "scripted failure on the second sample", "type": "server_error"}}
            await peer.reply(Reply.json(error, status=500))
            call.ended = time.monotonic()
            return
        if not body.get("stream"):
            await peer.reply(Reply.json(self.completion(body)))
            call.ended = time.monotonic()
            return
        delay = self.delay if "paced" in str(body.get("model")) else 0.0
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            reply = Reply.sse(self.chunks(body), named=False, done=True, delay=delay)
            if await peer.reply(reply):
                call.ended = time.monotonic()
            else:
                call.disconnected = time.monotonic()
        finally:
            self.active -= 1
