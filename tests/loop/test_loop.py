"""The loop's features end to end on the embedded server: hosted tools, limits, middleware, usage, cancel."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import httpx

from tests.support.api import create, stream
from tests.support.spec import assert_valid_error, assert_valid_response
from tests.support.sse import parse_sse
from tests.support.upstream import ScriptedUpstream
from tests.ws.client import WsClient

CANCELLED = "openresponses:response.cancelled"


def outputs_by_name(resource: dict[str, Any]) -> dict[str, list[str]]:
    names = {i["call_id"]: i["name"] for i in resource["output"] if i["type"] == "function_call"}
    found: dict[str, list[str]] = {}
    for item in resource["output"]:
        if item["type"] == "function_call_output":
            found.setdefault(names[item["call_id"]], []).append(item["output"])
    return found


def prompt_tokens(body: dict[str, Any]) -> int:
    return sum(len(ScriptedUpstream._text(m).split()) for m in body.get("messages") or []) or 1


def wait_final(http: httpx.Client, response_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = http.get(f"/v1/responses/{response_id}").json()
        if data["status"] not in {"queued", "in_progress"}:
            assert_valid_response(data)
            return data
        assert time.monotonic() < deadline, data["status"]
        time.sleep(0.1)


def test_parallel_hosted_calls_run_concurrently(lhttp, scripted):
    """``rendezvous`` only succeeds when a second call runs at the same time (else it times out)."""
    tools = [{"type": "function", "name": "rendezvous"}]
    data = create(
        lhttp,
        {
            "model": "chat-fast",
            "input": 'CALL rendezvous {"name": "a"} ; rendezvous {"name": "b"}',
            "tools": tools,
        },
    )
    assert data["status"] == "completed"
    assert sorted(outputs_by_name(data)["rendezvous"]) == ["met a", "met b"]


def test_tool_errors_and_timeouts_go_back_to_the_model(lhttp, scripted):
    tools = [{"type": "function", "name": "broken_tool"}, {"type": "function", "name": "slow_tool"}]
    events = stream(
        lhttp,
        {
            "model": "chat-fast",
            "input": 'CALL broken_tool {"reason": "x"} ; slow_tool {"seconds": 3}',
            "tools": tools,
        },
    )
    final = events[-1]["response"]
    assert final["status"] == "completed"
    found = outputs_by_name(final)
    assert json.loads(found["broken_tool"][0]) == {
        "error": "Tool broken_tool failed: RuntimeError: broken: x"
    }
    assert json.loads(found["slow_tool"][0]) == {"error": "Tool slow_tool timed out after 1 s"}
    tool_messages = [m["content"] for m in scripted.calls[1].body["messages"] if m["role"] == "tool"]
    assert any("timed out" in str(m) for m in tool_messages) and any(
        "broken: x" in str(m) for m in tool_messages
    )


def test_config_file_hosted_tool_gets_its_schema(lhttp, scripted):
    """``slow_tool`` is registered only in the config file's "hosted_tools"; the request names it without parameters."""
    data = create(
        lhttp,
        {
            "model": "chat-fast",
            "input": 'CALL slow_tool {"seconds": 0}',
            "tools": [{"type": "function", "name": "slow_tool"}],
        },
    )
    assert data["status"] == "completed" and outputs_by_name(data) == {"slow_tool": ["done"]}
    assert data["tools"] == [
        {"type": "function", "name": "slow_tool", "description": None, "parameters": None, "strict": None}
    ]
    offered = scripted.calls[0].body["tools"][0]["function"]
    assert offered["parameters"]["properties"] == {"seconds": {"type": "number"}}
    assert offered["description"].startswith("Sleep, then answer")


def test_max_tool_calls_ends_incomplete(lhttp, scripted):
    body = {
        "model": "chat-fast",
        "input": 'CALL add_numbers {"a": 1, "b": 2} ; add_numbers {"a": 3, "b": 4}',
        "tools": [{"type": "function", "name": "add_numbers"}],
        "max_tool_calls": 1,
    }
    data = create(lhttp, body)
    assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_tool_calls"}
    assert data["max_tool_calls"] == 1
    assert len(scripted.calls) == 1


