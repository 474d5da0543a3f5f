"""The spine end to end on the built-in mock provider: JSON, SSE, storage, chaining, lifecycle."""

from __future__ import annotations

import time

from tests.support.api import create, output_text, stream, types_of
from tests.support.spec import assert_valid_response
from tests.support.sse import parse_sse

TEXT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_basic_json_response(http):
    data = create(http, {"model": "mock-1", "input": "Say hello"})
    assert data["status"] == "completed"
    assert data["object"] == "response"
    assert data["id"].startswith("resp_")
    assert data["output"][0]["id"].startswith("msg_")
    assert output_text(data) == "You said: Say hello"
    assert data["usage"]["total_tokens"] == data["usage"]["input_tokens"] + data["usage"]["output_tokens"] > 0
    assert data["completed_at"] >= data["created_at"]


def test_defaults_echoed(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": "x",
            "tools": [{"type": "function", "name": "f"}],
            "tool_choice": "none",
        },
    )
    assert data["tools"] == [
        {"type": "function", "name": "f", "description": None, "parameters": None, "strict": None}
    ]
    assert data["tool_choice"] == "none"
    assert data["truncation"] == "disabled"
    assert data["text"] == {"format": {"type": "text"}}
    assert (
        data["top_p"],
        data["temperature"],
        data["presence_penalty"],
        data["frequency_penalty"],
        data["top_logprobs"],
    ) == (1.0, 1.0, 0.0, 0.0, 0)
    assert data["parallel_tool_calls"] is True
    assert data["store"] is True and data["background"] is False
    assert data["metadata"] == {}


def test_request_parameters_echoed(http):
    body = {
        "model": "mock-1",
        "input": "x",
        "instructions": "Be brief.",
        "temperature": 0.2,
        "top_p": 0.5,
        "max_output_tokens": 100,
        "metadata": {"team": "a"},
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low"},
        "safety_identifier": "u1",
        "prompt_cache_key": "k1",
        "service_tier": "flex",
    }
    data = create(http, body)
    assert data["instructions"] == "Be brief."
    assert (data["temperature"], data["top_p"], data["max_output_tokens"]) == (0.2, 0.5, 100)
    assert data["metadata"] == {"team": "a"}
    assert data["parallel_tool_calls"] is False
    assert data["reasoning"] == {"effort": "low", "summary": None}
    assert (data["safety_identifier"], data["prompt_cache_key"], data["service_tier"]) == ("u1", "k1", "flex")


def test_streaming_text_order(http):
    events = stream(http, {"model": "mock-1", "input": "one two"})
    assert types_of(events) == TEXT_ORDER[:4] + ["response.output_text.delta"] * 4 + TEXT_ORDER[7:]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert deltas == done["text"] == "You said: one two"
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    final = events[-1]["response"]
    assert final["status"] == "completed" and output_text(final) == deltas
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []


def test_each_event_in_one_write(http):
    """Frames arrive whole: a reader that resets its state at every network read loses nothing."""
    with http.stream(
        "POST", "/v1/responses", json={"model": "mock-1", "input": "a b c d", "stream": True}
    ) as response:
        reads = [chunk.decode() for chunk in response.iter_raw()]
    for read in reads:
        assert read.endswith("\n\n"), repr(read[-40:])
    events, done = parse_sse("".join(reads))
    assert done and events[-1]["type"] == "response.completed"


def test_reasoning_events(http):
    events = stream(http, {"model": "mock-reasoning", "input": "think"})
    kinds = types_of(events)
    assert kinds[2:7] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
    ]
    first_done = kinds.index("response.output_item.done")
    assert kinds[first_done - 2 : first_done] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    reasoning = events[-1]["response"]["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["encrypted_content"] == "mock-reasoning-signature"
    assert reasoning["summary"][0]["text"].startswith("The user wants")
    assert events[-1]["response"]["output"][1]["type"] == "message"
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 11


def test_retrieve_and_input_items(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
        },
    )
    got = http.get(f"/v1/responses/{data['id']}")
    assert got.status_code == 200
    assert_valid_response(got.json())
    assert got.json()["output"] == data["output"]
    items = http.get(f"/v1/responses/{data['id']}/input_items", params={"order": "asc"}).json()
    assert items["object"] == "list" and items["has_more"] is False
    assert [i["role"] for i in items["data"]] == ["system", "user"]
    assert items["data"][1]["content"] == [{"type": "input_text", "text": "hi"}]
    assert items["first_id"] == items["data"][0]["id"] and items["last_id"] == items["data"][1]["id"]
    desc = http.get(f"/v1/responses/{data['id']}/input_items", params={"limit": 1}).json()
    assert desc["has_more"] is True and desc["data"][0]["role"] == "user"
    after = http.get(
        f"/v1/responses/{data['id']}/input_items", params={"limit": 1, "after": desc["last_id"]}
    ).json()
    assert after["data"][0]["role"] == "system" and after["has_more"] is False


