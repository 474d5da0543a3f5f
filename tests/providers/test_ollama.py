"""OllamaAdapter: recorded /api/chat fixtures replayed over a real socket, plus request mapping."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from providers_app.adapters.base import (
    Finish,
    ItemEnd,
    ModelRequest,
    ProviderConfig,
    ReasoningDelta,
    ReasoningDone,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UnsupportedParameter,
    UpstreamError,
    UsageReport,
)
from providers_app.adapters.ollama import OllamaAdapter, StreamParser
from tests.support.adapters import adapter_for, body_of, collect, collect_until_error, user
from tests.support.upstream import FakeUpstream, Reply, fixture_json, fixture_path

KEY = "ollama-secret-key-987654321"


def make(up: FakeUpstream, *, key: str = "", **options: Any) -> OllamaAdapter:
    return adapter_for(OllamaAdapter, up, name="local", api_key=key, max_retries=0, options=options)


def body_for(request: ModelRequest, *, stream: bool = True, **options: Any) -> dict[str, Any]:
    return body_of(OllamaAdapter, request, name="local", stream=stream, **options)


def ndjson(*objects: dict[str, Any]) -> Reply:
    return Reply.ndjson(list(objects))


def line(**message: Any) -> dict[str, Any]:
    return {"model": "m", "message": {"role": "assistant", "content": "", **message}, "done": False}


def done(reason: str = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
        **extra,
    }


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather in a given city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city to get the weather for"}},
        "required": ["city"],
    },
    "strict": True,
}


# --------------------------------------------------------------------------- recorded fixtures


def test_text_stream_fixture() -> None:
    recorded = fixture_json("ollama/text_stream.request.json")
    request = ModelRequest(model="llama3", items=[user("Tell me a joke about OpenTelemetry")])
    with FakeUpstream() as up:
        up.queue(Reply.fixture("ollama/text_stream.ndjson"))
        chunks = collect(make(up), request)
        sent = up.requests[0]
    assert sent.path == "/api/chat"
    body = sent.json()
    for key in ("model", "messages", "stream"):
        assert body[key] == recorded[key], key
    lines = [json.loads(x) for x in fixture_path("ollama/text_stream.ndjson").read_text().splitlines() if x]
    expected_text = "".join(x["message"]["content"] for x in lines)
    texts = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert len(texts) == len(lines) - 1  # the done line has empty content
    assert "".join(texts) == expected_text
    assert expected_text.startswith("Why did the OpenTelemetry agent go to therapy?")
    assert chunks[len(texts) :] == [ItemEnd(), UsageReport(input_tokens=17, output_tokens=50), Finish("stop")]


def test_text_nonstream_fixture() -> None:
    recorded = fixture_json("ollama/text_nonstream.request.json")
    request = ModelRequest(model="llama3", items=[user("Tell me a joke about OpenTelemetry")])
    with FakeUpstream() as up:
        up.queue(Reply.fixture("ollama/text_nonstream.json"))
        chunks = collect(make(up), request, stream=False)
        body = up.requests[0].json()
    for key in ("model", "messages", "stream"):
        assert body[key] == recorded[key], key
    answer = fixture_json("ollama/text_nonstream.json")["message"]["content"]
    assert chunks == [
        TextDelta(answer),
        ItemEnd(),
        UsageReport(input_tokens=17, output_tokens=66),
        Finish("stop"),
    ]


def test_tool_call_stream_fixture() -> None:
    recorded = fixture_json("ollama/tool_call_stream.request.json")
    request = ModelRequest(
        model="llama3.2", items=[user("what is the weather in tokyo?")], tools=[WEATHER_TOOL]
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("ollama/tool_call_stream.ndjson"))
        chunks = collect(make(up), request)
        body = up.requests[0].json()
    for key in ("model", "messages", "tools", "stream"):
        assert body[key] == recorded[key], key
    start = chunks[0]
    assert isinstance(start, ToolCallStart) and start.name == "get_weather"
    assert start.call_id.startswith("call_") and len(start.call_id) > 10
    assert chunks[1:] == [
        ToolCallDelta('{"city": "Tokyo"}'),
        ItemEnd(),
        UsageReport(input_tokens=169, output_tokens=15),
        Finish("tool_calls"),
    ]


def test_midstream_error_fixture() -> None:
    # The recorded example is /api/generate-shaped; the {"error": ...} line is the same on /api/chat.
    with FakeUpstream() as up:
        up.queue(Reply.fixture("ollama/generate_midstream_error.ndjson"))
        chunks, error = collect_until_error(
            make(up), ModelRequest(model="gemma4", items=[user("Is the sky blue?")])
        )
        assert up.requests[0].path == "/api/chat"
    assert chunks == []
    assert isinstance(error, UpstreamError)
    assert error.status == 502
    assert "an error was encountered while running the model" in error.message


def test_chat_shaped_midstream_error_after_text() -> None:
    with FakeUpstream() as up:
        up.queue(
            ndjson(
                line(content="Yes"),
                line(content="."),
                {"error": "an error was encountered while running the model"},
            )
        )
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("?")]))
    assert chunks == [TextDelta("Yes"), TextDelta(".")]
    assert isinstance(error, UpstreamError) and "an error was encountered" in error.message


# --------------------------------------------------------------------------- stream parsing


def test_thinking_then_content() -> None:
    parser = StreamParser()
    out = []
    for obj in (
        line(thinking="Let me"),
        line(thinking=" think."),
        line(content="42"),
        done(prompt_eval_count=5, eval_count=9),
    ):
        out.extend(parser.feed(obj))
    assert out == [
        ReasoningDelta("Let me", kind="content"),
        ReasoningDelta(" think.", kind="content"),
        ReasoningDone(),
        TextDelta("42"),
        ItemEnd(),
        UsageReport(input_tokens=5, output_tokens=9),
        Finish("stop"),
    ]


def test_length_finish_and_call_ids() -> None:
    parser = StreamParser()
    calls = [
        {"id": "call_abc", "function": {"name": "a", "arguments": {"x": 1}}},
        {"function": {"index": 1, "name": "b", "arguments": {}}},
    ]
    out = parser.feed(line(content="Hi", tool_calls=calls)) + parser.feed(done("length"))
    assert out[:5] == [
        TextDelta("Hi"),
        ItemEnd(),
        ToolCallStart("call_abc", "a"),
        ToolCallDelta('{"x": 1}'),
        ItemEnd(),
    ]
    assert isinstance(out[5], ToolCallStart) and out[5].name == "b" and out[5].call_id.startswith("call_")
    assert out[6:] == [ToolCallDelta("{}"), ItemEnd(), UsageReport(), Finish("max_output_tokens")]


def test_truncated_text_left_open_for_finish() -> None:
    parser = StreamParser()
    out = parser.feed(line(content="Once upon")) + parser.feed(
        done("length", prompt_eval_count=3, eval_count=2)
    )
    assert out == [
        TextDelta("Once upon"),
        UsageReport(input_tokens=3, output_tokens=2),
        Finish("max_output_tokens"),
    ]


def test_parallel_tool_calls_false_keeps_first_call() -> None:
    calls = [{"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]
    with FakeUpstream() as up:
        up.queue(ndjson(line(tool_calls=calls), done()))
        chunks = collect(
            make(up),
            ModelRequest(
                model="m",
                items=[user("x")],
                tools=[{**WEATHER_TOOL, "name": "a"}, {**WEATHER_TOOL, "name": "b"}],
                parallel_tool_calls=False,
            ),
        )
    assert [c.name for c in chunks if isinstance(c, ToolCallStart)] == ["a"]
    assert chunks[-1] == Finish("tool_calls")


def test_server_lingering_after_done_does_not_delay_or_fail() -> None:
    reply = Reply.fixture("ollama/text_stream.ndjson")
    reply.hang_after = 3.0
    with FakeUpstream() as up:
        up.queue(reply)
        started = time.perf_counter()
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("x")]))
        elapsed = time.perf_counter() - started
    assert error is None and chunks[-1] == Finish("stop")
    assert elapsed < 2.5


def test_stream_cut_short_raises() -> None:
    with FakeUpstream() as up:
        up.queue(ndjson(line(content="Hel")))
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("x")]))
    assert chunks == [TextDelta("Hel")]
    assert isinstance(error, UpstreamError) and error.code == "upstream_disconnected"


# --------------------------------------------------------------------------- HTTP errors and auth


def test_no_auth_header_without_key_and_bearer_with_key() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.fixture("ollama/text_nonstream.json"), Reply.fixture("ollama/text_nonstream.json"))
        collect(make(up), ModelRequest(model="m", items=[user("x")]), stream=False)
        collect(make(up, key=KEY), ModelRequest(model="m", items=[user("x")]), stream=False)
        assert "authorization" not in up.requests[0].headers
        assert up.requests[1].headers["authorization"] == f"Bearer {KEY}"


def test_key_never_in_error_message() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.json({"error": f"unauthorized: bad token {KEY}"}, status=401))
        _, error = collect_until_error(make(up, key=KEY), ModelRequest(model="m", items=[user("x")]))
    assert isinstance(error, UpstreamError)
    assert KEY not in error.message and KEY not in str(error)
    assert "unauthorized" in error.message


def test_model_not_found_404() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.json({"error": 'model "nope" not found, try pulling it first'}, status=404))
        _, error = collect_until_error(make(up), ModelRequest(model="nope", items=[user("x")]))
    assert isinstance(error, UpstreamError)
    assert error.status == 404 and 'model "nope" not found' in error.message


def test_429_maps_to_rate_limit_with_retry_after() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.json({"error": "too many requests"}, status=429, headers={"Retry-After": "4"}))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("x")]))
        assert len(up.requests) == 1
    assert isinstance(error, UpstreamError)
    assert error.status == 429 and error.retry_after == 4.0


def test_5xx_maps_to_502() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.json({"error": "llama runner process has terminated"}, status=500))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("x")]), stream=False)
    assert isinstance(error, UpstreamError)
    assert error.status == 502 and "llama runner process has terminated" in error.message


def test_endpoint_defaults_and_api_suffix() -> None:
    def endpoint(base_url: str) -> str:
        adapter = OllamaAdapter(ProviderConfig(name="o", adapter="ollama", base_url=base_url))
        return adapter.endpoint(ModelRequest(model="m", items=[]), stream=True)

    assert endpoint("") == "http://localhost:11434/api/chat"
    assert endpoint("http://gpu:11434/") == "http://gpu:11434/api/chat"
    assert endpoint("http://gpu:11434/api") == "http://gpu:11434/api/chat"


# --------------------------------------------------------------------------- request mapping


def test_system_messages_images_and_history() -> None:
    request = ModelRequest(
        model="m",
        instructions="Be brief.",
        items=[
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Dev."}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,iVBORw0KGgo=",
                        "detail": "auto",
                    },
                ],
            },
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "own trace"}],
                "_meta": {"provider": "local"},
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q": "png"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "foreign"}],
                "encrypted_content": "x",
                "_meta": {"provider": "openai"},
            },
            {"type": "function_call", "call_id": "call_2", "name": "zoom", "arguments": ""},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [
                    {"type": "input_text", "text": "zoomed"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/"},
                ],
            },
        ],
    )
    assert body_for(request)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Dev."},
        {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]},
        {
            "role": "assistant",
            "content": "Checking.",
            "thinking": "own trace",
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "png"}}}],
        },
        {"role": "tool", "content": "a cat", "tool_name": "lookup"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "zoom", "arguments": {}}}]},
        {"role": "tool", "content": "zoomed", "tool_name": "zoom", "images": ["/9j/"]},
    ]


def test_http_image_url_is_unsupported() -> None:
    request = ModelRequest(
        model="m",
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "x"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                ],
            }
        ],
    )
    with pytest.raises(UnsupportedParameter) as info:
        body_for(request)
    assert info.value.param == "input[0].content[1].image_url"
    assert info.value.status == 400


def test_pdf_is_unsupported() -> None:
    request = ModelRequest(
        model="m",
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "JVBE"}],
            }
        ],
    )
    with pytest.raises(UnsupportedParameter) as info:
        body_for(request)
    assert info.value.param == "input[0].content[0]"


def test_sampling_options_format_and_think() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = ModelRequest(
        model="m",
        items=[user("x")],
        temperature=0.2,
        top_p=0.8,
        max_output_tokens=128,
        text_format={"type": "json_schema", "name": "c", "schema": schema, "strict": True},
        reasoning={"effort": "medium"},
    )
    body = body_for(request, keep_alive="5m", model_options={"num_ctx": 8192})
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.2, "top_p": 0.8, "num_predict": 128}
    assert body["format"] == schema
    assert body["think"] == "medium"
    assert body["keep_alive"] == "5m"
    assert body_for(request, think_levels=False)["think"] is True
    plain = body_for(ModelRequest(model="m", items=[user("x")]))
    assert not {"options", "format", "think", "tools", "keep_alive"} & plain.keys()


@pytest.mark.parametrize(
    ("effort", "think"),
    [("none", False), ("minimal", "low"), ("low", "low"), ("high", "high"), ("xhigh", "high")],
)
def test_reasoning_effort_to_think(effort: str, think: Any) -> None:
    assert (
        body_for(ModelRequest(model="m", items=[user("x")], reasoning={"effort": effort}))["think"] == think
    )


def test_tool_choice_forms() -> None:
    def tools_sent(choice: Any) -> bool:
        return "tools" in body_for(
            ModelRequest(model="m", items=[user("x")], tools=[WEATHER_TOOL], tool_choice=choice)
        )

    assert tools_sent("auto")
    assert not tools_sent("none")
    assert tools_sent(
        {"type": "allowed_tools", "tools": [{"type": "function", "name": "get_weather"}], "mode": "auto"}
    )
    assert not tools_sent(
        {"type": "allowed_tools", "tools": [{"type": "function", "name": "get_weather"}], "mode": "none"}
    )
    for choice in (
        "required",
        {"type": "function", "name": "get_weather"},
        {"type": "allowed_tools", "tools": [], "mode": "required"},
    ):
        with pytest.raises(UnsupportedParameter) as info:
            tools_sent(choice)
        assert info.value.param == "tool_choice"


def test_unsupported_request_raised_before_any_http_call() -> None:
    with FakeUpstream() as up:
        _, error = collect_until_error(
            make(up), ModelRequest(model="m", items=[user("x")], tools=[WEATHER_TOOL], tool_choice="required")
        )
        assert up.requests == []
    assert isinstance(error, UnsupportedParameter) and error.param == "tool_choice"
