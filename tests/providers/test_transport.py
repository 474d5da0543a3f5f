"""transport: provider calls over aiohttp, against a raw loopback server writing exact bytes.

Each test runs one event loop (``asyncio.run``) holding both the client and the fake upstream's
:class:`~tests.support.upstream.RawServer`, whose handler writes the bytes the test wants, in the pieces it wants. Where a split read is the point,
pieces are written with a short pause between them and the ``reads`` fixture (it records every
``data_received`` of the client) proves the client saw the split.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp.client_proto
import pytest

from providers_app.adapters import transport
from providers_app.adapters.base import (
    Finish,
    ItemEnd,
    ModelRequest,
    ProviderConfig,
    TextDelta,
    UpstreamError,
    UsageReport,
)
from providers_app.adapters.openai_responses import OpenAIResponsesAdapter
from tests.support.adapters import user
from tests.support.upstream import ConnectionHandler, Peer, RawServer

#: Pause between pieces that must arrive in separate reads (client and server share one loop).
GAP = 0.01

# --------------------------------------------------------------------------- raw answers


def answering(*answers: bytes) -> ConnectionHandler:
    """A keep-alive handler: every request (on any connection) gets the next of ``answers``."""
    queue = list(answers)

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(queue.pop(0))

    return handler


def head(status: int = 200, reason: str = "OK", **headers: str | int) -> bytes:
    """A response head; ``content_length=5`` becomes ``content-length: 5``."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def chunked(*pieces: bytes) -> bytes:
    return b"".join(chunk(p) for p in pieces) + LAST_CHUNK


def answer(body: bytes, status: int = 200, **headers: str | int) -> bytes:
    return head(status, content_length=len(body), **headers) + body


def run(coro: Coroutine[Any, Any, Any], timeout: float = 5.0) -> Any:
    """Run ``coro`` in a fresh event loop, failing fast instead of hanging."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def send(
    client: transport.Client,
    url: str,
    *,
    method: str = "POST",
    content: bytes = b"",
    headers: dict[str, str] | None = None,
) -> transport.Response:
    return await client.send(method, url, content=content, headers=headers or {}, connect_timeout=2.0)


async def fetch(client: transport.Client, url: str) -> bytes:
    response = await send(client, url)
    return await response.aread()


async def lines_of(response: transport.Response) -> list[str]:
    return [line async for line in response.aiter_lines()]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ``data_received`` payload of the client's connections, in order."""
    seen: list[bytes] = []
    original = aiohttp.client_proto.ResponseHandler.data_received

    def recording(self: aiohttp.client_proto.ResponseHandler, data: bytes) -> None:
        seen.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(aiohttp.client_proto.ResponseHandler, "data_received", recording)
    return seen


def assert_split_at(reads: list[bytes], pieces: tuple[bytes, ...]) -> None:
    """The client read the stream of ``pieces`` with a read boundary at every piece boundary."""
    assert b"".join(reads) == b"".join(pieces)
    read_ends, offset = set(), 0
    for data in reads:
        offset += len(data)
        read_ends.add(offset)
    offset = 0
    for piece in pieces[:-1]:
        offset += len(piece)
        assert offset in read_ends, f"no read ended after {piece!r}: reads were {reads!r}"


