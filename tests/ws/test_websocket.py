"""WebSocket mode on /v1/responses over a real socket against daphne (the embedded default server)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.api import output_text, stream, types_of
from tests.support.spec import assert_valid_compact, assert_valid_event
from tests.support.upstream import Reply
from tests.ws.client import WsClient, assert_valid_turn, single_error

WEATHER_TOOL = {
    "type": "function",
    "name": "lookup_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def ws(server):
    with WsClient(server.url) as client:
        yield client


def test_one_turn_has_the_sse_events(ws, http):
    events = ws.turn({"model": "mock-1", "input": "one two"})
    resource = assert_valid_turn(events)
    assert resource["status"] == "completed"
    assert output_text(resource) == "You said: one two"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "You said: one two"
    sse_events = stream(http, {"model": "mock-1", "input": "one two"})
    assert types_of(events) == types_of(sse_events)


def test_nothing_is_sent_after_the_terminal_event(ws):
    assert_valid_turn(ws.turn({"model": "mock-1", "input": "hello"}))
    with pytest.raises(TimeoutError):
        ws.connection.recv(timeout=0.5)


def test_sequential_turns_continue_a_stored_response(ws, http):
    first = assert_valid_turn(ws.turn({"model": "mock-1", "input": "first question"}))
    second = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "second question", "previous_response_id": first["id"]})
    )
    third = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "third question", "previous_response_id": second["id"]})
    )
    assert output_text(second) == "(turn 2) You said: second question"
    assert output_text(third) == "(turn 3) You said: third question"
    assert second["previous_response_id"] == first["id"]
    stored = http.get(f"/v1/responses/{third['id']}")
    assert stored.status_code == 200 and stored.json()["status"] == "completed"


def test_messages_sent_back_to_back_run_in_order(ws):
    ws.create({"model": "mock-1", "input": "alpha"})
    ws.create({"model": "mock-1", "input": "beta"})
    ws.send("{broken")
    first = assert_valid_turn(ws.read_turn())
    second = assert_valid_turn(ws.read_turn())
    error = single_error(ws.read_turn())
    assert (output_text(first), output_text(second)) == ("You said: alpha", "You said: beta")
    assert error["error"]["code"] == "invalid_json"


def test_store_false_continuation_on_the_same_connection(ws, http):
    first = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "remember the number seven", "store": False})
    )
    assert first["store"] is False
    second = assert_valid_turn(
        ws.turn(
            {"model": "mock-1", "input": "what was it?", "previous_response_id": first["id"], "store": False}
        )
    )
    assert second["status"] == "completed"
    assert output_text(second) == "(turn 2) You said: what was it?"
    third = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "and now?", "previous_response_id": second["id"]})
    )
    assert output_text(third) == "(turn 3) You said: and now?"
    # Not stored: invisible over HTTP, and HTTP cannot continue it either.
    assert http.get(f"/v1/responses/{first['id']}").status_code == 404
    refused = http.post(
        "/v1/responses", json={"model": "mock-1", "input": "x", "previous_response_id": second["id"]}
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "previous_response_not_found"


def test_after_reconnect_a_store_false_response_is_not_found(server):
    with WsClient(server.url) as first_connection:
        first = assert_valid_turn(
            first_connection.turn({"model": "mock-1", "input": "hello", "store": False})
        )
    with WsClient(server.url) as second_connection:
        error = single_error(
            second_connection.turn({"model": "mock-1", "input": "again", "previous_response_id": first["id"]})
        )
        assert error["status"] == 404
        assert error["error"]["code"] == "previous_response_not_found"
        assert error["error"]["param"] == "previous_response_id"
        # The connection stays usable: a fresh chain works.
        fresh = assert_valid_turn(
            second_connection.turn({"model": "mock-1", "input": "start over", "store": False})
        )
        assert fresh["status"] == "completed"


def test_unknown_previous_response_id(ws):
    error = single_error(
        ws.turn({"model": "mock-1", "input": "x", "previous_response_id": "resp_doesnotexist"})
    )
    assert (error["status"], error["error"]["code"]) == (404, "previous_response_not_found")


def test_function_call_output_continues_a_store_false_call(ws):
    first = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "weather in Paris?", "tools": [WEATHER_TOOL], "store": False})
    )
    call = next(item for item in first["output"] if item["type"] == "function_call")
    second = assert_valid_turn(
        ws.turn(
            {
                "model": "mock-1",
                "previous_response_id": first["id"],
                "tools": [WEATHER_TOOL],
                "store": False,
                "input": [
                    {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"}
                ],
            }
        )
    )
    assert output_text(second) == "The tool returned: sunny, 21 C"


def test_failed_continuation_evicts_the_cached_response(ws):
    first = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "weather in Paris?", "tools": [WEATHER_TOOL], "store": False})
    )
    bad = single_error(
        ws.turn(
            {
                "model": "mock-1",
                "previous_response_id": first["id"],
                "input": [{"type": "function_call_output", "call_id": "call_unknown", "output": "?"}],
            }
        )
    )
    assert (bad["status"], bad["error"]["code"]) == (400, "unknown_call_id")
    evicted = single_error(
        ws.turn({"model": "mock-1", "input": "try again", "previous_response_id": first["id"]})
    )
    assert (evicted["status"], evicted["error"]["code"]) == (404, "previous_response_not_found")


def test_malformed_messages_get_errors_and_the_socket_stays_open(ws):
    cases = [
        ("not json at all", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_message"),
        ('{"type": "session.update"}', 400, "unknown_message_type"),
        ('{"input": "no type"}', 400, "unknown_message_type"),
    ]
    for raw, status, code in cases:
        ws.send(raw)
        error = single_error(ws.read_turn())
        assert (error["status"], error["error"]["code"]) == (status, code), raw
    assert assert_valid_turn(ws.turn({"model": "mock-1", "input": "still here"}))["status"] == "completed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream_options", {"include_obfuscation": False}),
        ("background", False),
        ("background", True),
    ],
)
def test_http_only_fields_are_refused(ws, field, value):
    error = single_error(ws.turn({"model": "mock-1", "input": "x", field: value}))
    assert error["status"] == 400
    assert error["error"]["param"] == field
    assert error["error"]["code"] == "unsupported_parameter"
    assert "WebSocket mode" in error["error"]["message"]


# --------------------------------------------------------------------------- as Codex CLI drives it


@pytest.mark.parametrize("value", [True, False])
def test_stream_is_tolerated_and_ignored(ws, value):
    """Codex sends ``stream: true`` on every ``response.create``: the turn streams either way."""
    events = ws.turn({"model": "mock-1", "input": "one two", "stream": value})
    resource = assert_valid_turn(events)
    assert output_text(resource) == "You said: one two"
    assert "response.output_text.delta" in types_of(events)


def test_stream_must_still_be_a_boolean(ws):
    error = single_error(ws.turn({"model": "mock-1", "input": "x", "stream": "yes"}))
    assert (error["status"], error["error"]["param"], error["error"]["code"]) == (
        400,
        "stream",
        "invalid_type",
    )


def test_client_metadata_is_accepted(ws):
    metadata = {"x-codex-installation-id": "abc", "originator": "codex_exec"}
    resource = assert_valid_turn(ws.turn({"model": "mock-1", "input": "hi", "client_metadata": metadata}))
    assert resource["status"] == "completed"
    assert "client_metadata" not in resource  # accepted, not echoed (it is not a response field)


@pytest.mark.parametrize("value", ["text", ["a"], {"n": 1}])
def test_client_metadata_must_be_an_object_of_strings(ws, value):
    error = single_error(ws.turn({"model": "mock-1", "input": "x", "client_metadata": value}))
    assert (error["status"], error["error"]["param"]) == (400, "client_metadata")


def test_prewarm_stores_the_context_without_sampling(ws, http, upstream):
    """``generate: false``: a completed response with no output, no upstream call, continued next turn."""
    instructions = "You are a careful assistant."
    events = ws.turn(
        {
            "model": "gpt-4o-mini",
            "instructions": instructions,
            "input": [{"role": "user", "content": "The code word is heliotrope."}],
            "generate": False,
            "stream": True,
            "client_metadata": {"originator": "codex_exec"},
        }
    )
    assert types_of(events) == ["response.created", "response.in_progress", "response.completed"]
    prewarm = assert_valid_turn(events)
    assert (prewarm["status"], prewarm["output"]) == ("completed", [])
    assert upstream.requests == []  # nothing was sampled
    stored = http.get(f"/v1/responses/{prewarm['id']}")
    assert stored.status_code == 200 and stored.json()["status"] == "completed"
    assert stored.json()["output"] == []

    upstream.queue(Reply.fixture("openai/text_stream.sse"))
    answer = assert_valid_turn(
        ws.turn(
            {
                "model": "gpt-4o-mini",
                "instructions": instructions,
                "input": [{"role": "user", "content": "What is it?"}],
                "previous_response_id": prewarm["id"],
                "stream": True,
            }
        )
    )
    assert answer["status"] == "completed" and answer["previous_response_id"] == prewarm["id"]
    assert len(upstream.requests) == 1
    sent = upstream.requests[0].json()["input"]
    texts = [part["text"] for item in sent if item.get("type") == "message" for part in item["content"]]
    assert texts == ["The code word is heliotrope.", "What is it?"]


def test_prewarm_of_an_unstored_response_continues_on_its_connection(ws, http):
    prewarm = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "remember seven", "store": False, "generate": False})
    )
    assert prewarm["store"] is False and prewarm["output"] == []
    assert http.get(f"/v1/responses/{prewarm['id']}").status_code == 404  # not stored for others
    second = assert_valid_turn(
        ws.turn(
            {
                "model": "mock-1",
                "input": "what was it?",
                "previous_response_id": prewarm["id"],
                "store": False,
            }
        )
    )
    assert output_text(second) == "(turn 2) You said: what was it?"


def test_generate_must_be_a_boolean(ws):
    error = single_error(ws.turn({"model": "mock-1", "input": "x", "generate": "no"}))
    assert (error["status"], error["error"]["param"], error["error"]["code"]) == (
        400,
        "generate",
        "invalid_type",
    )


def test_validation_errors_name_the_param(ws):
    missing = single_error(ws.turn({"input": "no model"}))
    assert (missing["status"], missing["error"]["param"], missing["error"]["code"]) == (
        400,
        "model",
        "missing_required_parameter",
    )
    unknown = single_error(ws.turn({"model": "no-such-model-anywhere", "input": "x"}))
    assert (unknown["status"], unknown["error"]["code"]) == (404, "model_not_found")


def test_a_failing_provider_ends_the_turn_with_an_error_event(ws):
    events = ws.turn({"model": "mock-fail", "input": "x"})
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error"]
    error = events[-1]
    assert_valid_event(error)  # also the SSE form of the error event (with its sequence number)
    assert error["status"] == 502
    assert error["error"]["code"] == "upstream_error"
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    assert assert_valid_turn(ws.turn({"model": "mock-1", "input": "next"}))["status"] == "completed"


def test_closing_mid_turn_lets_the_response_finish(server, http):
    client = WsClient(server.url)
    client.create({"model": "mock-slow", "input": "a b c d e f g h i j k l"})
    response_id = client.recv()["response"]["id"]
    while client.recv()["type"] != "response.output_text.delta":
        pass
    client.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resource = http.get(f"/v1/responses/{response_id}").json()
        if resource["status"] != "in_progress":
            break
        time.sleep(0.1)
    assert resource["status"] == "completed"
    assert output_text(resource) == "You said: a b c d e f g h i j k l"


def test_parallel_connections(server):
    results: dict[int, list[str]] = {}
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with WsClient(server.url) as client:
                first = assert_valid_turn(
                    client.turn({"model": "mock-1", "input": f"conn {index}", "store": False})
                )
                second = assert_valid_turn(
                    client.turn(
                        {
                            "model": "mock-1",
                            "input": "more",
                            "previous_response_id": first["id"],
                            "store": False,
                        }
                    )
                )
                results[index] = [output_text(first), output_text(second)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert results == {i: [f"You said: conn {i}", "(turn 2) You said: more"] for i in range(8)}


def test_compacted_output_starts_a_new_chain(ws, http):
    first = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "The code word is heliotrope.", "store": False})
    )
    response = http.post(
        "/v1/responses/compact",
        json={
            "model": "mock-1",
            "input": [
                {"role": "user", "content": "The code word is heliotrope."},
                *first["output"],
            ],
        },
    )
    assert response.status_code == 200, response.text
    compacted = response.json()
    assert_valid_compact(compacted)
    assert any(item["type"] == "compaction" for item in compacted["output"])
    second = assert_valid_turn(
        ws.turn(
            {
                "model": "mock-1",
                "input": [*compacted["output"], {"role": "user", "content": "What was it?"}],
                "store": False,
            }
        )
    )
    third = assert_valid_turn(
        ws.turn({"model": "mock-1", "input": "Thanks.", "previous_response_id": second["id"], "store": False})
    )
    assert (second["status"], third["status"]) == ("completed", "completed")


def test_the_openai_sdk_websocket_client(openai_client):
    """The official SDK's ``client.responses.connect()`` reads our turns as OpenAI's."""
    with openai_client.responses.connect() as connection:
        connection.response.create(model="mock-1", input="hello there", store=False)
        first = next(event for event in connection if event.type == "response.completed").response
        connection.response.create(model="mock-1", input="again", previous_response_id=first.id, store=False)
        second = next(event for event in connection if event.type in {"response.completed", "error"})
    assert second.type == "response.completed"
    assert (first.output_text, second.response.output_text) == (
        "You said: hello there",
        "(turn 2) You said: again",
    )
    compacted = openai_client.responses.compact(model="mock-1", input="remember: blue")
    assert compacted.output[-1].type == "compaction"
