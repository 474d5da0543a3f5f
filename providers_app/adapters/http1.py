"""A small HTTP/1.1 client for provider calls: one request, one streamed answer, pooled connections.

Provider calls are all alike — a POST with a JSON body, answered with JSON or with a long
stream of small server-sent events — and the streamed answer is the hottest path of the
gateway: every token of every open stream crosses it. A general client (httpx over httpcore
over anyio) pays for each network read with pause/resume of the transport (two ``epoll_ctl``
calls), cancel scopes and several layers of async iterators. Here the connection is a plain
:class:`asyncio.Protocol`: ``data_received`` appends to a buffer and wakes the one reader.

What it does: HTTP and HTTPS (system trust store, or ``certifi`` when installed), keep-alive
with a pool per event loop and origin, ``Content-Length``, chunked and close-delimited bodies,
``gzip``/``deflate`` content encodings, one silent retry when a reused keep-alive connection
turns out to be closed before any answer. What it leaves out on purpose: proxies, redirects,
HTTP/2, cookies, ``Expect: 100-continue`` — provider APIs use none of them.
"""

from __future__ import annotations

import asyncio
import codecs
import ssl
import time
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

#: Largest response head (status line and headers) accepted.
MAX_HEAD_BYTES = 64 * 1024
#: Reading pauses while this much is buffered and not yet consumed.
HIGH_WATER = 1024 * 1024
#: An idle pooled connection older than this is closed rather than reused.
KEEPALIVE_SECONDS = 30.0
#: Idle connections kept per origin and event loop.
MAX_IDLE_PER_ORIGIN = 512


class HTTPError(Exception):
    """Base of this client's errors."""


class ConnectError(HTTPError):
    """The connection could not be made (refused, DNS, TLS handshake, connect timeout)."""


class RemoteProtocolError(HTTPError):
    """The peer closed the connection or broke HTTP/1.1 (before or during the answer)."""


class _NoAnswer(RemoteProtocolError):
    """The peer closed the connection before a complete response head (the only error retried)."""