async def streamed_lines(pieces: tuple[bytes, ...]) -> list[str]:
    """Lines of a response written as ``pieces`` (paused between), then the connection closed."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(*pieces, gap=GAP)
        await peer.close()

    async with RawServer(handler) as server:
        client = transport.Client()
        try:
            return await lines_of(await send(client, server.url()))
        finally:
            await client.aclose()


# --------------------------------------------------------------------------- bodies


def test_content_length_body() -> None:
    async def main() -> None:
        async with RawServer(answering(answer(b"hello", x_kind="length"))) as server:
            client = transport.Client()
            response = await send(client, server.url())
            assert (response.status_code, response.reason_phrase) == (200, "OK")
            assert response.headers["x-kind"] == "length"
            assert not response.is_closed
            assert await response.aread() == b"hello"
            assert response.is_closed
            await client.aclose()

    run(main())


def test_chunked_body_with_extension_and_trailer_then_keep_alive() -> None:
    """Chunk extensions are ignored and trailers consumed: the connection serves the next request."""
    body = b"3;name=value\r\nabc\r\n4\r\ndefg\r\n0\r\nx-checksum: 1\r\n\r\n"
    first = head(transfer_encoding="chunked") + body

    async def main() -> None:
        async with RawServer(answering(first, answer(b"next"))) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"abcdefg"
            assert await fetch(client, server.url()) == b"next"
            assert server.connections == 1
            await client.aclose()

    run(main())


def test_chunked_body_split_across_reads(reads: list[bytes]) -> None:
    pieces = (
        head(transfer_encoding="chunked") + b"5\r\nhel",
        b"lo\r",
        b"\n6\r\n worl",
        b"d\r\n0\r\n",
        b"\r\n",
    )

    async def main() -> bytes:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(*pieces, gap=GAP)
            await peer.until_closed()

        async with RawServer(handler) as server:
            client = transport.Client()
            try:
                return await fetch(client, server.url())
            finally:
                await client.aclose()

    assert run(main()) == b"hello world"
    assert_split_at(reads, pieces)


def test_close_delimited_body_is_read_to_eof_and_not_reused() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(head(content_type="text/plain") + b"part one, ", b"part two", gap=GAP)
            await peer.close()

        async with RawServer(handler) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"part one, part two"
            assert client.idle_count == 0
            await client.aclose()

    run(main())


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_body(framing: str, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    text = b"".join(b'data: {"n": %d, "text": "caf\xc3\xa9"}\n\n' % n for n in range(200))
    packed = compress(text)
    assert len(packed) < len(text) // 4
    if framing == "chunked":
        third = len(packed) // 3
        raw = head(transfer_encoding="chunked", content_encoding=encoding) + chunked(
            packed[:third], packed[third : 2 * third], packed[2 * third :]
        )
    else:
        raw = head(content_length=len(packed), content_encoding=encoding) + packed

    async def main() -> None:
        async with RawServer(answering(raw, raw)) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == text
            lines = await lines_of(await send(client, server.url()))
            assert lines == text.decode().split("\n")[:-1]
            assert server.connections == 1  # fully read compressed bodies keep the connection
            await client.aclose()

    run(main())


def test_undecodable_compressed_body() -> None:
    raw = answer(b"this is not gzip", content_encoding="gzip")

    async def main() -> None:
        async with RawServer(answering(raw)) as server:
            client = transport.Client()
            response = await send(client, server.url())
            with pytest.raises(transport.RemoteProtocolError, match="(?i)decode"):
                await response.aread()
            await client.aclose()

    run(main())


def test_body_larger_than_the_high_water_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading pauses above HIGH_WATER and resumes when the reader wants more: nothing is lost."""
    body = bytes(range(256)) * (3 * transport.HIGH_WATER // 256 + 7)
    paused = asyncio.Event()
    original = aiohttp.client_proto.ResponseHandler.data_received

    def watching(self: aiohttp.client_proto.ResponseHandler, data: bytes) -> None:
        original(self, data)
        if self._reading_paused:
            paused.set()

    monkeypatch.setattr(aiohttp.client_proto.ResponseHandler, "data_received", watching)

    async def main() -> None:
        async with RawServer(answering(answer(body), answer(b"after"))) as server:
            client = transport.Client()
            response = await send(client, server.url())
            await paused.wait()  # the body piles up unread until the client stops reading
            assert await response.aread() == body
            assert await fetch(client, server.url()) == b"after"
            assert server.connections == 1
            await client.aclose()

    run(main())


def test_no_body_statuses_do_not_wait_for_close() -> None:
    """A 204 carries no body (RFC 9112 §6.3) even without Content-Length, and keeps the connection."""

    async def main() -> None:
        async with RawServer(answering(head(204, "No Content"), answer(b"next"))) as server:
            client = transport.Client()
            response = await send(client, server.url())
            assert response.status_code == 204
            async with asyncio.timeout(1):
                assert await response.aread() == b""
            assert await fetch(client, server.url()) == b"next"
            assert server.connections == 1
            await client.aclose()

    run(main())


# --------------------------------------------------------------------------- lines


def test_lines_split_in_the_middle_of_a_line(reads: list[bytes]) -> None:
    pieces = (head() + b"data: hel", b"lo\nda", b"ta: wor", b"ld\n\n")
    assert run(streamed_lines(pieces)) == ["data: hello", "data: world", ""]
    assert_split_at(reads, pieces)


def test_crlf_split_between_cr_and_lf_makes_one_terminator(reads: list[bytes]) -> None:
    pieces = (head() + b"one\r", b"\ntwo\r", b"\n\r", b"\nthree\r\n")
    assert run(streamed_lines(pieces)) == ["one", "two", "", "three"]
    assert_split_at(reads, pieces)


def test_lone_cr_ends_a_line() -> None:
    pieces = (head() + b"one\rtwo\r\rthree\rfour",)
    assert run(streamed_lines(pieces)) == ["one", "two", "", "three", "four"]


def test_read_ending_in_two_lone_crs_keeps_the_empty_line(reads: list[bytes]) -> None:
    """``\\r\\r`` is two terminators (an SSE event end), also when a read ends right after it."""
    pieces = (head() + b"data: x\r\r", b"data: y\r\r")
    assert run(streamed_lines(pieces)) == ["data: x", "", "data: y", ""]
    assert_split_at(reads, pieces)


def test_cr_then_crlf_across_reads(reads: list[bytes]) -> None:
    pieces = (head() + b"a\r", b"\r\nb\n")
    assert run(streamed_lines(pieces)) == ["a", "", "b"]
    assert_split_at(reads, pieces)


def test_trailing_cr_at_end_of_body_is_one_terminator() -> None:
    assert run(streamed_lines((head() + b"last\r",))) == ["last"]


def test_multibyte_utf8_split_across_reads(reads: list[bytes]) -> None:
    text = "café 😀 ok\n"
    data = text.encode()
    e_acute = data.index("é".encode())
    emoji = data.index("😀".encode())
    pieces = (
        head() + data[: e_acute + 1],
        data[e_acute + 1 : emoji + 1],
        data[emoji + 1 : emoji + 3],
        data[emoji + 3 :],
    )
    assert run(streamed_lines(pieces)) == ["café 😀 ok"]
    assert_split_at(reads, pieces)


def test_chunk_boundaries_in_the_middle_of_lines() -> None:
    """Chunk framing never leaks into lines, wherever the chunks cut (also between CR and LF)."""
    body = chunked(
        b"data: a", b"bc\nda", b"ta: x\r", b"\n\r", b"\n", "é".encode()[:1], "é".encode()[1:] + b"\n"
    )
    pieces = (head(transfer_encoding="chunked") + body,)
    assert run(streamed_lines(pieces)) == ["data: abc", "data: x", "", "é"]


def test_chunked_lines_split_across_reads(reads: list[bytes]) -> None:
    # Chunks "data: one\n", "data: t", "wo\n\n", cut inside data, inside framing and between CR and LF.
    pieces = (
        head(transfer_encoding="chunked") + b"a\r\ndata: on",
        b"e\n\r\n7\r\ndat",
        b"a: t\r\n4\r\nwo\n\n\r",
        b"\n0\r\n\r\n",
    )
    assert run(streamed_lines(pieces)) == ["data: one", "data: two", ""]
    assert_split_at(reads, pieces)


def test_final_line_without_terminator_and_empty_body() -> None:
    assert run(streamed_lines((head() + b"a\nb",))) == ["a", "b"]
    assert run(streamed_lines((head(content_length=0),))) == []


# --------------------------------------------------------------------------- the request on the wire


def test_request_bytes_on_the_wire() -> None:
    body = b'{"model":"m","input":"hi"}'

    async def main() -> None:
        async with RawServer(answering(answer(b"{}"), answer(b"{}"))) as server:
            client = transport.Client()
            response = await send(
                client,
                server.url("/v1/responses?api-version=2&x=a%20b"),
                content=body,
                headers={"Authorization": "Bearer sk-1", "X-Custom": "v", "content-type": "application/json"},
            )
            await response.aread()
            request = server.requests[0]
            assert request.request_line == "POST /v1/responses?api-version=2&x=a%20b HTTP/1.1"
            names = [name.lower() for name, _ in request.header_lines]
            assert names[0] == "host"
            assert request.header("host") == f"127.0.0.1:{server.port}"
            assert request.header("Authorization") == "Bearer sk-1"
            assert request.header("x-custom") == "v"
            assert request.header("content-type") == "application/json"
            assert request.header("accept") == "*/*"
            assert request.header("content-length") == str(len(body))
            assert request.body == body
            # No path: "/"; a given Accept replaces the default one (header() asserts it is sent once).
            await (
                await send(
                    client,
                    f"http://127.0.0.1:{server.port}",
                    method="GET",
                    headers={"Accept": "text/event-stream"},
                )
            ).aread()
            request = server.requests[1]
            assert request.request_line == "GET / HTTP/1.1"
            assert request.header("accept") == "text/event-stream"
            assert request.header("content-length") == "0"
            assert request.body == b""
            await client.aclose()

    run(main())


def test_header_with_line_break_is_refused_before_sending() -> None:
    async def main() -> None:
        async with RawServer(answering()) as server:
            client = transport.Client()
            with pytest.raises(ValueError, match="line break"):
                await send(client, server.url(), headers={"x-evil": "a\r\nx-injected: 1"})
            assert server.connections == 0
            await client.aclose()

    run(main())


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "not a url"])
def test_unsupported_url(url: str) -> None:
    async def main() -> None:
        with pytest.raises(transport.ConnectError, match="unsupported URL"):
            await send(transport.Client(), url)

    run(main())