def test_delete(http):
    data = create(http, {"model": "mock-1", "input": "bye"})
    deleted = http.delete(f"/v1/responses/{data['id']}")
    assert deleted.json() == {"id": data["id"], "object": "response.deleted", "deleted": True}
    missing = http.get(f"/v1/responses/{data['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    assert http.delete(f"/v1/responses/{data['id']}").status_code == 404


def test_previous_response_id_chain(http):
    first = create(http, {"model": "mock-1", "input": "My name is Ada", "instructions": "first instructions"})
    second = create(
        http, {"model": "mock-1", "input": "What is my name?", "previous_response_id": first["id"]}
    )
    assert second["previous_response_id"] == first["id"]
    assert output_text(second) == "(turn 2) You said: What is my name?"
    assert second["instructions"] is None
    third = create(http, {"model": "mock-1", "input": "again", "previous_response_id": second["id"]})
    assert output_text(third).startswith("(turn 3)")


def test_previous_response_not_found(http):
    body = create(
        http, {"model": "mock-1", "input": "x", "previous_response_id": "resp_doesnotexist"}, expect=404
    )
    assert body["error"]["code"] == "previous_response_not_found"
    assert body["error"]["param"] == "previous_response_id"


def test_store_false_not_retrievable_or_chainable(http):
    data = create(http, {"model": "mock-1", "input": "secret", "store": False})
    assert data["store"] is False and data["status"] == "completed"
    assert http.get(f"/v1/responses/{data['id']}").status_code == 404
    chained = create(http, {"model": "mock-1", "input": "x", "previous_response_id": data["id"]}, expect=404)
    assert chained["error"]["code"] == "previous_response_not_found"


def test_replay_stored_stream(http):
    events = stream(http, {"model": "mock-1", "input": "replay me"})
    rid = events[0]["response"]["id"]
    with http.stream(
        "GET", f"/v1/responses/{rid}", params={"stream": "true", "starting_after": 4}
    ) as response:
        raw = response.read().decode()
    replayed, done = parse_sse(raw)
    assert done
    assert replayed == events[5:]


def test_background_poll_and_resume(http):
    data = create(http, {"model": "mock-slow", "input": "one two three four five six", "background": True})
    assert data["status"] == "queued" and data["background"] is True
    with http.stream(
        "GET", f"/v1/responses/{data['id']}", params={"stream": "true", "starting_after": 3}
    ) as response:
        events, done = parse_sse(response.read().decode())
    assert done and events[0]["sequence_number"] == 4
    assert events[-1]["type"] == "response.completed"
    final = http.get(f"/v1/responses/{data['id']}").json()
    assert final["status"] == "completed" and output_text(final) == "You said: one two three four five six"


def test_cancel_background(http):
    data = create(http, {"model": "mock-slow", "input": " ".join(["word"] * 200), "background": True})
    time.sleep(0.3)
    cancelled = http.post(f"/v1/responses/{data['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    time.sleep(1.0)
    final = http.get(f"/v1/responses/{data['id']}").json()
    assert final["status"] == "cancelled"
    text = output_text(final)
    assert 0 < len(text.split()) < 200, "partial output is kept"
    assert final["usage"] is not None
    again = http.post(f"/v1/responses/{data['id']}/cancel")
    assert again.json()["status"] == "cancelled"


def test_max_output_tokens_incomplete(http):
    events = stream(http, {"model": "mock-1", "input": " ".join(["w"] * 40), "max_output_tokens": 16})
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][-1]["status"] == "incomplete"


def test_upstream_failure_non_stream_is_http_error(http):
    body = create(http, {"model": "mock-fail", "input": "x"}, expect=502)
    assert body["error"]["code"] == "upstream_error"
    limited = http.post("/v1/responses", json={"model": "mock-rate-limited", "input": "x"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "too_many_requests"


def test_midstream_error_event_then_failed(http):
    events = stream(http, {"model": "mock-midstream-error", "input": "a b c d e"})
    kinds = types_of(events)
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-2]["error"]["code"] == "upstream_disconnected"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_disconnected"
    stored = http.get(f"/v1/responses/{failed['id']}").json()
    assert stored["status"] == "failed"