def test_max_iterations_ends_incomplete(lhttp, scripted):
    body = {
        "model": "chat-fast",
        "input": 'ALWAYS add_numbers {"a": 1, "b": 1}',
        "tools": [{"type": "function", "name": "add_numbers"}],
    }
    events = stream(lhttp, body)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_iterations"}
    assert len(scripted.calls) == 3  # MAX_LOOP_ITERATIONS in tests/loop/settings.py
    assert [i["type"] for i in final["output"]] == ["function_call", "function_call_output"] * 3
    # Usage is the sum over the three samples.
    assert final["usage"]["input_tokens"] == sum(prompt_tokens(c.body) for c in scripted.calls)
    assert final["usage"]["output_tokens"] == 3


def test_middleware_changes_the_request_each_iteration(lhttp, scripted):
    data = create(
        lhttp,
        {
            "model": "chat-fast",
            "input": 'CALL add_numbers {"a": 1, "b": 2}',
            "instructions": "Be brief.",
            "tools": [{"type": "function", "name": "add_numbers"}],
        },
    )
    assert data["status"] == "completed" and data["instructions"] == "Be brief."
    systems = [c.body["messages"][0] for c in scripted.calls]
    assert [s["role"] for s in systems] == ["system", "system"]
    assert [ScriptedUpstream._text(s) for s in systems] == [
        "Be brief.[iteration 0]",
        "Be brief.[iteration 1]",
    ]


def test_redaction_example_middleware(lhttp, scripted):
    data = create(lhttp, {"model": "chat-fast", "input": "I am bob.smith+x@mail.example.org, hi"})
    assert data["status"] == "completed"
    sent = json.dumps(scripted.calls[0].body["messages"])
    assert "bob.smith" not in sent and "I am [redacted email], hi" in sent


def test_middleware_stop_loop_before_sample(lhttp, scripted):
    answer = lhttp.post(
        "/v1/responses", json={"model": "chat-fast", "input": "FORBIDDEN stuff", "stream": True}
    )
    assert answer.status_code == 403  # a policy's refusal before any output: an HTTP error, not a 500
    assert_valid_error(answer.json())
    assert answer.json()["error"]["code"] == "forbidden_by_policy"
    assert scripted.calls == []


def test_middleware_stop_loop_after_sample(lhttp, scripted):
    tool = {"type": "function", "name": "never_allowed", "parameters": {"type": "object", "properties": {}}}
    events = stream(lhttp, {"model": "chat-fast", "input": "CALL never_allowed {}", "tools": [tool]})
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["error"]["code"] == "forbidden_tool"
    final = events[-1]["response"]
    assert final["error"]["code"] == "forbidden_tool" and final["output"][0]["type"] == "function_call"


def test_usage_counts_a_failed_sample_too(lhttp, scripted):
    events = stream(
        lhttp,
        {
            "model": "chat-failsecond",
            "input": 'CALL add_numbers {"a": 1, "b": 2}',
            "tools": [{"type": "function", "name": "add_numbers"}],
        },
    )
    final = events[-1]["response"]
    assert final["status"] == "failed" and len(scripted.calls) == 2
    assert final["usage"]["input_tokens"] == prompt_tokens(scripted.calls[0].body) > 0
    assert final["usage"]["output_tokens"] == 1
    assert lhttp.get(f"/v1/responses/{final['id']}").json()["usage"] == final["usage"]