# --------------------------------------------------------------------------- keep-alive


def test_fully_read_answers_reuse_one_connection() -> None:
    async def main() -> None:
        chunked_answer = head(transfer_encoding="chunked") + chunked(b"one\n", b"two\n")
        async with RawServer(answering(answer(b"first"), chunked_answer, answer(b"third"))) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"first"
            assert client.idle_count == 1
            assert await lines_of(await send(client, server.url())) == ["one", "two"]
            assert await fetch(client, server.url()) == b"third"
            assert server.connections == 1
            assert [r.connection for r in server.requests] == [1, 1, 1]
            await client.aclose()
            assert client.idle_count == 0

    run(main())


@pytest.mark.parametrize("body_sent", [True, False], ids=["body-buffered", "body-not-yet-sent"])
def test_answer_closed_before_its_body_is_not_reused(body_sent: bool) -> None:
    """Closing an answer whose body is unread never lets the next answer read that body: a
    connection still waiting for it is closed; one whose body already arrived whole (kept apart
    with its answer) may be reused."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            if len(peer.server.requests) == 1:
                await peer.send(answer(b"unread body") if body_sent else head(content_length=11))
            else:
                await peer.send(answer(b"second"))
        if not body_sent and peer.number == 1 and len(peer.server.requests) > 1:
            await peer.send(b"unread body")

    async def main() -> None:
        async with RawServer(handler) as server:
            client = transport.Client()
            response = await send(client, server.url())
            await response.aclose()
            assert response.is_closed
            assert await response.aread() == b""  # a closed answer has nothing more
            assert client.idle_count == (1 if body_sent else 0)
            assert await fetch(client, server.url()) == b"second"
            assert server.connections == (1 if body_sent else 2)
            await client.aclose()

    run(main())


def test_connection_close_answer_is_not_reused() -> None:
    async def main() -> None:
        async with RawServer(answering(answer(b"bye", connection="close"), answer(b"again"))) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"bye"
            assert client.idle_count == 0
            assert await fetch(client, server.url()) == b"again"
            assert server.connections == 2
            await client.aclose()

    run(main())


async def stop_after_last_event(tail: bytes) -> tuple[list[str], int]:
    """Read lines until the end of the last event (the blank line) and close the answer, with
    ``tail`` buffered behind that event's chunk; return the lines and the connections used by a
    second request."""
    first = head(transfer_encoding="chunked") + chunk(b"data: one\n\n") + chunk(b"data: last\n\n") + tail
    async with RawServer(answering(first, answer(b"next"))) as server:
        client = transport.Client()
        response = await send(client, server.url())
        seen: list[str] = []
        lines = response.aiter_lines()
        async for line in lines:
            seen.append(line)
            if seen[-2:] == ["data: last", ""]:
                break
        await response.aclose()
        await lines.aclose()
        assert await fetch(client, server.url()) == b"next"
        await client.aclose()
        return seen, server.connections


def test_stream_stopped_with_only_the_chunked_terminator_buffered_is_reused() -> None:
    seen, connections = run(stop_after_last_event(LAST_CHUNK))
    assert seen == ["data: one", "", "data: last", ""]
    assert connections == 1


def test_stream_stopped_with_more_data_in_the_same_read_is_reused() -> None:
    """Chunks that came in the same read are taken off the connection together (the reader did
    not look at the last one, but nothing of the body is left on the socket): reusable."""
    seen, connections = run(stop_after_last_event(chunk(b"data: more\n\n") + LAST_CHUNK))
    assert seen == ["data: one", "", "data: last", ""]
    assert connections == 1


def test_stream_stopped_before_its_body_ended_is_not_reused() -> None:
    """The rest of the body has not arrived when the reader stops: the connection is closed."""

    async def main() -> int:
        first = head(transfer_encoding="chunked") + chunk(b"data: one\n\n")
        stopped = asyncio.Event()

        async def handler(peer: Peer) -> None:
            if peer.number == 1:
                await peer.request()
                await peer.send(first)
                await stopped.wait()
                await peer.send(chunk(b"data: more\n\n") + LAST_CHUNK)
                await peer.until_closed()
                return
            while await peer.request() is not None:
                await peer.send(answer(b"next"))

        async with RawServer(handler) as server:
            client = transport.Client()
            response = await send(client, server.url())
            lines = response.aiter_lines()
            assert await lines.__anext__() == "data: one"
            await response.aclose()
            await lines.aclose()
            stopped.set()
            assert await fetch(client, server.url()) == b"next"
            await client.aclose()
            return server.connections

    assert run(main()) == 2


def test_stale_keep_alive_connection_closed_while_idle() -> None:
    """The server closes the idle connection; the next send goes through on a new one."""

    async def main() -> None:
        closed = asyncio.Event()

        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(answer(b"from %d" % peer.number))
            if peer.number == 1:
                await peer.close()
                closed.set()
                return
            await peer.until_closed()

        async with RawServer(handler) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"from 1"
            await closed.wait()
            assert await fetch(client, server.url()) == b"from 2"
            assert server.connections == 2
            await client.aclose()

    run(main())


def test_stale_keep_alive_connection_closed_on_the_next_request_is_retried() -> None:
    """The kept-alive connection takes the request and closes without answering: sent once more."""

    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            if peer.number == 1:
                await peer.send(answer(b"first"))
                await peer.request()  # read it, never answer
                await peer.close()
                return
            await peer.send(answer(b"retried"))
            await peer.until_closed()

        async with RawServer(handler) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"first"
            response = await send(client, server.url("/second"), content=b"payload")
            assert await response.aread() == b"retried"
            assert server.connections == 2
            assert [(r.connection, r.request_line, r.body) for r in server.requests[1:]] == [
                (1, "POST /second HTTP/1.1", b"payload"),
                (2, "POST /second HTTP/1.1", b"payload"),
            ]
            await client.aclose()

    run(main())


# --------------------------------------------------------------------------- errors


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused() -> None:
    async def main() -> None:
        with pytest.raises(transport.ConnectError):
            await send(transport.Client(), f"http://127.0.0.1:{free_port()}/")

    run(main())


def test_server_closes_inside_a_chunked_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(head(transfer_encoding="chunked") + chunk(b"data: one\n\n") + b"20\r\ndata: tw")
            await peer.close()

        async with RawServer(handler) as server:
            client = transport.Client()
            response = await send(client, server.url())
            seen: list[str] = []
            with pytest.raises(transport.RemoteProtocolError):
                async for line in response.aiter_lines():
                    seen.append(line)
            assert seen == ["data: one", ""]
            assert response.is_closed
            assert client.idle_count == 0
            await client.aclose()

    run(main())


def test_server_closes_inside_a_content_length_body() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(head(content_length=100) + b"only part")
            await peer.close()

        async with RawServer(handler) as server:
            client = transport.Client()
            response = await send(client, server.url())
            with pytest.raises(transport.RemoteProtocolError, match="payload is not completed"):
                await response.aread()
            await client.aclose()

    run(main())


def test_server_closes_before_answering_on_a_fresh_connection() -> None:
    """No silent retry on a connection that was new: the error is the caller's."""

    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.close()

        async with RawServer(handler) as server:
            client = transport.Client()
            with pytest.raises(transport.RemoteProtocolError, match="Server disconnected"):
                await send(client, server.url())
            assert server.connections == 1
            await client.aclose()

    run(main())


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
    ],
    ids=["status-not-a-number", "not-http", "no-status", "bad-content-length"],
)
def test_malformed_answer_head(raw: bytes) -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(raw)
            await peer.until_closed()

        async with RawServer(handler) as server:
            client = transport.Client()
            # The server handler ends only when the client closed its connection (no leak).
            with pytest.raises(transport.RemoteProtocolError):
                await send(client, server.url())
            tasks = list(server._tasks)
            await asyncio.wait_for(asyncio.gather(*tasks), 1)
            await client.aclose()

    run(main())


