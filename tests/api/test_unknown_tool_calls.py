"""A model's call to a function the request did not offer reaches the client as the call it was.

Real recorded tool-call answers of every provider family are replayed with a request that offers a
differently named tool: the response completes with the recorded ``function_call`` items (as
OpenAI's API returns them), in JSON and in a spec-valid stream. Scripted answers cover the mode
(streamed or not) each family has no recording of.
"""

from __future__ import annotations

import json

import pytest

from tests.support.api import create, stream, types_of
from tests.support.replay import stored_events
from tests.support.upstream import Reply
from tests.support.wire import ALL_WIRES

OTHER_TOOL = {
    "type": "function",
    "name": "lookup_order",
    "description": "Look an order up by its number",
    "parameters": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]},
}

# (fixture, model routed to its family, streamed, names the recording calls, in order)
RECORDED = [
    ("openai/function_call_stream.sse", "gpt-4o", True, ["get_capital"]),
    ("openai/parallel_function_calls_nonstream.json", "gpt-4o", False, ["get_location"] * 2),
    ("openai/reasoning_function_call_stream.sse", "gpt-5", True, ["final_result"]),
    ("anthropic/parallel_tool_calls_nonstream.json", "claude-haiku-4-5", False, ["retrieve_entity_info"] * 4),
    ("anthropic/tool_call_with_server_tool_stream.sse", "claude-sonnet-4-6", True, ["get_exchange_rate"]),
    ("gemini/function_call_nonstream.json", "gemini-2.5-flash", False, ["get_weather"]),
    ("ollama/tool_call_stream.ndjson", "llama3.2", True, ["get_weather"]),
    ("openai_chat/tool_call_nonstream.json", "chat-gpt-4o", False, ["get_user_country"]),
    ("openai_chat/parallel_tool_calls_stream.sse", "chat-gpt-4o", True, ["get_country", "get_product_name"]),
]


def _calls(resource: dict) -> list[dict]:
    return [i for i in resource["output"] if i["type"] == "function_call"]


def _check_call_events(events: list[dict], names: list[str]) -> None:
    """The stream carries each call the way the compliance suite's tool-calling-streaming expects."""
    kinds = types_of(events)
    assert kinds[-1] == "response.completed", kinds
    assert "error" not in kinds
    added = [
        e["item"]["name"]
        for e in events
        if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
    ]
    done = [
        e["item"]
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    ]
    assert added == names and [i["name"] for i in done] == names
    assert "response.function_call_arguments.delta" in kinds
    assert kinds.count("response.function_call_arguments.done") == len(names)
    for item in done:
        assert item["status"] == "completed"
        json.loads(item["arguments"])


@pytest.mark.parametrize(("fixture", "model", "streamed", "names"), RECORDED, ids=[r[0] for r in RECORDED])
def test_recorded_call_to_an_unoffered_function_is_returned(http, upstream, fixture, model, streamed, names):
    upstream.queue(Reply.fixture(fixture))
    body = {"model": model, "input": "Go ahead.", "tools": [OTHER_TOOL]}
    if streamed:
        events = stream(http, body)  # every event validated against the spec
        resource = events[-1]["response"]
    else:
        resource = create(http, body)  # validated against the spec
        events = stored_events(http, resource["id"])
    assert resource["status"] == "completed", resource.get("error")
    assert resource["error"] is None
    assert [c["name"] for c in _calls(resource)] == names
    assert not any(i["type"] == "function_call_output" for i in resource["output"]), "nothing ran here"
    _check_call_events(events, names)
    assert len(upstream.requests) == 1, "the turn ends with the client's calls"


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("wire", ALL_WIRES, ids=lambda w: w.provider)
def test_scripted_call_to_an_unoffered_function_is_returned(http, upstream, wire, streamed):
    upstream.queue(wire.tool_call("delete_everything", {"really": True}, stream=streamed))
    body = {"model": wire.model, "input": "Go ahead.", "tools": [OTHER_TOOL]}
    if streamed:
        events = stream(http, body)
        resource = events[-1]["response"]
    else:
        resource = create(http, body)
        events = stored_events(http, resource["id"])
    assert resource["status"] == "completed", resource.get("error")
    [call] = _calls(resource)
    assert call["name"] == "delete_everything" and json.loads(call["arguments"]) == {"really": True}
    _check_call_events(events, ["delete_everything"])
    assert wire.tool_names(upstream.requests[0].json()) == ["lookup_order"]


def test_a_round_trip_answers_the_unoffered_call(http, upstream):
    """The client answers the unknown call with ``function_call_output``; the chain goes on."""
    wire = next(w for w in ALL_WIRES if w.provider == "anthropic")
    upstream.queue(wire.tool_call("delete_everything", {}, stream=False))
    first = create(http, {"model": wire.model, "input": "Go ahead.", "tools": [OTHER_TOOL]})
    [call] = _calls(first)
    upstream.queue(wire.text("Understood, I will not.", stream=False))
    second = create(
        http,
        {
            "model": wire.model,
            "previous_response_id": first["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "unknown tool"}],
            "tools": [OTHER_TOOL],
        },
    )
    assert second["status"] == "completed"
    assert wire.tool_results(upstream.requests[-1].json()) == ["unknown tool"]