class Headers(dict):
    """Response headers by lower-case name (the last value of a repeated header wins, except
    ``set-cookie``-like lists, which providers do not send)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: bytes in a buffer, one waiter woken when more arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost: BaseException | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.uses = 0
        self._waiter: asyncio.Future | None = None

    # ---- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.eof = True
        self.lost = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ---- reading

    async def more(self) -> bool:
        """Wait until more bytes are buffered; False at the end of the stream."""
        if self.eof:
            return False
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        waiter = self._waiter = self.loop.create_future()
        await waiter
        return not (self.eof and not self.buffer)

    def take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def reusable(self) -> bool:
        return (
            not self.closed
            and not self.eof
            and not self.buffer
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Idle keep-alive connections of one event loop, by origin (scheme, host, port)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                import certifi

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi comes with httpx
                self._ssl = ssl.create_default_context()
        return self._ssl

    def take_idle(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable() and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn
            conn.close()
        return None

    def put_idle(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        if not conn.reusable():
            conn.close()
            return
        idle = self._idle.setdefault(origin, deque())
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            idle.popleft().close()
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def connect(self, origin: tuple[str, str, int], timeout: float) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    host,
                    port,
                    ssl=self.ssl_context() if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                )
        except TimeoutError:
            raise ConnectError(f"connect timeout after {timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"{type(exc).__name__}: {exc}") from None
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()

    @property
    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())


class Response:
    """An answer whose head is in; the body is read with :meth:`aread` or the ``aiter_*`` methods."""

    def __init__(
        self,
        status_code: int,
        reason: str,
        headers: Headers,
        conn: _Connection,
        pool: ConnectionPool,
        origin: tuple[str, str, int],
    ) -> None:
        self.status_code = status_code
        self.reason_phrase = reason
        self.headers = headers
        self._conn: _Connection | None = conn
        self._pool = pool
        self._origin = origin
        self._done = False
        self._chunk_open = False  # inside a chunk's data
        self._chunk_crlf = False  # a chunk's data read, its CRLF not yet
        encoding = headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in encoding
        length = headers.get("content-length")
        self._remaining: int | None = None
        if status_code in (204, 304):  # no body, whatever the headers say (RFC 9112 §6.3)
            self._chunked = False
            self._remaining = 0
        elif not self._chunked and length is not None:
            try:
                self._remaining = int(length)
            except ValueError:
                raise RemoteProtocolError(f"invalid Content-Length {length!r}") from None
        self._keep_alive = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._remaining is not None
        )
        content_encoding = headers.get("content-encoding", "").lower().strip()
        self._decompress = None
        if content_encoding in ("gzip", "x-gzip"):
            self._decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif content_encoding == "deflate":
            self._decompress = zlib.decompressobj()

    @property
    def is_closed(self) -> bool:
        return self._conn is None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked framing removed, content encoding not)."""
        conn = self._conn
        if conn is None:
            return
        try:
            if self._chunked:
                async for piece in self._chunks(conn):
                    yield piece
            elif self._remaining is not None:
                while self._remaining > 0:
                    if not conn.buffer and not await conn.more():
                        raise RemoteProtocolError("the peer closed the connection before the end of the body")
                    piece = conn.take(self._remaining)
                    self._remaining -= len(piece)
                    yield piece
            else:
                while True:
                    if conn.buffer:
                        yield conn.take(len(conn.buffer))
                    elif not await conn.more():
                        break
            self._done = True
        finally:
            await self.aclose()

    async def _chunks(self, conn: _Connection) -> AsyncIterator[bytes]:
        """Chunked body data: what is buffered is handed over as one piece, however many chunks
        it holds (a busy stream's reader wakes once per network read, not once per chunk)."""
        buffer = conn.buffer
        out: list[bytes] = []
        while True:
            end = buffer.find(b"\r\n")
            while end < 0:
                if out:
                    yield b"".join(out)
                    out = []
                if len(buffer) > MAX_HEAD_BYTES or not await conn.more():
                    raise RemoteProtocolError("the peer closed the connection inside a chunked body")
                end = buffer.find(b"\r\n")
            size_line = bytes(buffer[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise RemoteProtocolError(f"invalid chunk size {size_line[:20]!r}") from None
            if size == 0:
                if out:  # handed over before the last chunk is read (see _complete_from_buffer)
                    yield b"".join(out)
                    out = []
                del buffer[: end + 2]
                # Trailers (if any) end with an empty line.
                while True:
                    end = buffer.find(b"\r\n")
                    while end < 0:
                        if not await conn.more():
                            return
                        end = buffer.find(b"\r\n")
                    line = bytes(buffer[:end])
                    del buffer[: end + 2]
                    if not line:
                        return
            del buffer[: end + 2]
            remaining = size
            while remaining > 0:
                if not buffer:
                    if out:
                        yield b"".join(out)
                        out = []
                    if not await conn.more():
                        raise RemoteProtocolError("the peer closed the connection inside a chunk")
                piece = conn.take(remaining)
                remaining -= len(piece)
                self._chunk_open = remaining > 0
                self._chunk_crlf = remaining == 0
                out.append(piece)
            while len(buffer) < 2:
                if out:
                    yield b"".join(out)
                    out = []
                if not await conn.more():
                    raise RemoteProtocolError("the peer closed the connection after a chunk")
            del buffer[:2]
            self._chunk_crlf = False

    def _complete_from_buffer(self) -> bool:
        """True when the rest of the body is already buffered and is only framing (a reader that
        stopped at the stream's last event): the connection can then go back to the pool."""
        conn = self._conn
        if conn is None or self._decompress is not None:
            return False
        if self._chunked:
            if self._chunk_open:
                return False
            rest = bytes(conn.buffer)
            if self._chunk_crlf:
                if not rest.startswith(b"\r\n"):
                    return False
                rest = rest[2:]
            if rest != b"0\r\n\r\n":
                return False
            conn.buffer.clear()
            return True
        return self._remaining == 0 and not conn.buffer

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, content encoding (gzip, deflate) removed."""
        decompress = self._decompress
        async for piece in self.aiter_raw():
            if decompress is None:
                yield piece
            else:
                try:
                    data = decompress.decompress(piece)
                except zlib.error as exc:
                    raise RemoteProtocolError(f"undecodable body: {exc}") from None
                if data:
                    yield data
        if decompress is not None:
            tail = decompress.flush()
            if tail:
                yield tail

    async def aiter_text(self) -> AsyncIterator[str]:
        """The body as text (UTF-8), one piece per network read, content encoding removed."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        decompress = self._decompress
        async for piece in self.aiter_raw():
            if decompress is not None:
                try:
                    piece = decompress.decompress(piece)
                except zlib.error as exc:
                    raise RemoteProtocolError(f"undecodable body: {exc}") from None
            text = decoder.decode(piece)
            if text:
                yield text
        tail = decoder.decode(decompress.flush() if decompress is not None else b"", final=True)
        if tail:
            yield tail

    async def aiter_line_batches(self) -> AsyncIterator[list[str]]:
        """The complete lines of each network read, without their terminators; ``\\n``,
        ``\\r\\n`` and a lone ``\\r`` all end a line (a last line without one comes at the end)."""
        carry = ""
        skip_lf = False  # the last read ended in CR: a LF opening the next one completes that CRLF
        async for text in self.aiter_text():
            if skip_lf:
                skip_lf = False
                if text.startswith("\n"):
                    text = text[1:]
            if carry:
                text = carry + text
            if "\r" in text:
                # A trailing CR ends its line now (a lone CR becomes LF below); a LF opening the
                # next read is then the rest of that CRLF.
                skip_lf = text.endswith("\r")
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            lines = text.split("\n")
            carry = lines.pop()
            if lines:
                yield lines
        if carry:
            yield [carry]

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their terminators (see :meth:`aiter_line_batches`)."""
        async for lines in self.aiter_line_batches():
            for line in lines:
                yield line

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        conn = self._conn
        if conn is None:
            return
        reuse = self._keep_alive and (self._done or self._complete_from_buffer())
        self._conn = None
        if reuse:
            self._pool.put_idle(self._origin, conn)
        else:
            conn.close()


class Client:
    """Sends requests over the pool of the running event loop (one pool per loop)."""

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionPool] = (
            weakref.WeakKeyDictionary()
        )

    def pool(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = ConnectionPool()
        return pool

    async def send(
        self, method: str, url: str, *, content: bytes, headers: Mapping[str, str], connect_timeout: float
    ) -> Response:
        """Send the request; return once the status line and headers are in."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"unsupported URL {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        origin = (scheme, parts.hostname, port)
        default_port = port == (443 if scheme == "https" else 80)
        host_header = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname and not parts.hostname.startswith("["):
            host_header = f"[{parts.hostname}]" + ("" if default_port else f":{port}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"host: {host_header}"]
        lowered = {key.lower() for key in headers}
        for key, value in headers.items():
            if "\r" in key or "\n" in key or "\r" in value or "\n" in value:
                raise ValueError(f"header {key!r} holds a line break")
            lines.append(f"{key}: {value}")
        if "accept" not in lowered:
            lines.append("accept: */*")
        lines.append(f"content-length: {len(content)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        pool = self.pool()
        while True:
            conn = pool.take_idle(origin)
            reused = conn is not None
            if conn is None:
                conn = await pool.connect(origin, connect_timeout)
            conn.uses += 1
            try:
                assert conn.transport is not None
                conn.transport.write(head + content)
                status, reason, response_headers = await _read_head(conn)
            except _NoAnswer:
                conn.close()
                if reused and not conn.buffer:
                    continue  # a keep-alive connection the server had closed: once more on a new one
                raise
            except BaseException:
                conn.close()
                raise
            try:
                return Response(status, reason, response_headers, conn, pool, origin)
            except BaseException:
                conn.close()  # e.g. an invalid Content-Length: the connection is unusable
                raise

    def close(self) -> None:
        """Close every idle connection; those of another running event loop are closed in it."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, pool in list(self._pools.items()):
            if loop is current or loop.is_closed() or not loop.is_running():
                pool.close()
            else:
                loop.call_soon_threadsafe(pool.close)
        self._pools.clear()


async def _read_head(conn: _Connection) -> tuple[int, str, Headers]:
    buffer = conn.buffer
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buffer) > MAX_HEAD_BYTES:
            raise RemoteProtocolError("the response head is too large")
        if not await conn.more():
            raise _NoAnswer("the peer closed the connection without answering")
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[: end + 4]
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise RemoteProtocolError(f"not an HTTP/1.1 answer: {status_line[:40]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise RemoteProtocolError(f"invalid status line {status_line[:40]!r}") from None
    headers = Headers()
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
        return await _read_head(conn)
    return status, parts[2] if len(parts) > 2 else "", headers
