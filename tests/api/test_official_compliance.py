"""The official Open Responses compliance scenarios, by their ids, on recorded real answers of every family.

The official runner (``bin/compliance-test.ts`` over ``src/lib/compliance-tests.ts`` in the spec's
repository, run with ``bun``) is not published on npm or PyPI, so it cannot be installed here. Each of
its scenarios, from every revision of the suite (:data:`OFFICIAL_SCENARIOS`), is replayed here with
the same requests and the same checks: HTTP 200, a JSON (or SSE, or WebSocket) answer whose resource
and every event validate against the spec's OpenAPI document (the official suite validates with zod
schemas generated from that same document), then the scenario's own checks (``hasOutput``,
``completedStatus``, ``hasOutputType``, the streamed function-call events, the error codes).

The model is routed to OpenAI Responses, Chat Completions, Anthropic, Gemini and Ollama in turn, and
the fake upstream on 127.0.0.1 answers every call with a *recorded real answer* of that family
(``tests/fixtures``), streamed or whole as the call asks. The recorded tool calls name other
functions (``get_location``, ``retrieve_entity_info``, ``get_capital``…) than the ``get_weather`` the
scenarios offer: they come back as the ``function_call`` items they were.

``docs/providers.md`` maps each official scenario to the test that runs it.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.api import create, stream
from tests.support.spec import assert_valid_compact, assert_valid_error, assert_valid_response
from tests.support.upstream import FakeUpstream, Recorded, Reply
from tests.ws.client import WsClient, assert_valid_turn

# --------------------------------------------------------------------------- the families and their recordings


@dataclass(frozen=True)
class Family:
    """A provider family: a model routed to it and its recorded answers, ``kind -> (whole, streamed)``."""

    name: str
    model: str
    text: tuple[str, str]
    call: tuple[str, str]

    def is_stream(self, request: Recorded) -> bool:
        if self.name == "gemini":
            return ":streamGenerateContent" in request.path
        return bool(request.json().get("stream"))


FAMILIES = [
    Family(
        "openai",
        "gpt-4o",
        ("openai/text_nonstream.json", "openai/text_stream.sse"),
        ("openai/parallel_function_calls_nonstream.json", "openai/function_call_stream.sse"),
    ),
    Family(
        "openai_chat",
        "chat-gpt-4o",
        ("openai_chat/text_nonstream.json", "openai_chat/text_stream.sse"),
        ("openai_chat/tool_call_nonstream.json", "openai_chat/parallel_tool_calls_stream.sse"),
    ),
    Family(
        "anthropic",
        "claude-haiku-4-5",
        ("anthropic/text_nonstream.json", "anthropic/text_stream.sse"),
        ("anthropic/parallel_tool_calls_nonstream.json", "anthropic/tool_call_with_server_tool_stream.sse"),
    ),
    Family(
        "gemini",
        "gemini-2.5-flash",
        ("gemini/text_nonstream.json", "gemini/text_stream.sse"),
        ("gemini/function_call_nonstream.json", "gemini/function_call_stream.sse"),
    ),
    Family(
        "ollama",
        "llama3.2",
        ("ollama/text_nonstream.json", "ollama/text_stream.ndjson"),
        ("ollama/tool_call_nonstream.json", "ollama/tool_call_stream.ndjson"),
    ),
]


class Recordings:
    """The upstream's answers in one scenario: the next expected kind (``text`` or ``call``), served
    whole or streamed as the request asks; a call nobody expected is answered 500 (and noted)."""

    def __init__(self, family: Family, kinds: list[str]) -> None:
        self.family = family
        self.kinds = list(kinds)
        self.served: list[str] = []
        self.unexpected: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        if not self.kinds:
            self.unexpected.append(request.path)
            return Reply.json({"error": {"message": "no upstream call expected here"}}, status=500)
        pair = getattr(self.family, self.kinds.pop(0))
        name = pair[1] if self.family.is_stream(request) else pair[0]
        self.served.append(name)
        return Reply.fixture(name)


@dataclass
class Run:
    """What a scenario works with: the server (HTTP and WebSocket), the family, its recordings."""

    http: httpx.Client
    url: str
    family: Family
    upstream: FakeUpstream

    @property
    def model(self) -> str:
        return self.family.model

    def answers(self, *kinds: str) -> Recordings:
        recordings = Recordings(self.family, list(kinds))
        self.upstream.handler = recordings
        return recordings


# --------------------------------------------------------------------------- the official checks


def has_output(resource: dict[str, Any]) -> None:
    assert resource.get("output"), "Response has no output items"


def completed_status(resource: dict[str, Any]) -> None:
    assert resource.get("status") == "completed", (resource.get("status"), resource.get("error"))


def has_output_type(resource: dict[str, Any], kind: str) -> None:
    assert any(item["type"] == kind for item in resource.get("output") or []), [
        item["type"] for item in resource.get("output") or []
    ]


def post(run: Run, body: dict[str, Any]) -> dict[str, Any]:
    """Non-streamed: the official client sends ``stream: false`` and wants 200 and a valid resource."""
    return create(run.http, {**body, "stream": False})


def post_stream(run: Run, body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Streamed: every event valid, the last terminal event's response valid; (events, final response)."""
    events = stream(run.http, body)
    assert events, "No streaming events received"
    return events, events[-1]["response"]