def test_cancel_racing_completion_resolves_to_one_state(lhttp, scripted):
    ids = [
        create(lhttp, {"model": "chat-fast", "input": "race me", "background": True})["id"] for _ in range(10)
    ]
    for n, response_id in enumerate(ids):
        time.sleep(0.01 * n)
        assert lhttp.post(f"/v1/responses/{response_id}/cancel").status_code == 200
    for response_id in ids:
        final = wait_final(lhttp, response_id)
        assert final["status"] in {"completed", "cancelled"}
        with lhttp.stream("GET", f"/v1/responses/{response_id}", params={"stream": "true"}) as response:
            events, done = parse_sse(response.read().decode())
        assert done
        terminal = [e for e in events if e["type"] in {"response.completed", CANCELLED}]
        assert len(terminal) == 1 and terminal[0] is events[-1]
        final = lhttp.get(f"/v1/responses/{response_id}").json()  # after the loop stored its final state
        assert terminal[0]["response"]["status"] == final["status"]
        assert terminal[0]["response"]["output"] == final["output"]


def test_dropped_stream_keeps_running_by_default(lhttp, scripted):
    with lhttp.stream(
        "POST",
        "/v1/responses",
        json={"model": "chat-paced", "input": "one two three four five six seven eight", "stream": True},
    ) as response:
        first = next(response.iter_text())
    response_id = json.loads(first.split("data: ", 1)[1].split("\n", 1)[0])["response"]["id"]
    final = wait_final(lhttp, response_id)
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "You said: one two three four five six seven eight"


def test_dropped_stream_cancels_with_disconnect_cancels(cancelling_server, scripted):
    with httpx.Client(base_url=cancelling_server.url, timeout=60) as http:
        with http.stream(
            "POST",
            "/v1/responses",
            json={"model": "chat-paced", "input": " ".join(["w"] * 200), "stream": True},
        ) as response:
            first = next(response.iter_text())
        response_id = json.loads(first.split("data: ", 1)[1].split("\n", 1)[0])["response"]["id"]
        assert wait_final(http, response_id)["status"] == "cancelled"
        # The loop stores its partial output and usage when it stops: follow the stream to its end.
        with http.stream("GET", f"/v1/responses/{response_id}", params={"stream": "true"}) as replay:
            events, done = parse_sse(replay.read().decode())
        assert done and events[-1]["type"] == CANCELLED
        final = http.get(f"/v1/responses/{response_id}").json()
    assert_valid_response(final)
    assert final["status"] == "cancelled" and final["usage"] is not None
    assert final["output"] == events[-1]["response"]["output"]


def test_closed_websocket_cancels_its_running_turn_with_disconnect_cancels(cancelling_server, scripted):
    """The WebSocket consumer's disconnect goes through the same cancel flow (an unstored turn too)."""
    client = WsClient(cancelling_server.url)
    client.create({"model": "chat-paced", "input": " ".join(["w"] * 200), "store": False})
    response_id = client.recv()["response"]["id"]
    while client.recv()["type"] != "response.output_text.delta":
        pass
    client.close()
    # store: false, so not readable over HTTP: its status is read from the server's database.
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        with sqlite3.connect(cancelling_server.env["OPENRESPONSES_SQLITE_PATH"]) as db:
            status = db.execute(
                "SELECT status FROM responses_app_response WHERE id = ?", [response_id]
            ).fetchone()[0]
        if status not in {"queued", "in_progress"}:
            break
        time.sleep(0.1)
    assert status == "cancelled"


def test_unoffered_hosted_tool_is_returned_not_run(lhttp, scripted):
    """``add_numbers`` is a registered hosted tool, but this request did not offer it as one: the
    model's call comes back to the client as the ``function_call`` it was, and nothing runs."""
    client_tool = {
        "type": "function",
        "name": "lookup_order",
        "parameters": {"type": "object", "properties": {"number": {"type": "string"}}},
    }
    for body in (
        {"tools": [client_tool]},
        # Offered, but as the client's own function (it has parameters): still not run here.
        {"tools": [{**client_tool, "name": "add_numbers"}]},
    ):
        scripted.reset()
        data = create(lhttp, {"model": "chat-fast", "input": 'CALL add_numbers {"a": 1, "b": 2}', **body})
        assert data["status"] == "completed", data["error"]
        assert [(i["type"], i.get("name")) for i in data["output"]] == [("function_call", "add_numbers")]
        assert len(scripted.calls) == 1, "the turn ended with the client's call"