@pytest.mark.parametrize(
    "raw",
    [b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n"],
    ids=["status-not-a-number", "bad-content-length"],
)
def test_malformed_answer_on_a_reused_connection_is_not_resent(raw: bytes) -> None:
    """Only a connection closed before any answer is retried: an answer, even a broken one, is final."""

    async def main() -> None:
        async with RawServer(answering(answer(b"ok"), raw, raw)) as server:
            client = transport.Client()
            assert await fetch(client, server.url()) == b"ok"
            with pytest.raises(transport.RemoteProtocolError):
                await send(client, server.url())
            assert (server.connections, len(server.requests)) == (1, 2)
            await client.aclose()

    run(main())


def test_invalid_chunk_size() -> None:
    raw = head(transfer_encoding="chunked") + b"zz\r\nabc\r\n0\r\n\r\n"

    async def main() -> None:
        async with RawServer(answering(raw)) as server:
            client = transport.Client()
            with pytest.raises(transport.RemoteProtocolError, match="(?i)chunk size"):
                response = await send(client, server.url())  # head and chunk arrive in one read
                await response.aread()
            await client.aclose()

    run(main())


def test_interim_100_continue_is_skipped(reads: list[bytes]) -> None:
    pieces = (b"HTTP/1.1 100 Continue\r\n\r\n", answer(b"real", x_final="yes"))

    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(*pieces, gap=GAP)
            await peer.until_closed()

        async with RawServer(handler) as server:
            client = transport.Client()
            response = await send(client, server.url())
            assert response.status_code == 200
            assert response.headers.get("x-final") == "yes"
            assert await response.aread() == b"real"
            await client.aclose()

    run(main())
    assert_split_at(reads, pieces)


# --------------------------------------------------------------------------- headers


def test_headers_are_case_insensitive() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nX-Request-ID: req_1\r\nContent-Type:text/plain \r\n"
        b"x-dup: a\r\nX-Dup: b\r\nContent-Length: 2\r\n\r\nok"
    )

    async def main() -> transport.Headers:
        async with RawServer(answering(raw)) as server:
            client = transport.Client()
            response = await send(client, server.url())
            await response.aread()
            await client.aclose()
            return response.headers

    headers = run(main())
    assert isinstance(headers, transport.Headers)
    assert headers["x-request-id"] == headers["X-Request-Id"] == headers.get("X-REQUEST-ID") == "req_1"
    assert "x-request-id" in headers and "X-Request-ID" in headers and "CONTENT-TYPE" in headers
    assert headers["content-type"] == "text/plain"
    assert headers["x-dup"] == "b"
    assert "x-missing" not in headers and 42 not in headers
    assert headers.get("X-Missing") is None and headers.get("X-Missing", "d") == "d"
    with pytest.raises(KeyError):
        headers["X-Missing"]