def compact(run: Run, body: dict[str, Any], *, expect: int = 200) -> dict[str, Any]:
    response = run.http.post("/v1/responses/compact", json=body)
    assert response.status_code == expect, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    if expect == 200:
        assert_valid_compact(data)
    else:
        assert_valid_error(data)
    return data


def turn_error_code(events: list[dict[str, Any]]) -> str | None:
    """The error code of a WebSocket turn: an ``error`` message's, else its terminal response's."""
    last = events[-1]
    if last["type"] == "error":
        return last["error"]["code"]
    error = last.get("response", {}).get("error") or {}
    return error.get("code")


def turn_failed(events: list[dict[str, Any]]) -> bool:
    last = events[-1]
    return last["type"] == "error" or last.get("response", {}).get("status") == "failed"


# --------------------------------------------------------------------------- the scenarios

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
        },
        "required": ["location"],
    },
}
# Our own small attachments (the official suite sends a 32x32 PNG and a one-page PDF of its own).
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
PDF = base64.b64encode(
    b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 144]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"
).decode()


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def basic_response(run: Run) -> None:
    run.answers("text")
    data = post(run, {"model": run.model, "input": [user("Say hello in exactly 3 words.")]})
    has_output(data)
    completed_status(data)


def assistant_phase(run: Run) -> None:
    run.answers("text")
    data = post(
        run,
        {
            "model": run.model,
            "input": [
                {
                    "type": "message",
                    "role": "assistant",
                    "phase": "commentary",
                    "content": "I should answer with the saved number.",
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "phase": "final_answer",
                    "content": "The number is four.",
                },
                user("Repeat only the number."),
            ],
        },
    )
    has_output(data)
    completed_status(data)


def response_output_phase_schema(run: Run) -> None:
    """No request in the official suite: a resource whose assistant messages carry ``phase`` labels
    must satisfy the schema. Here: a real answer of the server, labelled the same way."""
    run.answers("text")
    data = post(run, {"model": run.model, "input": "Say hello."})
    message = next(item for item in data["output"] if item["type"] == "message")
    labelled = {
        **data,
        "output": [{**message, "id": "msg_c", "phase": "commentary"}, {**message, "phase": "final_answer"}],
    }
    assert_valid_response(labelled)
    has_output(labelled)
    completed_status(labelled)
    assert {m.get("phase") for m in labelled["output"]} == {"commentary", "final_answer"}


def streaming_response(run: Run) -> None:
    run.answers("text")
    _, final = post_stream(run, {"model": run.model, "input": [user("Count from 1 to 5.")]})
    completed_status(final)


