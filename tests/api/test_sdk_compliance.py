"""The official openai SDK as client, and the spec's compliance scenarios, on the mock provider."""

from __future__ import annotations

import base64
import json
import time

import openai
import pytest

from tests.support.api import create, output_text, stream, types_of
from tests.support.spec import assert_valid_event, assert_valid_response

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city"}},
        "required": ["location"],
    },
}
# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF").decode()


def dump(obj) -> dict:
    return json.loads(obj.model_dump_json(exclude_unset=True, warnings=False))


# ---- the compliance scenarios (same requests, same checks as the official suite)


def test_basic_response(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": [{"type": "message", "role": "user", "content": "Say hello in exactly 3 words."}],
            "stream": False,
        },
    )
    assert data["status"] == "completed" and data["output"]


def test_streaming_response(http):
    events = stream(
        http,
        {"model": "mock-1", "input": [{"type": "message", "role": "user", "content": "Count from 1 to 5."}]},
    )
    assert events[-1]["response"]["status"] == "completed" and events[-1]["response"]["output"]


def test_system_prompt(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": [
                {
                    "type": "message",
                    "role": "system",
                    "content": "You are a pirate. Always respond in pirate speak.",
                },
                {"type": "message", "role": "user", "content": "Say hello."},
            ],
        },
    )
    assert data["status"] == "completed" and data["output"]


def test_tool_calling(http):
    data = create(
        http,
        {"model": "mock-1", "input": "What's the weather like in San Francisco?", "tools": [WEATHER_TOOL]},
    )
    calls = [i for i in data["output"] if i["type"] == "function_call"]
    assert calls and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert calls[0]["call_id"] and calls[0]["id"].startswith("fc_") and calls[0]["status"] == "completed"


def test_tool_calling_streaming(http):
    events = stream(
        http,
        {"model": "mock-1", "input": "What's the weather like in San Francisco?", "tools": [WEATHER_TOOL]},
    )
    kinds = types_of(events)
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "function_call" and added["item"]["arguments"] == ""
    assert "response.function_call_arguments.delta" in kinds
    done_args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert done_args["arguments"] == deltas
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert done["item"]["type"] == "function_call" and done["item"]["arguments"] == deltas
    assert "response.content_part.added" not in kinds


def test_function_call_roundtrip(http):
    first = create(
        http,
        {"model": "mock-1", "input": "What's the weather like in San Francisco?", "tools": [WEATHER_TOOL]},
    )
    call = next(i for i in first["output"] if i["type"] == "function_call")
    second = create(
        http,
        {
            "model": "mock-1",
            "previous_response_id": first["id"],
            "input": [
                {
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": json.dumps({"temperature": 72, "condition": "sunny"}),
                }
            ],
            "tools": [WEATHER_TOOL],
        },
    )
    assert second["status"] == "completed" and second["output"]
    assert "sunny" in output_text(second)


def test_image_input(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What do you see in this image?"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                }
            ],
        },
    )
    assert data["status"] == "completed" and "I see 1 image" in output_text(data)


def test_file_input(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is in this file?"},
                        {
                            "type": "input_file",
                            "filename": "doc.pdf",
                            "file_data": f"data:application/pdf;base64,{PDF}",
                        },
                    ],
                }
            ],
        },
    )
    assert data["status"] == "completed" and "I read 1 file" in output_text(data)


def test_multi_turn(http):
    data = create(
        http,
        {
            "model": "mock-1",
            "input": [
                {"type": "message", "role": "user", "content": "My name is Alice."},
                {"type": "message", "role": "assistant", "content": "Hello Alice! Nice to meet you."},
                {"type": "message", "role": "user", "content": "What is my name?"},
            ],
        },
    )
    assert data["status"] == "completed" and output_text(data) == "(turn 2) You said: What is my name?"


def test_previous_response_id(http):
    first = create(http, {"model": "mock-1", "input": "My favourite colour is blue."})
    second = create(
        http,
        {
            "model": "mock-1",
            "previous_response_id": first["id"],
            "input": [{"type": "message", "role": "user", "content": "What is my favourite colour?"}],
        },
    )
    assert second["status"] == "completed" and second["output"]
    items = http.get(f"/v1/responses/{second['id']}/input_items").json()["data"]
    assert len(items) == 1, "input_items lists this response's own input only"


# ---- the official SDK end to end


def test_sdk_create_retrieve_delete(openai_client):
    response = openai_client.responses.create(
        model="mock-1", input="Hello SDK", instructions="Be nice", metadata={"k": "v"}
    )
    assert response.status == "completed"
    assert response.output_text == "You said: Hello SDK"
    assert_valid_response(dump(response))
    fetched = openai_client.responses.retrieve(response.id)
    assert (
        fetched.id == response.id
        and fetched.output_text == response.output_text
        and fetched.metadata == {"k": "v"}
    )
    items = openai_client.responses.input_items.list(response.id)
    assert [i.type for i in items.data] == ["message"]
    openai_client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(response.id)


def test_sdk_streaming(openai_client):
    events = list(openai_client.responses.create(model="mock-1", input="Stream please", stream=True))
    for event in events:
        assert_valid_event(dump(event))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "You said: Stream please"
    assert events[-1].type == "response.completed"


def test_sdk_stream_helper_and_tools(openai_client):
    with openai_client.responses.stream(model="mock-1", input="weather?", tools=[WEATHER_TOOL]) as stream_:
        for _ in stream_:
            pass
        final = stream_.get_final_response()
    call = final.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    follow = openai_client.responses.create(
        model="mock-1",
        previous_response_id=final.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "cloudy"}],
    )
    assert follow.output_text == "The tool returned: cloudy"


def test_sdk_background_cancel(openai_client):
    response = openai_client.responses.create(model="mock-slow", input=" ".join(["w"] * 300), background=True)
    assert response.status == "queued"
    time.sleep(0.3)
    cancelled = openai_client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        final = openai_client.responses.retrieve(response.id)
        if final.usage is not None:
            break
        time.sleep(0.1)
    assert final.status == "cancelled" and final.usage is not None


def test_sdk_errors(openai_client):
    with pytest.raises(openai.BadRequestError) as excinfo:
        openai_client.responses.create(model="mock-1", input="x", temperature=5)
    assert excinfo.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError) as excinfo:
        openai_client.responses.create(model="unknown-model-xyz", input="x")
    assert excinfo.value.body["code"] == "model_not_found"
    with pytest.raises(openai.RateLimitError):
        openai_client.responses.create(model="mock-rate-limited", input="x")