# --------------------------------------------------------------------------- through the adapter

EVENTS = [
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hel"}\n\n',
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"lo"}\n\n',
    b'event: response.output_item.done\ndata: {"type":"response.output_item.done",'
    b'"item":{"type":"message","id":"msg_1","status":"completed"}}\n\n',
    b'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed",'
    b'"usage":{"input_tokens":3,"output_tokens":2}}}\n\n',
]
EXPECTED = [
    TextDelta("Hel"),
    TextDelta("lo"),
    ItemEnd({"id": "msg_1"}),
    UsageReport(input_tokens=3, output_tokens=2),
    Finish("stop"),
]
SSE_HEAD = head(content_type="text/event-stream", transfer_encoding="chunked")


def adapter_for(server: RawServer | None, port: int = 0, **config: Any) -> OpenAIResponsesAdapter:
    base = server.url("/v1") if server is not None else f"http://127.0.0.1:{port}/v1"
    return OpenAIResponsesAdapter(
        ProviderConfig(name="oai", adapter="openai", base_url=base, api_key="sk-test-0123456789", **config)
    )


async def sample(
    adapter: OpenAIResponsesAdapter, *, stream: bool = True
) -> tuple[list[Any], Exception | None]:
    """The chunks of one sample and the error that ended it (None when it finished)."""
    seen: list[Any] = []
    request = ModelRequest(model="gpt-test", items=[user("hi")])
    chunks: AsyncIterator[Any] = adapter.sample(request, stream=stream)
    try:
        async for item in chunks:
            seen.append(item)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return seen, exc
    finally:
        await adapter.aclose()
    return seen, None