def system_prompt(run: Run) -> None:
    run.answers("text")
    data = post(
        run,
        {
            "model": run.model,
            "input": [
                {
                    "type": "message",
                    "role": "system",
                    "content": "You are a pirate. Always respond in pirate speak.",
                },
                user("Say hello."),
            ],
        },
    )
    has_output(data)
    completed_status(data)


def tool_calling(run: Run) -> None:
    run.answers("call")
    data = post(
        run,
        {
            "model": run.model,
            "input": [user("What's the weather like in San Francisco?")],
            "tools": [WEATHER_TOOL],
        },
    )
    has_output(data)
    has_output_type(data, "function_call")


def tool_calling_streaming(run: Run) -> None:
    run.answers("call")
    events, _ = post_stream(
        run,
        {
            "model": run.model,
            "input": [user("What's the weather like in San Francisco?")],
            "tools": [WEATHER_TOOL],
        },
    )
    kinds = [e["type"] for e in events]
    assert any(
        e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call" for e in events
    ), "Missing response.output_item.added event with function_call item"
    assert "response.function_call_arguments.delta" in kinds, "Missing response.function_call_arguments.delta"
    assert "response.function_call_arguments.done" in kinds, "Missing response.function_call_arguments.done"
    assert any(
        e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call" for e in events
    ), "Missing response.output_item.done event with function_call item"


def function_call_roundtrip(run: Run) -> None:
    run.answers("call", "text")
    first = post(
        run,
        {
            "model": run.model,
            "input": "Use the weather tool to get the temperature in San Francisco.",
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
        },
    )
    call = next((item for item in first["output"] if item["type"] == "function_call"), None)
    assert call and call.get("call_id"), "First response did not include a function_call with call_id"
    second = post(
        run,
        {
            "model": run.model,
            "previous_response_id": first["id"],
            "input": [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "64 degrees and clear"}
            ],
        },
    )
    has_output(second)
    completed_status(second)


def image_input(run: Run) -> None:
    run.answers("text")
    data = post(
        run,
        {
            "model": run.model,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": "What do you see in this image? Answer in one sentence.",
                        },
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                }
            ],
        },
    )
    has_output(data)
    completed_status(data)


def file_input(run: Run) -> None:
    run.answers("text")
    data = post(
        run,
        {
            "model": run.model,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": "Read the attached file and answer with its title only.",
                        },
                        {
                            "type": "input_file",
                            "filename": "fixture.pdf",
                            "file_data": f"data:application/pdf;base64,{PDF}",
                        },
                    ],
                }
            ],
        },
    )
    has_output(data)
    completed_status(data)


def multi_turn(run: Run) -> None:
    run.answers("text")
    data = post(
        run,
        {
            "model": run.model,
            "input": [
                user("My name is Alice."),
                {
                    "type": "message",
                    "role": "assistant",
                    "content": "Hello Alice! Nice to meet you. How can I help you today?",
                },
                user("What is my name?"),
            ],
        },
    )
    has_output(data)
    completed_status(data)


def previous_response_id(run: Run) -> None:
    run.answers("text", "text")
    first = post(run, {"model": run.model, "input": "Remember this code word: papaya. Reply with only OK."})
    second = post(
        run,
        {
            "model": run.model,
            "previous_response_id": first["id"],
            "input": "What code word did I ask you to remember?",
        },
    )
    has_output(second)
    completed_status(second)


def compact_response(run: Run) -> None:
    run.answers("text")
    data = compact(
        run,
        {
            "model": run.model,
            "prompt_cache_key": "compliance-compact-test",
            "input": [
                user("We agreed to launch on Tuesday and notify support first."),
                {
                    "type": "message",
                    "role": "assistant",
                    "content": "Understood. The launch is Tuesday, with support notified beforehand.",
                },
            ],
        },
    )
    has_output(data)
    assert data["object"] == "response.compaction", data["object"]
    has_output_type(data, "compaction")


