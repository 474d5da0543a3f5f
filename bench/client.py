"""The load generator's HTTP/1.1 client: raw asyncio protocol, keep-alive, timing of every read.

It records when the head arrived, when the first delta arrived (the first read holding
``marker``), when the body ended and the largest gap between reads after the first delta.
Bodies are decoded (chunked or content-length) but parsed only after the clock stops.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

DELTA_RE = re.compile(rb'"(?:delta|content)":\s*"([^"\\]*)"')
TOKEN_RE = re.compile(r"w\d+ |[^w]+|w")


@dataclass
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    start: float = 0.0
    start_wall: float = 0.0
    head: float = 0.0
    first: float = 0.0
    end: float = 0.0
    first_wall: float = 0.0
    max_gap: float = 0.0
    reads: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300

    @property
    def ttft(self) -> float:
        return (self.first or self.end) - self.start

    @property
    def total(self) -> float:
        return self.end - self.start

    def deltas(self) -> list[str]:
        """Text deltas in arrival order (``"delta"``/``"content"`` string fields of the body)."""
        return [m.decode() for m in DELTA_RE.findall(self.body)]

    def tokens(self) -> list[str]:
        """The streamed text cut into the fake upstream's tokens (``w<i> ``), in arrival order.

        A gateway may send several tokens in one delta event (coalescing under load): what
        counts is that every token arrives, once, in order.
        """
        return TOKEN_RE.findall("".join(self.deltas()))


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self.result: Result | None = None
        self.marker = b""
        self._reset()

    def _reset(self) -> None:
        self.buf = bytearray()
        self.state = "head"
        self.remaining = 0
        self.chunked = False
        self.until_close = False
        self.parts: list[bytes] = []
        self.last_read = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.until_close and self.state == "body":
                self._done()
            else:
                assert self.result is not None
                self.result.error = f"connection lost ({exc or 'closed'}) in {self.state}"
                self.result.end = time.perf_counter()
                self.waiter.set_result(self.result)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        result = self.result
        if result is None:
            return
        result.reads += 1
        if result.first:
            gap = now - self.last_read
            if gap > result.max_gap:
                result.max_gap = gap
        elif self.marker and self.marker in data:
            result.first = now
            result.first_wall = time.time()
        self.last_read = now
        self.buf += data
        self._advance(now)

    def _advance(self, now: float) -> None:
        result = self.result
        assert result is not None
        buf = self.buf
        while True:
            if self.state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                result.status = int(lines[0].split(" ", 2)[1])
                result.head = now
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    result.headers[name.strip().lower()] = value.strip()
                if result.headers.get("transfer-encoding", "").lower() == "chunked":
                    self.chunked, self.state = True, "size"
                elif "content-length" in result.headers:
                    self.remaining, self.state = int(result.headers["content-length"]), "body"
                    if self.remaining == 0:
                        return self._done()
                else:
                    self.until_close, self.state = True, "body"
            elif self.state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining, self.state = size, "body"
            elif self.state == "body":
                if self.until_close:
                    self.parts.append(bytes(buf))
                    buf.clear()
                    return
                take = min(self.remaining, len(buf))
                if take == 0:
                    return
                self.parts.append(bytes(buf[:take]))
                del buf[:take]
                self.remaining -= take
                if self.remaining:
                    return
                if not self.chunked:
                    return self._done()
                self.state = "crlf"
            elif self.state == "crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = "size"
            elif self.state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    return self._done()

    def _done(self) -> None:
        result = self.result
        assert result is not None and self.waiter is not None
        result.end = time.perf_counter()
        result.body = b"".join(self.parts)
        if not result.first:
            result.first = result.end
            result.first_wall = time.time()
        if result.headers.get("connection", "").lower() == "close" and self.transport is not None:
            self.transport.close()
        self.state = "idle"
        if not self.waiter.done():
            self.waiter.set_result(result)


class Connection:
    """One keep-alive connection; requests on it run one after another."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.proto: _Protocol | None = None

    async def _ensure(self) -> _Protocol:
        if (
            self.proto is None
            or self.proto.closed
            or self.proto.transport is None
            or self.proto.transport.is_closing()
        ):
            _, proto = await asyncio.get_running_loop().create_connection(_Protocol, self.host, self.port)
            self.proto = proto  # type: ignore[assignment]
        assert self.proto is not None
        return self.proto

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        marker: bytes = b"",
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
        result: Result | None = None,
    ) -> Result:
        """Send one request and read its answer into ``result`` (a new one by default: pass one
        to watch its progress, its ``first`` and ``end``, while the answer streams)."""
        result = result if result is not None else Result()
        result.start = time.perf_counter()
        result.start_wall = time.time()
        try:
            proto = await self._ensure()
        except OSError as exc:
            result.error = f"connect: {exc}"
            result.end = time.perf_counter()
            return result
        proto._reset()
        proto.result = result
        proto.marker = marker
        proto.waiter = asyncio.get_running_loop().create_future()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\naccept: */*\r\n{extra}\r\n"
        assert proto.transport is not None
        proto.transport.write(head.encode() + body)
        try:
            return await asyncio.wait_for(proto.waiter, timeout)
        except TimeoutError:
            result.error = "timeout"
            result.end = time.perf_counter()
            self.close()
            return result

    def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        self.proto = None
