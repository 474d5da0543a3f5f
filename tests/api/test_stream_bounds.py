"""Issue 16, finding 6: one client cannot exhaust the server through streams.

* A client that stops reading a (replayed) stream is dropped after ``STREAM_WRITE_TIMEOUT``
  instead of the server buffering the whole stream for it (daphne's ``send`` never waits).
* A replay (``GET …?stream=true``) holds one of the key's concurrency slots while it streams.
* ``starting_after`` below -1 is a 400 naming it (it used to make each request re-read the whole
  event log every 50 ms for 30 s).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.api import create
from tests.support.server import ServerProcess
from tests.support.spec import assert_valid_error
from tests.support.sse import parse_sse

KEY = "sk-stream-bounds-pair-0001"
WORDS = 30
WORD = "x" * 100_000


@pytest.fixture(scope="module")
def bounded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("stream-bounds")
    config = tmp / "openresponses.json"
    config.write_text(json.dumps({"keys": [{"name": "pair", "key_env": "SB_PAIR_KEY", "max_concurrent": 1}]}))
    env = {
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_STREAM_WRITE_TIMEOUT": "2",
        "OPENRESPONSES_MODEL_CONTEXT_TOKENS": "mock-*=10000000",
        "SB_PAIR_KEY": KEY,
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="stream-bounds-server").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def big_response(bounded_server: ServerProcess) -> tuple[str, int]:
    """A stored response whose event log is ~15 MB (a 3 MB answer: its deltas and done events)."""
    with httpx.Client(base_url=bounded_server.url, timeout=120) as http:
        text = " ".join([WORD] * WORDS)
        rid = create(http, {"model": "mock-1", "input": text}, headers=auth())["id"]
        with http.stream("GET", f"/v1/responses/{rid}?stream=true", headers=auth()) as replay:
            assert replay.status_code == 200
            raw = replay.read()
    events, done = parse_sse(raw.decode())
    assert done and events[-1]["type"] == "response.completed"
    assert len(raw) > 12_000_000
    return rid, len(raw)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def stalled_replay(server: ServerProcess, rid: str) -> socket.socket:
    """A replay whose client reads nothing (a small receive window, so the server's buffer fills)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        f"GET /v1/responses/{rid}?stream=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\n\r\n".encode()
    )
    return sock


def drain(sock: socket.socket) -> bytes:
    """Everything the server sent before it closed or reset the connection."""
    sock.settimeout(30)
    received = bytearray()
    try:
        while chunk := sock.recv(1 << 16):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    return bytes(received)


def wait_for_log(server: ServerProcess, text: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.log_path.read_text().count(text) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server never logged {text!r} {count} time(s)")


DROPPED = "dropped a client that read nothing"


def test_a_reader_that_does_not_read_is_dropped(bounded_server: ServerProcess, big_response: tuple[str, int]):
    rid, size = big_response
    before = bounded_server.log_path.read_text().count(DROPPED)
    sock = stalled_replay(bounded_server, rid)
    wait_for_log(bounded_server, DROPPED, before + 1)
    received = drain(sock)
    assert received.startswith(b"HTTP/1.1 200")
    assert b"data: [DONE]" not in received
    # What reached the socket is at most the kernel buffers and Twisted's 64 KiB, not the stream.
    assert len(received) < size // 2


def test_replays_count_against_the_concurrency_limit(
    bounded_server: ServerProcess, big_response: tuple[str, int]
):
    rid, _ = big_response
    before = bounded_server.log_path.read_text().count(DROPPED)
    with httpx.Client(base_url=bounded_server.url, timeout=60) as http:
        sock = stalled_replay(bounded_server, rid)  # holds the key's only slot while it streams
        try:
            deadline = time.monotonic() + 30
            while True:
                refused = http.get(f"/v1/responses/{rid}?stream=true", headers=auth())
                if refused.status_code == 429 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the stalled replay may not have been admitted yet
            assert refused.status_code == 429, refused.status_code
            assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
            assert refused.headers["Retry-After"]
        finally:
            wait_for_log(bounded_server, DROPPED, before + 1)
            drain(sock)
        # Dropped: its slot is free again (released when its stream ends).
        deadline = time.monotonic() + 30
        while True:
            with http.stream("GET", f"/v1/responses/{rid}?stream=true", headers=auth()) as replay:
                if replay.status_code == 200:
                    raw = replay.read()
                    break
            assert time.monotonic() < deadline, "the dropped replay's slot was never released"
            time.sleep(0.1)
        assert raw.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize("value", ["-2", "-1000000"])
def test_starting_after_below_minus_one_is_refused(
    bounded_server: ServerProcess, big_response: tuple[str, int], value: str
):
    rid, _ = big_response
    with httpx.Client(base_url=bounded_server.url, timeout=30) as http:
        response = http.get(f"/v1/responses/{rid}?stream=true&starting_after={value}", headers=auth())
        assert response.status_code == 400
        body = response.json()
        assert_valid_error(body)
        assert body["error"]["param"] == "starting_after"
        # -1 still means "everything"; a later number replays what follows it.
        with http.stream(
            "GET", f"/v1/responses/{rid}?stream=true&starting_after=3", headers=auth()
        ) as replay:
            events, done = parse_sse(replay.read().decode())
        assert done and events[0]["sequence_number"] == 4