def compact_missing_model(run: Run) -> None:
    run.answers()
    response = run.http.post("/v1/responses/compact", json={"input": [user("Compact this conversation.")]})
    assert response.status_code in (400, 422), response.text


def websocket_response(run: Run) -> None:
    run.answers("text")
    with WsClient(run.url) as ws:
        final = assert_valid_turn(ws.turn({"model": run.model, "input": [user("Count from 1 to 3.")]}))
    completed_status(final)


def websocket_sequential_responses(run: Run) -> None:
    run.answers("text", "text")
    with WsClient(run.url) as ws:
        for text in ("Reply with exactly: first", "Reply with exactly: second"):
            completed_status(assert_valid_turn(ws.turn({"model": run.model, "store": False, "input": text})))


def websocket_continuation(run: Run) -> None:
    run.answers("text", "text")
    with WsClient(run.url) as ws:
        first = assert_valid_turn(
            ws.turn(
                {
                    "model": run.model,
                    "store": False,
                    "input": "Remember the code word: cobalt. Reply with OK.",
                }
            )
        )
        assert first["id"]
        second = assert_valid_turn(
            ws.turn(
                {
                    "model": run.model,
                    "store": False,
                    "previous_response_id": first["id"],
                    "input": "What is the code word? Reply with only the code word.",
                }
            )
        )
    completed_status(second)


def websocket_reconnect_store_false_recovery(run: Run) -> None:
    run.answers("text", "text")
    with WsClient(run.url) as ws:
        first = assert_valid_turn(
            ws.turn(
                {
                    "model": run.model,
                    "store": False,
                    "input": "Remember the code word: copper. Reply with OK.",
                }
            )
        )
    with WsClient(run.url) as ws:
        missed = ws.turn(
            {
                "model": run.model,
                "store": False,
                "previous_response_id": first["id"],
                "input": "Try to continue after reconnect. Reply with exactly: reconnected",
            }
        )
        assert turn_error_code(missed) == "previous_response_not_found", missed[-1]
        recovered = assert_valid_turn(
            ws.turn(
                {
                    "model": run.model,
                    "store": False,
                    "input": [user("The previous chain could not continue. Reply with exactly: recovered")],
                }
            )
        )
    completed_status(recovered)


def websocket_previous_response_not_found(run: Run) -> None:
    run.answers()
    with WsClient(run.url) as ws:
        events = ws.turn(
            {
                "model": run.model,
                "store": False,
                "previous_response_id": f"resp_compliance_missing_{int(time.time() * 1000)}",
                "input": "This should fail because the previous response is missing.",
            }
        )
    assert turn_error_code(events) == "previous_response_not_found", events[-1]


def websocket_failed_continuation_evicts_cache(run: Run) -> None:
    run.answers("text")
    with WsClient(run.url) as ws:
        first = assert_valid_turn(
            ws.turn(
                {"model": run.model, "store": False, "input": "Remember the code word: ember. Reply with OK."}
            )
        )
        failed = ws.turn(
            {
                "model": run.model,
                "store": False,
                "previous_response_id": first["id"],
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "call_compliance_missing",
                        "output": "No matching tool call exists in the previous response.",
                    }
                ],
            }
        )
        assert turn_failed(failed), failed[-1]
        retry = ws.turn(
            {
                "model": run.model,
                "store": False,
                "previous_response_id": first["id"],
                "input": "Try to continue after the failed turn. Reply with exactly: stale",
            }
        )
    assert turn_error_code(retry) == "previous_response_not_found", retry[-1]


