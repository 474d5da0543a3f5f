"""Durable loops in the production topology: a worker SIGKILLed in the middle of a tool loop.

daphne + a Celery worker (restarted by the supervisor) on PostgreSQL and Redis; the scripted
upstream calls two hosted tools at once: one answers at once, the other blocks until the test
kills the worker running it. Another worker takes the response over and completes it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.production import PostgresDatabase, Topology, upstream_config
from tests.support.spec import assert_valid_stream
from tests.support.sse import parse_sse
from tests.support.upstream import ScriptedUpstream

from .conftest import topology_env

TOOLS = ("logged_tool", "blocking_tool")


@pytest.fixture
def durable_topology(
    postgres: PostgresDatabase, scripted: ScriptedUpstream, tmp_path: Path
) -> Iterator[tuple[Topology, PostgresDatabase, Path]]:
    database = PostgresDatabase("or_prod_durable")
    log = tmp_path / "tools.log"
    env = topology_env(str(upstream_config(tmp_path / "openresponses.json", scripted.base_url)))
    env["OPENRESPONSES_HOSTED_TOOLS"] = ",".join(f"tests.support.hosted_tools.{name}" for name in TOOLS)
    env["OPENRESPONSES_TEST_TOOL_LOG"] = str(log)
    topology = Topology(
        name="durable", database_url=database.url, redis_url=_redis_url(), workdir=tmp_path / "run", env=env
    )
    try:
        topology.start()
        yield topology, database, log
    finally:
        topology.stop()
        database.drop()


def _redis_url() -> str:
    from tests.support.production import REDIS_HOST, REDIS_PORT

    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def quick_result_stored(database: PostgresDatabase, response_id: str) -> bool:
    """Whether a tool result of the response is in its checkpoint (a completed call, never run again)."""
    rows = database.query("SELECT checkpoint::text FROM responses_app_response WHERE id = %s", response_id)
    checkpoint = json.loads(rows[0][0] or "null") if rows else None
    tools = (checkpoint or {}).get("tools") or {}
    return any("output" in entry for entry in tools.values())


class StreamReader(threading.Thread):
    """Reads one SSE stream to its end, noting when each event arrived."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.body = body
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.url, timeout=120) as http,
                http.stream("POST", "/v1/responses", json=self.body) as response,
            ):
                buffer = ""
                for text in response.iter_text():
                    buffer += text
                    while "\n\n" in buffer:
                        frame, buffer = buffer.split("\n\n", 1)
                        parsed, _ = parse_sse(frame + "\n\n")
                        self.events.extend(parsed)
                        self.arrived.extend(time.time() for _ in parsed)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_worker_killed_mid_tool_loop_is_taken_over_and_completes(durable_topology):
    topology, database, log_path = durable_topology
    worker = topology.pid_of("worker")
    readies = topology.log().count(" ready.")
    reader = StreamReader(
        topology.url,
        {
            "model": "chat-fast",
            "input": 'CALL logged_tool {"name": "a"} ; blocking_tool {"name": "b"}',
            "tools": [{"type": "function", "name": name} for name in TOOLS],
            "stream": True,
        },
    )
    reader.start()

    def log() -> list[str]:
        return log_path.read_text().splitlines() if log_path.exists() else []

    _wait(lambda: any(line.startswith("start blocking_tool") for line in log()), 30, "the blocking tool")
    response_id = reader.events[0]["response"]["id"]
    _wait(lambda: quick_result_stored(database, response_id), 30, "the quick tool's stored result")
    seen_before_kill = len(reader.events)
    os.kill(worker, signal.SIGKILL)
    killed_at = time.time()
    heartbeat = database.query("SELECT heartbeat_at FROM responses_app_response WHERE id = %s", response_id)
    detectable_at = heartbeat[0][0] + 10.0  # tests.production.settings: ORPHAN_AFTER_SECONDS

    reader.join(120)
    assert not reader.is_alive(), "the stream ended"
    assert reader.error is None, reader.error
    events = reader.events
    # The client's stream: complete, gap-free, in order and spec-valid.
    assert_valid_stream(events)
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    outputs = {i["call_id"]: i["output"] for i in final["output"] if i["type"] == "function_call_output"}
    assert sorted(outputs.values()) == ["blocked b", "logged a"]
    assert final["output"][-1]["type"] == "message"
    assert final["output"][-1]["content"][0]["text"] == "The tool returned: logged a | blocked b"
    # Each tool ran once: the quick one not again; the blocked call retried with its key, done once.
    lines = log()
    assert [line.split()[:2] for line in lines if "logged_tool" in line] == [
        ["start", "logged_tool"],
        ["done", "logged_tool"],
    ]
    blocked = [line for line in lines if "blocking_tool" in line]
    assert [line.split()[0] for line in blocked] == ["start", "start", "done"]
    assert len({line.split()[2] for line in blocked}) == 1, "one idempotency key for the call"
    # The store agrees with the stream, and a reader reconnecting after any event gets the rest.
    with httpx.Client(base_url=topology.url, timeout=60) as http:
        stored = http.get(f"/v1/responses/{response_id}").json()
        assert stored["status"] == "completed" and stored["output"] == final["output"]
        replay, done = _read(http, response_id, None)
        assert done and replay == events
        rest, done = _read(http, response_id, seen_before_kill - 1)
        assert done and rest == events[seen_before_kill:]
    assert database.query("SELECT takeovers FROM responses_app_response WHERE id = %s", response_id) == [(1,)]
    # Measured (reported, not asserted): the kill to the first event of the new worker.
    resumed_at = reader.arrived[seen_before_kill]
    print(
        f"\nrecovery: first event of the new worker {resumed_at - killed_at:.1f} s after the SIGKILL, "
        f"{resumed_at - detectable_at:.1f} s after the loss was detectable"
    )
    topology.wait_worker_ready(60, after=readies)


def _read(
    http: httpx.Client, response_id: str, starting_after: int | None
) -> tuple[list[dict[str, Any]], bool]:
    params = {"stream": "true"}
    if starting_after is not None:
        params["starting_after"] = str(starting_after)
    with http.stream("GET", f"/v1/responses/{response_id}", params=params) as response:
        assert response.status_code == 200
        return parse_sse(response.read().decode())
