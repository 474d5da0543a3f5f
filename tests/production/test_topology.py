"""The agentic loop in the production topology: daphne + a Celery worker process, PostgreSQL, Redis.

Clients are the official openai SDK (and httpx for raw SSE); the model is a scripted Chat
Completions server on loopback; MCP tools come from a real MCP server on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from openresponses_site.runserver import WORKER_START_THREADS
from tests.support.production import (
    REDIS_HOST,
    REDIS_PORT,
    PostgresDatabase,
    PrivateRedis,
    Topology,
    upstream_config,
)
from tests.support.spec import (
    assert_valid_error,
    assert_valid_event,
    assert_valid_response,
    assert_valid_stream,
)
from tests.support.sse import parse_sse
from tests.support.upstream import ScriptedUpstream

from .conftest import topology_env

CANCELLED = "openresponses:response.cancelled"
TERMINAL = {"response.completed", "response.failed", "response.incomplete", CANCELLED}
LONG = " ".join(f"w{i}" for i in range(400))  # about 20 s at the paced upstream's 50 ms a word


def sdk_events(stream: Any) -> list[dict[str, Any]]:
    """The SDK's stream as the JSON the server sent (``exclude_unset`` keeps exactly its keys)."""
    return [event.model_dump(mode="json", exclude_unset=True) for event in stream]


MCP_ITEMS = {"mcp_list_tools", "mcp_call", "mcp_approval_request"}


def valid_resource(resource: dict[str, Any]) -> None:
    """Spec-validate a resource; MCP tool entries and items (OpenAI's) are checked on their own."""
    tools = resource.get("tools") or []
    for tool in tools:
        if tool.get("type") == "mcp":
            assert {"server_label", "server_url"} <= set(tool) and "headers" not in tool, tool
    output = [i for i in resource.get("output") or [] if i.get("type") not in MCP_ITEMS]
    assert all(i.get("server_label") for i in resource.get("output") or [] if i.get("type") in MCP_ITEMS)
    assert_valid_response(
        {**resource, "tools": [t for t in tools if t.get("type") != "mcp"], "output": output}
    )


def valid_event(event: dict[str, Any]) -> None:
    """Spec-validate an event (the cancelled extension event: its resource); MCP tool echoes checked apart."""
    if "response" in event:
        valid_resource(event["response"])
        event = {
            **event,
            "response": {
                **event["response"],
                "tools": [t for t in event["response"]["tools"] if t.get("type") != "mcp"],
                "output": [i for i in event["response"]["output"] if i.get("type") not in MCP_ITEMS],
            },
        }
    if event["type"] != CANCELLED and (event.get("item") or {}).get("type") not in MCP_ITEMS:
        assert_valid_event(event)


def read_sse(http: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], bool]:
    with http.stream(method, url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        return parse_sse(response.read().decode())


def wait_status(http: httpx.Client, response_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = http.get(f"/v1/responses/{response_id}").json()
        if data["status"] in statuses:
            valid_resource(data)
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"{response_id} still {data['status']} after {timeout}s")
        time.sleep(0.2)


def stored_log_consistent(http: httpx.Client, response_id: str) -> list[dict[str, Any]]:
    """The stored event log replays as 0..n with one terminal event that matches the stored response."""
    events, done = read_sse(http, "GET", f"/v1/responses/{response_id}", params={"stream": "true"})
    assert done
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events].count(events[-1]["type"]) == 1 and events[-1]["type"] in TERMINAL
    for event in events:
        valid_event(event)
    stored = http.get(f"/v1/responses/{response_id}").json()
    valid_resource(stored)
    assert stored["status"] == events[-1]["response"]["status"]
    assert stored["output"] == events[-1]["response"]["output"]
    assert stored["usage"] == events[-1]["response"]["usage"]
    return events