def websocket_compact_new_chain(run: Run) -> None:
    run.answers("text", "text")
    compacted = compact(
        run,
        {
            "model": run.model,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Remember the compaction code word: slate."}],
                },
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "OK."}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Compress this conversation for later continuation."}
                    ],
                },
            ],
        },
    )
    assert isinstance(compacted.get("output"), list), "Compaction response did not include an output array"
    with WsClient(run.url) as ws:
        final = assert_valid_turn(
            ws.turn(
                {
                    "model": run.model,
                    "store": False,
                    "input": [
                        *compacted["output"],
                        user("Continue from here. Reply with exactly: compacted"),
                    ],
                    "tools": [],
                }
            )
        )
    completed_status(final)


def websocket_generate_false(run: Run) -> None:
    recordings = run.answers("text")
    with WsClient(run.url) as ws:
        warm = assert_valid_turn(
            ws.turn({"model": run.model, "store": False, "generate": False, "input": "Remember: seven."})
        )
        assert warm["id"], "Warmup response did not include an id"
        assert recordings.served == [], "generate: false samples nothing"
        answer = assert_valid_turn(
            ws.turn(
                {
                    "model": run.model,
                    "store": False,
                    "previous_response_id": warm["id"],
                    "input": "What was it?",
                }
            )
        )
    completed_status(answer)


#: Every scenario id of the official suite (its revisions: the first six; then tool-calling-streaming,
#: function-call-roundtrip, file-input, previous-response-id and the optional file-search and
#: offline-web-search; then assistant-phase, response-output-phase-schema, the WebSocket and compact
#: scenarios), with the function that replays it. file-search and offline-web-search are optional
#: there and skipped without configuration (a vector store id, an offline search index); they are
#: not replayed (see docs/providers.md).
OFFICIAL_SCENARIOS: dict[str, Callable[[Run], None]] = {
    "basic-response": basic_response,
    "assistant-phase": assistant_phase,
    "response-output-phase-schema": response_output_phase_schema,
    "streaming-response": streaming_response,
    "websocket-response": websocket_response,
    "websocket-sequential-responses": websocket_sequential_responses,
    "websocket-continuation": websocket_continuation,
    "websocket-reconnect-store-false-recovery": websocket_reconnect_store_false_recovery,
    "websocket-generate-false": websocket_generate_false,
    "websocket-previous-response-not-found": websocket_previous_response_not_found,
    "websocket-failed-continuation-evicts-cache": websocket_failed_continuation_evicts_cache,
    "websocket-compact-new-chain": websocket_compact_new_chain,
    "system-prompt": system_prompt,
    "tool-calling": tool_calling,
    "tool-calling-streaming": tool_calling_streaming,
    "function-call-roundtrip": function_call_roundtrip,
    "image-input": image_input,
    "file-input": file_input,
    "multi-turn": multi_turn,
    "previous-response-id": previous_response_id,
    "compact-response": compact_response,
    "compact-missing-model": compact_missing_model,
}


#: Scenarios a family refuses by design, with the ``param`` its 400 ``unsupported_parameter`` names:
#: Ollama's API has no way to force a tool call (the round trip forces ``get_weather``) and takes no
#: file inputs. The official suite counts these as failures; the refusal is the documented answer.
REFUSED = {
    ("function-call-roundtrip", "ollama"): "tool_choice",
    ("file-input", "ollama"): "input[0].content[1]",
}


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("scenario", list(OFFICIAL_SCENARIOS))
def test_official_scenario(scenario: str, family: Family, http, server, upstream) -> None:
    run = Run(http, server.url, family, upstream)
    refused = REFUSED.get((scenario, family.name))
    if refused:
        with pytest.raises(
            AssertionError, match=re.escape(f'"param": "{refused}", "code": "unsupported_parameter"')
        ):
            OFFICIAL_SCENARIOS[scenario](run)
        assert upstream.requests == [], "refused before any upstream call"
        return
    OFFICIAL_SCENARIOS[scenario](run)
    recordings = upstream.handler
    assert isinstance(recordings, Recordings)
    assert recordings.unexpected == [], f"upstream calls nobody expected: {recordings.unexpected}"
    assert recordings.kinds == [], f"expected upstream calls that never came: {recordings.kinds}"