def test_adapter_retries_a_429_then_streams(reads: list[bytes]) -> None:
    rate_limited = answer(
        b'{"error":{"message":"slow down","type":"rate_limit"}}',
        429,
        retry_after=0,
        content_type="application/json",
    )
    body = chunked(*EVENTS)
    cut = len(chunk(EVENTS[0]))  # the end of the first chunk: body[cut - 1] is its final LF

    async def main() -> None:
        async def handler(peer: Peer) -> None:
            assert await peer.request() is not None
            await peer.send(rate_limited)
            assert await peer.request() is not None
            # The stream arrives in pieces cut mid-event and between chunk CR and LF.
            await peer.send(SSE_HEAD + body[: cut - 1], body[cut - 1 : cut + 40], body[cut + 40 :], gap=GAP)
            await peer.until_closed()

        async with RawServer(handler) as server:
            started = time.monotonic()
            seen, error = await sample(adapter_for(server, max_retries=1))
            assert error is None
            assert seen == EXPECTED
            assert time.monotonic() - started < 1.0  # retry-after: 0 means no wait
            assert server.connections == 1  # the 429 was read whole: its connection was reused
            first, second = server.requests
            assert first.request_line == second.request_line == "POST /v1/responses HTTP/1.1"
            assert first.body == second.body
            assert second.header("authorization") == "Bearer sk-test-0123456789"

    run(main())
    assert any(data.endswith(b"\r") for data in reads)  # a read did end between CR and LF


