"""A fake provider on 127.0.0.1: replays recorded wire data over a real socket and records requests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture_path(name: str) -> Path:
    """Path of a recorded fixture, e.g. ``fixture_path("openai/text_stream.sse")``."""
    return FIXTURES / name


CONTENT_TYPES = {
    ".sse": "text/event-stream; charset=utf-8",
    ".ndjson": "application/x-ndjson",
    ".json": "application/json",
}


@dataclass
class Reply:
    """One canned answer. ``chunks`` are written one by one with ``delay`` seconds between them."""

    status: int = 200
    content_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=list)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    hang_after: float = 0.0  # keep the connection open (silent) this long after the last chunk

    @classmethod
    def fixture(cls, name: str, *, status: int = 200, split_events: bool = True, delay: float = 0.0) -> Reply:
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
        cls, events: list[dict[str, Any]], *, named: bool = True, done: bool = False, delay: float = 0.0
    ) -> Reply:
        chunks = []
        for ev in events:
            head = f"event: {ev['type']}\n" if named and "type" in ev else ""
            chunks.append(f"{head}data: {json.dumps(ev)}\n\n".encode())
        if done:
            chunks.append(b"data: [DONE]\n\n")
        return cls(content_type="text/event-stream", chunks=chunks, delay=delay)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class FakeUpstream:
    """Serve queued replies (or a handler's) in order; every request is recorded.

    Use as a context manager; ``base_url`` is ``http://127.0.0.1:<port>``.
    """

    def __init__(self, handler: Callable[[Recorded], Reply] | None = None) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self.handler = handler
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def queue(self, *replies: Reply) -> FakeUpstream:
        with self._lock:
            self.replies.extend(replies)
        return self

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _next_reply(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            if self.replies:
                return self.replies.pop(0)
        if self.handler is not None:
            return self.handler(recorded)
        return Reply.json({"error": {"message": "no reply queued"}}, status=500)

    def __enter__(self) -> FakeUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                reply = upstream._next_reply(recorded)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i, chunk in enumerate(reply.chunks):
                        if i and reply.delay:
                            time.sleep(reply.delay)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    if reply.hang_after:
                        time.sleep(reply.hang_after)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_POST = _serve
            do_GET = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