def test_streamed_loop_with_hosted_tools(client, upstream_calls: ScriptedUpstream):
    tools = [{"type": "function", "name": "get_weather"}, {"type": "function", "name": "add_numbers"}]
    with client.responses.create(
        model="chat-fast",
        input='CALL get_weather {"city": "Paris"} ; add_numbers {"a": 2, "b": 3}',
        tools=tools,
        stream=True,
    ) as stream:
        events = sdk_events(stream)
    assert_valid_stream(events)
    final = events[-1]["response"]
    assert final["status"] == "completed"
    kinds = [item["type"] for item in final["output"]]
    assert kinds == [
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    outputs = {
        item["call_id"]: item["output"] for item in final["output"] if item["type"] == "function_call_output"
    }
    calls = {item["call_id"]: item["name"] for item in final["output"] if item["type"] == "function_call"}
    assert {calls[cid]: out for cid, out in outputs.items()} == {
        "get_weather": json.dumps(
            {"city": "Paris", "temperature": 21, "unit": "celsius", "conditions": "sunny"}
        ),
        "add_numbers": "5",
    }
    assert final["output"][-1]["content"][0]["text"].endswith("| 5")
    # The model was offered the registered schemas, and sampled twice; usage is the sum of both.
    first, second = upstream_calls.calls
    offered = {t["function"]["name"]: t["function"]["parameters"] for t in first.body["tools"]}
    assert offered["add_numbers"]["required"] == ["a", "b"]
    assert [m["role"] for m in second.body["messages"]][-2:] == ["tool", "tool"]
    assert final["usage"]["output_tokens"] == 2 + len(final["output"][-1]["content"][0]["text"].split())
    stored_log_consistent(
        httpx.Client(base_url=client.base_url.__str__().removesuffix("/v1/"), timeout=30), final["id"]
    )


def test_client_function_call_round_trip(client, upstream_calls: ScriptedUpstream):
    tool = {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    }
    first = client.responses.create(model="chat-fast", input='CALL lookup {"q": "answer"}', tools=[tool])
    data = first.model_dump(mode="json", exclude_unset=True)
    assert_valid_response(data)
    assert data["status"] == "completed"
    call = data["output"][0]
    assert (
        call["type"] == "function_call"
        and call["name"] == "lookup"
        and json.loads(call["arguments"]) == {"q": "answer"}
    )
    assert len(upstream_calls.calls) == 1  # a client tool ends the turn
    second = client.responses.create(
        model="chat-fast",
        previous_response_id=data["id"],
        tools=[tool],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": "42"}],
    )
    assert_valid_response(second.model_dump(mode="json", exclude_unset=True))
    assert second.status == "completed" and second.output_text == "The tool returned: 42"


def test_mcp_tools_listed_called_and_recorded(client, phttp, mcp_server, upstream_calls: ScriptedUpstream):
    mcp_server.headers.clear()
    mcp_server.tool_calls.clear()
    tool = {
        "type": "mcp",
        "server_label": "orders",
        "server_url": mcp_server.url,
        "headers": {"Authorization": "Bearer mcp-secret-7"},
        "allowed_tools": ["lookup_order", "explode"],
        "require_approval": "never",
    }
    with client.responses.create(
        model="chat-fast",
        input='CALL lookup_order {"order_id": "A1"} ; explode {}',
        tools=[tool],
        stream=True,
    ) as stream:
        events = sdk_events(stream)
    for event in events:
        valid_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["status"] == "completed"
    calls = [item for item in final["output"] if item["type"] == "mcp_call"]
    assert json.loads(calls[0]["output"]) == {"order_id": "A1", "status": "shipped"}
    assert calls[1]["status"] == "failed" and calls[1]["error"]  # the tool's failure went back to the model
    assert final["tools"][0]["server_label"] == "orders" and "headers" not in final["tools"][0]
    offered = sorted(t["function"]["name"] for t in upstream_calls.calls[0].body["tools"])
    assert offered == ["explode", "lookup_order"]  # allowed_tools filtered hidden_tool out
    assert [name for name, _ in mcp_server.tool_calls] == ["lookup_order", "explode"] or sorted(
        n for n, _ in mcp_server.tool_calls
    ) == ["explode", "lookup_order"]
    assert any(h.get("authorization") == "Bearer mcp-secret-7" for h in mcp_server.headers)
    stored = stored_log_consistent(phttp, final["id"])
    assert "mcp-secret-7" not in json.dumps(stored)

    # Approval required (the default): the turn ends on an approval request, the server is not called.
    mcp_server.tool_calls.clear()
    gated = client.responses.create(
        model="chat-fast",
        input='CALL lookup_order {"order_id": "B2"}',
        tools=[{**tool, "require_approval": "always"}],
    )
    data = gated.model_dump(mode="json", exclude_unset=True)
    valid_resource(data)
    assert data["status"] == "completed"
    assert [i["type"] for i in data["output"]] == ["mcp_list_tools", "mcp_approval_request"]
    assert mcp_server.tool_calls == []


def test_mcp_server_unreachable_fails_cleanly(phttp):
    """Before any output the failure is an HTTP error (as for an upstream refusal); the stored response failed."""
    tool = {
        "type": "mcp",
        "server_label": "gone",
        "server_url": "http://127.0.0.1:9/mcp",
        "require_approval": "never",
    }
    answer = phttp.post(
        "/v1/responses", json={"model": "chat-fast", "input": "hello", "tools": [tool], "stream": True}
    )
    assert answer.status_code == 502
    assert_valid_error(answer.json())
    assert answer.json()["error"]["code"] == "mcp_server_error"
    # One message whatever the target's state (refused here): nothing tells an open port from a closed one.
    assert answer.json()["error"]["message"] == "Could not connect to MCP server 'gone' and list its tools."


def test_middleware_changes_the_request(phttp, client, upstream_calls: ScriptedUpstream):
    response = client.responses.create(model="chat-fast", input="Write to ada@example.com please")
    assert response.status == "completed"
    sent = upstream_calls.calls[0].body["messages"][-1]
    assert "ada@example.com" not in json.dumps(sent) and "[redacted email]" in json.dumps(sent)
    # What the client sent is stored unchanged.
    items = phttp.get(f"/v1/responses/{response.id}/input_items").json()
    assert items["data"][0]["content"][0]["text"] == "Write to ada@example.com please"


def test_background_poll_and_resume_from_the_middle(phttp, client):
    created = client.responses.create(
        model="chat-paced", input=" ".join(f"w{i}" for i in range(40)), background=True
    )
    data = created.model_dump(mode="json", exclude_unset=True)
    assert_valid_response(data)
    assert data["status"] == "queued" and data["background"] is True
    wait_status(phttp, created.id, {"in_progress"}, 30)
    time.sleep(0.6)
    with phttp.stream(
        "GET", f"/v1/responses/{created.id}", params={"stream": "true", "starting_after": 5}
    ) as response:
        resumed, done = parse_sse(response.read().decode())
    assert done and resumed[0]["sequence_number"] == 6 and resumed[-1]["type"] == "response.completed"
    full = stored_log_consistent(phttp, created.id)
    assert resumed == full[6:]
    assert_valid_stream(full)
    final = client.responses.retrieve(created.id)
    assert final.status == "completed" and final.output_text == "You said: " + " ".join(
        f"w{i}" for i in range(40)
    )


def test_cancel_mid_stream_closes_the_upstream(phttp, client, upstream_calls: ScriptedUpstream):
    events = []
    with client.responses.create(model="chat-paced", input=LONG, stream=True) as stream:
        for event in stream:
            events.append(event.model_dump(mode="json", exclude_unset=True))
            if sum(e["type"] == "response.output_text.delta" for e in events) == 5:
                cancelled = client.responses.cancel(events[0]["response"]["id"])
                cancel_sent = time.monotonic()
                assert cancelled.status == "cancelled"
    assert events[-1]["type"] == CANCELLED
    for event in events:
        valid_event(event)
    call = upstream_calls.calls[0]
    deadline = time.monotonic() + 5
    while call.disconnected is None and call.ended is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the upstream notices a closed socket at its next write (every 50 ms)
    assert call.disconnected is not None and call.ended is None
    assert call.disconnected - cancel_sent < 1.0, "the upstream request was closed within a second"
    final = wait_status(phttp, events[0]["response"]["id"], {"cancelled"}, 10)
    assert 0 < len(final["output"][0]["content"][0]["text"].split()) < 400  # partial output kept
    assert final["usage"] is not None
    stored_log_consistent(phttp, final["id"])


def test_two_clients_on_one_stream(production: Topology, client):
    first = client.responses.create(
        model="chat-paced", input=" ".join(f"w{i}" for i in range(30)), stream=True
    )
    head = [next(iter(first)).model_dump(mode="json", exclude_unset=True)]
    response_id = head[0]["response"]["id"]
    second: list[dict[str, Any]] = []

    def attach() -> None:
        with httpx.Client(base_url=production.url, timeout=60) as http:
            events, done = read_sse(http, "GET", f"/v1/responses/{response_id}", params={"stream": "true"})
            assert done
            second.extend(events)

    thread = threading.Thread(target=attach)
    thread.start()
    rest = [event.model_dump(mode="json", exclude_unset=True) for event in first]
    thread.join(60)
    mine = head + rest
    assert_valid_stream(mine)
    assert second == mine


def test_disconnected_client_does_not_stop_the_response(phttp, production: Topology):
    with (
        httpx.Client(base_url=production.url, timeout=60) as http,
        http.stream(
            "POST",
            "/v1/responses",
            json={"model": "chat-paced", "input": " ".join(f"w{i}" for i in range(30)), "stream": True},
        ) as response,
    ):
        first_chunk = next(response.iter_text())
    response_id = json.loads(first_chunk.split("data: ", 1)[1].split("\n", 1)[0])["response"]["id"]
    final = wait_status(phttp, response_id, {"completed", "cancelled", "failed"}, 30)
    assert final["status"] == "completed"
    assert len(final["output"][0]["content"][0]["text"].split()) == 32
    stored_log_consistent(phttp, response_id)


def test_cancel_racing_completion_is_consistent(phttp, client):
    ids = [
        client.responses.create(model="chat-fast", input="quick one", background=True).id for _ in range(8)
    ]
    for delay, response_id in enumerate(ids):
        time.sleep(0.02 * delay)
        phttp.post(f"/v1/responses/{response_id}/cancel")
    outcomes = set()
    for response_id in ids:
        final = wait_status(phttp, response_id, {"completed", "cancelled"}, 30)
        events = stored_log_consistent(phttp, response_id)
        outcomes.add(final["status"])
        assert (
            events[-1]["type"] == {"completed": "response.completed", "cancelled": CANCELLED}[final["status"]]
        )
    assert outcomes <= {"completed", "cancelled"}


def test_worker_killed_mid_stream(production: Topology, phttp):
    """SIGKILL the worker running a loop: another worker takes the response over, closes the partial
    message ``incomplete`` and samples again; the stream stays valid and the worker comes back."""
    worker = production.pid_of("worker")
    readies = production.log().count(" ready.")
    events = []
    killed_at = None
    with phttp.stream(
        "POST", "/v1/responses", json={"model": "chat-paced", "input": LONG, "stream": True}
    ) as response:
        buffer = ""
        for text in response.iter_text():
            buffer += text
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                parsed, _ = parse_sse(frame + "\n\n")
                events.extend(parsed)
            if killed_at is None and sum(e["type"] == "response.output_text.delta" for e in events) >= 5:
                os.kill(worker, signal.SIGKILL)
                killed_at = time.monotonic()
    assert killed_at is not None
    assert time.monotonic() - killed_at < 90
    assert events[-1]["type"] == "response.completed"
    assert_valid_stream(events)
    partial, whole = events[-1]["response"]["output"]
    assert partial["status"] == "incomplete" and whole["status"] == "completed"
    assert ("You said: " + LONG).startswith(partial["content"][0]["text"])
    assert whole["content"][0]["text"] == "You said: " + LONG
    stored = stored_log_consistent(phttp, events[0]["response"]["id"])
    assert stored == events
    # The supervisor restarted the worker, which serves new loops.
    production.wait_worker_ready(60, after=readies)
    assert production.pid_of("worker") != worker
    after = phttp.post("/v1/responses", json={"model": "chat-fast", "input": "still there?"}).json()
    assert after["status"] == "completed"


@pytest.fixture
def private_topology(postgres: PostgresDatabase, scripted: ScriptedUpstream, tmp_path):
    redis = PrivateRedis(tmp_path).start()
    config = upstream_config(tmp_path / "openresponses.json", scripted.base_url)
    database = PostgresDatabase("or_prod_redis")
    topology = Topology(
        name="redis-restart",
        database_url=database.url,
        redis_url=redis.url,
        workdir=tmp_path / "run",
        env=topology_env(str(config)),
    )
    try:
        topology.start()
        yield topology, redis
    finally:
        topology.stop()
        redis.stop()
        database.drop()


def test_redis_restarted_mid_stream(private_topology):
    """Redis goes away for a moment: the stream resumes (or ends cleanly) and the stored response is whole."""
    topology, redis = private_topology
    text = " ".join(f"w{i}" for i in range(80))
    events: list[dict[str, Any]] = []
    with httpx.Client(base_url=topology.url, timeout=60) as http:
        try:
            with http.stream(
                "POST", "/v1/responses", json={"model": "chat-paced", "input": text, "stream": True}
            ) as response:
                buffer = ""
                restarted = False
                for chunk in response.iter_text():
                    buffer += chunk
                    while "\n\n" in buffer:
                        frame, buffer = buffer.split("\n\n", 1)
                        events.extend(parse_sse(frame + "\n\n")[0])
                    if not restarted and sum(e["type"] == "response.output_text.delta" for e in events) >= 5:
                        redis.stop()
                        time.sleep(1.0)
                        redis.start()
                        restarted = True
        except httpx.HTTPError:
            pass  # ending the stream early is a clean failure; the store below must be whole
        assert events, "the stream started"
        seqs = [e["sequence_number"] for e in events]
        assert seqs == list(range(len(seqs))), "no event lost or repeated in what the client got"
        response_id = events[0]["response"]["id"]
        final = wait_status(http, response_id, {"completed", "failed"}, 60)
        stored = stored_log_consistent(http, response_id)
        assert stored[: len(events)] == events
        if final["status"] == "completed":
            assert final["output"][0]["content"][0]["text"] == "You said: " + text
            assert_valid_stream(stored)
        # Afterwards the topology serves new requests again.
        deadline = time.monotonic() + 30
        while True:
            again = http.post("/v1/responses", json={"model": "chat-fast", "input": "after the restart"})
            if again.status_code == 200 and again.json()["status"] == "completed":
                break
            assert time.monotonic() < deadline, again.text
            time.sleep(1)


def test_web_and_worker_run_on_uvloop(production: Topology) -> None:
    """daphne serves on uvloop and the worker's loop host runs on it (``OPENRESPONSES_UVLOOP`` unset)."""
    deadline = time.monotonic() + 30
    while "worker: loop host on" not in production.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = production.log()
    assert "[openresponses] web: daphne on uvloop" in log
    assert "worker: loop host on uvloop" in log
    # make run's threads only start loops; the host caps them at OPENRESPONSES_WORKER_CONCURRENCY
    assert "worker: loop host on uvloop, at most 100 loops" in log
    argv = Path(f"/proc/{production.pid_of('worker')}/cmdline").read_text().split("\0")
    assert argv[argv.index("--concurrency") + 1] == str(WORKER_START_THREADS)


def _connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP connection to ``port`` on this machine (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


def test_several_worker_processes_share_the_queue(scripted: ScriptedUpstream, tmp_path) -> None:
    """``OPENRESPONSES_WORKER_PROCESSES=2``: two workers (node names of their own) both run loops."""
    config = upstream_config(tmp_path / "openresponses.json", scripted.base_url)
    database = PostgresDatabase("or_prod_workers")
    topology = Topology(
        name="two-workers",
        database_url=database.url,
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        workdir=tmp_path / "run",
        env={**topology_env(str(config)), "OPENRESPONSES_WORKER_PROCESSES": "2"},
    )
    try:
        topology.start()
        deadline = time.monotonic() + 60
        while "celery2@" not in topology.log() or topology.log().count(" ready.") < 2:
            assert time.monotonic() < deadline, "the second worker did not become ready"
            time.sleep(0.2)
        pids = [topology.pid_of("worker"), topology.pid_of("worker2")]
        port = int(scripted.base_url.rsplit(":", 1)[1].split("/")[0])
        streamed = [False, False]  # each worker seen with a connection to the upstream
        text = " ".join(f"w{i}" for i in range(40))  # ~2 s at the paced upstream's 50 ms a word
        with httpx.Client(base_url=topology.url, timeout=60) as http:
            ids = []
            for _ in range(6):  # spaced: Redis hands queued messages to blocked workers in turn
                body = {"model": "chat-paced", "input": text, "background": True}
                ids.append(http.post("/v1/responses", json=body).json()["id"])
                time.sleep(0.3)
                streamed = [
                    seen or _connected_to(pid, port) for seen, pid in zip(streamed, pids, strict=True)
                ]
            statuses: list[str] = []
            while time.monotonic() < deadline + 60:
                streamed = [
                    seen or _connected_to(pid, port) for seen, pid in zip(streamed, pids, strict=True)
                ]
                statuses = [http.get(f"/v1/responses/{rid}").json()["status"] for rid in ids]
                if all(s in {"completed", "failed", "incomplete"} for s in statuses):
                    break
                time.sleep(0.2)
        assert statuses == ["completed"] * 6, statuses
        assert streamed == [True, True], "one worker process ran every loop"
    finally:
        topology.stop()
        database.drop()