def test_adapter_429_without_retries_left() -> None:
    rate_limited = answer(b'{"error":{"message":"slow down"}}', 429, retry_after=0)

    async def main() -> None:
        async with RawServer(answering(rate_limited)) as server:
            seen, error = await sample(adapter_for(server, max_retries=0))
            assert seen == []
            assert isinstance(error, UpstreamError)
            assert (error.status, error.code) == (429, "rate_limit_exceeded")
            assert "slow down" in error.message

    run(main())


def test_adapter_idle_timeout_after_the_first_event() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(SSE_HEAD + chunk(EVENTS[0]))
            await peer.until_closed()  # silent until the client gives up

        async with RawServer(handler) as server:
            started = time.monotonic()
            seen, error = await sample(adapter_for(server, first_byte_timeout=3.0, idle_timeout=0.2))
            elapsed = time.monotonic() - started
            assert seen == [TextDelta("Hel")]
            assert isinstance(error, UpstreamError)
            assert (error.status, error.code) == (504, "upstream_timeout")
            assert "went silent mid-stream" in error.message
            assert 0.15 < elapsed < 1.5

    run(main())


def test_adapter_connection_dropped_mid_stream() -> None:
    async def main() -> None:
        async def handler(peer: Peer) -> None:
            await peer.request()
            await peer.send(SSE_HEAD + chunk(EVENTS[0]) + chunk(EVENTS[1])[:30])
            await peer.close()

        async with RawServer(handler) as server:
            seen, error = await sample(adapter_for(server, max_retries=2))
            assert seen == [TextDelta("Hel")]
            assert isinstance(error, UpstreamError)
            assert (error.status, error.code) == (502, "upstream_disconnected")
            assert "dropped the stream: RemoteProtocolError" in error.message
            assert server.connections == 1  # nothing is retried once the stream started

    run(main())


def test_adapter_unreachable_provider() -> None:
    async def main() -> None:
        seen, error = await sample(adapter_for(None, port=free_port(), max_retries=0))
        assert seen == []
        assert isinstance(error, UpstreamError)
        assert (error.status, error.code) == (502, "upstream_unreachable")
        assert "ConnectError" in error.message

    run(main())


def test_adapter_non_streamed_gzip_answer() -> None:
    payload = (
        b'{"status":"completed","output":[{"type":"message","id":"msg_9","status":"completed",'
        b'"content":[{"type":"output_text","text":"caf\xc3\xa9"}]}]}'
    )
    packed = gzip.compress(payload)

    async def main() -> None:
        raw = answer(packed, content_type="application/json", content_encoding="gzip")
        async with RawServer(answering(raw)) as server:
            seen, error = await sample(adapter_for(server, max_retries=0), stream=False)
            assert error is None
            assert seen == [TextDelta("café"), ItemEnd({"id": "msg_9"}), Finish("stop")]
            assert server.requests[0].body.startswith(b'{"model":"gpt-test"')

    run(main())


# --------------------------------------------------------------------------- strict framing, proxies, trust


@pytest.mark.parametrize("size", [b"0x5", b"+0_0", b"-5", b"5 5"])
def test_malformed_chunk_sizes_are_refused(size: bytes) -> None:
    """A chunk size is hexadecimal digits only (RFC 9112 §7.1): no prefix, sign or separator."""
    raw = head(transfer_encoding="chunked") + size + b"\r\nhello\r\n0\r\n\r\n"

    async def main() -> None:
        async with RawServer(answering(raw)) as server:
            client = transport.Client()
            with pytest.raises(transport.RemoteProtocolError, match="(?i)chunk size"):
                response = await send(client, server.url())
                await response.aread()
            await client.aclose()

    run(main())


def test_endless_trailer_is_bounded() -> None:
    """Trailer lines after the last chunk, without end: the client gives up instead of buffering."""
    budget = 64 * 2**20
    sent = 0

    async def handler(peer: Peer) -> None:
        nonlocal sent
        await peer.request()
        await peer.send(head(transfer_encoding="chunked") + chunk(b"hello") + b"0\r\n")
        line = b"x-trailer: " + b"a" * 1000 + b"\r\n"
        while sent < budget:
            await peer.send(line * 64)
            sent += len(line) * 64

    async def main() -> None:
        async with RawServer(handler) as server:
            client = transport.Client()
            with pytest.raises(transport.RemoteProtocolError):
                response = await send(client, server.url())
                await response.aread()
            await client.aclose()

    run(main(), timeout=30)
    assert sent < budget // 4, f"the client read {sent} bytes of trailer before giving up"


def test_http_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is honoured (the request goes to the proxy in absolute form); NO_PROXY skips it."""

    async def main() -> None:
        async with RawServer(answering(answer(b"via proxy"))) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url())
            monkeypatch.delenv("NO_PROXY", raising=False)
            client = transport.Client()
            assert await fetch(client, "http://provider.invalid/v1/chat") == b"via proxy"
            assert proxy.requests[0].request_line == "POST http://provider.invalid/v1/chat HTTP/1.1"
            monkeypatch.setenv("NO_PROXY", "provider.invalid")
            with pytest.raises(transport.ConnectError):  # direct: the name does not resolve
                await send(client, "http://provider.invalid/v1/chat")
            assert len(proxy.requests) == 1
            await client.aclose()

    run(main())


def test_https_proxy_tunnel_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY is honoured: the client asks the proxy for a CONNECT tunnel to the provider."""

    async def main() -> None:
        async with RawServer(answering(answer(b"no", 403))) as proxy:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url())
            monkeypatch.delenv("NO_PROXY", raising=False)
            client = transport.Client()
            with pytest.raises(transport.ConnectError):  # the proxy refuses the tunnel
                await send(client, "https://provider.invalid/v1/messages")
            assert proxy.requests[0].request_line == "CONNECT provider.invalid:443 HTTP/1.1"
            await client.aclose()

    run(main())


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test provider")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


def test_a_provider_ca_bundle_is_trusted_and_others_are_not(tmp_path: Any) -> None:
    """``options.ca_bundle`` makes a private CA trusted for that provider only."""
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer(b"secure"))
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        trusting, default = transport.Client(ca_bundle=cert), transport.Client()
        assert await fetch(trusting, url) == b"secure"
        with pytest.raises(transport.ConnectError, match="(?i)certificate"):
            await send(default, url)
        await trusting.aclose()
        await default.aclose()
        server.close()

    run(main())
