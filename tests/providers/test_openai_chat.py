"""OpenAIChatAdapter: recorded Chat Completions fixtures replayed over a real socket, plus request mapping."""

from __future__ import annotations

import time
from typing import Any

import pytest

from providers_app.adapters.base import (
    Finish,
    ItemEnd,
    ModelRequest,
    ReasoningDelta,
    ReasoningDone,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UnsupportedParameter,
    UpstreamError,
    UsageReport,
)
from providers_app.adapters.openai_chat import (
    OpenAIChatAdapter,
    StreamParser,
    parse_chat_completion,
)
from tests.support.adapters import adapter_for, body_of, collect, collect_until_error, user
from tests.support.upstream import FakeUpstream, Reply, fixture_json

KEY = "sk-test-secret-0123456789"


def make(up: FakeUpstream, *, key: str = KEY, **options: Any) -> OpenAIChatAdapter:
    return adapter_for(OpenAIChatAdapter, up, "/v1", name="oai", api_key=key, max_retries=0, options=options)


def canonical_tools(wire_tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat Completions tools (as recorded) -> Open Responses function tools."""
    tools = []
    for tool in wire_tools:
        fn = tool["function"]
        canon = {
            "type": "function",
            "name": fn["name"],
            "description": fn.get("description"),
            "parameters": fn["parameters"],
        }
        if "strict" in fn:
            canon["strict"] = fn["strict"]
        tools.append(canon)
    return tools


def body_for(request: ModelRequest, *, stream: bool = True, **options: Any) -> dict[str, Any]:
    return body_of(OpenAIChatAdapter, request, name="oai", stream=stream, **options)


# --------------------------------------------------------------------------- recorded fixtures


def test_text_stream_fixture() -> None:
    recorded = fixture_json("openai_chat/text_stream.request.json")
    request = ModelRequest(model="gpt-4o", items=[user("What is the capital of Mexico?")])
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/text_stream.sse"))
        chunks = collect(make(up), request)
        sent = up.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.json() == recorded
    texts = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert texts == ["The", " capital", " of", " Mexico", " is", " Mexico", " City", "."]
    assert chunks[len(texts) :] == [
        ItemEnd(),
        UsageReport(input_tokens=14, output_tokens=8, cached_tokens=0, reasoning_tokens=0),
        Finish("stop"),
    ]


def test_parallel_tool_calls_stream_fixture() -> None:
    recorded = fixture_json("openai_chat/parallel_tool_calls_stream.request.json")
    request = ModelRequest(
        model="gpt-4o",
        items=[user(recorded["messages"][0]["content"])],
        tools=canonical_tools(recorded["tools"]),
        tool_choice="required",
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/parallel_tool_calls_stream.sse"))
        chunks = collect(make(up), request)
        sent = up.requests[0].json()
    for key in ("model", "messages", "tools", "tool_choice", "stream", "stream_options"):
        assert sent[key] == recorded[key], key
    assert sent["parallel_tool_calls"] is True
    assert chunks == [
        ToolCallStart("call_q2UyBRP7eXNTzAoR8lEhjc9Z", "get_country"),
        ToolCallDelta("{}"),
        ItemEnd(),
        ToolCallStart("call_b51ijcpFkDiTQG1bQzsrmtW5", "get_product_name"),
        ToolCallDelta("{}"),
        ItemEnd(),
        UsageReport(input_tokens=364, output_tokens=40, cached_tokens=0, reasoning_tokens=0),
        Finish("tool_calls"),
    ]


def test_tool_call_nonstream_fixture() -> None:
    recorded = fixture_json("openai_chat/tool_call_nonstream.request.json")
    request = ModelRequest(
        model="gpt-4o",
        items=[user(recorded["messages"][0]["content"])],
        tools=canonical_tools(recorded["tools"]),
        tool_choice="required",
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/tool_call_nonstream.json"))
        chunks = collect(make(up), request, stream=False)
        sent = up.requests[0].json()
    for key in ("model", "messages", "tools", "tool_choice", "stream"):
        assert sent[key] == recorded[key], key
    assert "stream_options" not in sent
    assert chunks == [
        ToolCallStart("call_iXFttys57ap0o16JSlC8yhYo", "get_user_country"),
        ToolCallDelta("{}"),
        ItemEnd(),
        UsageReport(input_tokens=68, output_tokens=12, cached_tokens=0, reasoning_tokens=0),
        Finish("tool_calls"),
    ]


def test_groq_midstream_error_fixture() -> None:
    recorded = fixture_json("openai_chat/groq_midstream_error.request.json")
    request = ModelRequest(
        model="openai/gpt-oss-120b",
        instructions=recorded["messages"][0]["content"],
        items=[user(recorded["messages"][1]["content"])],
        tools=canonical_tools(recorded["tools"]),
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/groq_midstream_error.sse"))
        chunks, error = collect_until_error(make(up), request)
        sent = up.requests[0].json()
    for key in ("model", "messages", "tools", "tool_choice", "stream"):
        assert sent[key] == recorded[key], key
    assert all(isinstance(c, ReasoningDelta) and c.kind == "content" for c in chunks)
    reasoning = "".join(c.text for c in chunks)
    assert reasoning.startswith("We need to call the tool with invalid parameters first")
    assert reasoning.endswith(' name: "test". Let\'s do that.')
    assert isinstance(error, UpstreamError)
    assert error.status == 502
    assert error.code == "tool_use_failed"
    assert "Tool call validation failed" in error.message
    assert "did not match schema" in error.message


def test_error_404_fixture() -> None:
    recorded = fixture_json("openai_chat/error_404_model_not_found.request.json")
    request = ModelRequest(model="gpt-5.2-proo", items=[user("hello")])
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/error_404_model_not_found.json", status=404))
        chunks, error = collect_until_error(make(up), request, stream=False)
        sent = up.requests[0].json()
    assert {k: sent[k] for k in recorded} == recorded
    assert chunks == []
    assert isinstance(error, UpstreamError)
    assert error.status == 404
    assert error.code == "model_not_found"
    assert "The model `gpt-5.2-proo` does not exist" in error.message


# --------------------------------------------------------------------------- HTTP errors and auth


def test_auth_header_sent_as_bearer() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/text_stream.sse"))
        collect(make(up), ModelRequest(model="m", items=[user("hi")]))
        assert up.requests[0].headers["authorization"] == f"Bearer {KEY}"
        assert up.requests[0].headers["content-type"] == "application/json"


def test_no_auth_header_without_key() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.fixture("openai_chat/text_stream.sse"))
        collect(make(up, key=""), ModelRequest(model="m", items=[user("hi")]))
        assert "authorization" not in up.requests[0].headers


def test_key_never_in_error_message() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=401))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
    assert isinstance(error, UpstreamError)
    assert error.status == 502 and error.code == "upstream_auth_failed"
    assert KEY not in error.message and KEY not in str(error)
    assert "Incorrect API key provided" in error.message


def test_key_never_in_midstream_error_message() -> None:
    frame = f'event: error\ndata: {{"error": {{"message": "bad key {KEY}"}}}}\n\n'.encode()
    with FakeUpstream() as up:
        up.queue(Reply(content_type="text/event-stream", chunks=[frame]))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
    assert isinstance(error, UpstreamError)
    assert KEY not in error.message and "bad key ***" in error.message


def test_429_maps_to_rate_limit_with_retry_after() -> None:
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=429, headers={"retry-after": "7"}))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
        assert len(up.requests) == 1
    assert isinstance(error, UpstreamError)
    assert error.status == 429
    assert error.retry_after == 7.0
    assert "Rate limit reached" in error.message


def test_5xx_maps_to_502() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.json({"error": {"message": "The server had an error"}}, status=503))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]), stream=False)
    assert isinstance(error, UpstreamError)
    assert error.status == 502
    assert "The server had an error" in error.message


def test_data_error_object_without_event_name() -> None:
    frames = [
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n',
        b'data: {"error":{"message":"upstream overloaded","code":"overloaded"}}\n\n',
    ]
    with FakeUpstream() as up:
        up.queue(Reply(content_type="text/event-stream", chunks=frames))
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
    assert chunks == [TextDelta("Hel")]
    assert isinstance(error, UpstreamError)
    assert error.status == 502 and error.code == "overloaded"
    assert "upstream overloaded" in error.message


def test_midstream_rate_limit_frame_maps_to_429() -> None:
    frame = b'event: error\ndata: {"error":{"message":"slow down","status_code":429}}\n\n'
    with FakeUpstream() as up:
        up.queue(Reply(content_type="text/event-stream", chunks=[frame]))
        _, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
    assert isinstance(error, UpstreamError) and error.status == 429


def test_server_lingering_after_done_does_not_delay_or_fail() -> None:
    reply = Reply.fixture("openai_chat/text_stream.sse")
    reply.hang_after = 3.0
    with FakeUpstream() as up:
        up.queue(reply)
        started = time.perf_counter()
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
        elapsed = time.perf_counter() - started
    assert error is None and chunks[-1] == Finish("stop")
    assert elapsed < 2.5


def test_frames_only_the_standard_library_reads_are_still_json() -> None:
    """A frame with NaN or an integer beyond 64 bits is valid for Python's json: not an error."""
    frames = [
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":NaN,"finish_reason":null}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"seed":123456789012345678901234567890}\n\n',
        b"data: [DONE]\n\n",
    ]
    with FakeUpstream() as up:
        up.queue(Reply(content_type="text/event-stream", chunks=frames))
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
    assert error is None
    assert chunks == [TextDelta("Hel"), TextDelta("lo"), ItemEnd(), Finish("stop")]


def test_stream_cut_short_raises() -> None:
    frames = [b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n']
    with FakeUpstream() as up:
        up.queue(Reply(content_type="text/event-stream", chunks=frames))
        chunks, error = collect_until_error(make(up), ModelRequest(model="m", items=[user("hi")]))
    assert chunks == [TextDelta("Hel")]
    assert isinstance(error, UpstreamError) and error.code == "upstream_disconnected"


# --------------------------------------------------------------------------- stream parsing (pure)


def feed_all(frames: list[dict[str, Any]]) -> list[Any]:
    parser = StreamParser()
    out: list[Any] = []
    for frame in frames:
        out.extend(parser.feed(frame))
    parser.done = True
    out.extend(parser.finish())
    return out


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


def tc(
    index: int, args: str | None = None, *, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    piece: dict[str, Any] = {"index": index, "function": {}}
    if id:
        piece["id"] = id
        piece["type"] = "function"
    if name:
        piece["function"]["name"] = name
    if args is not None:
        piece["function"]["arguments"] = args
    return piece


def calls_of(chunks: list[Any]) -> list[tuple[str, str, str]]:
    """(call_id, name, arguments) per call, asserting each call's chunks are contiguous and closed."""
    calls: list[tuple[str, str, str]] = []
    current: list[Any] | None = None
    for chunk in chunks:
        if isinstance(chunk, ToolCallStart):
            assert current is None, "a call started while another was open"
            current = [chunk.call_id, chunk.name, ""]
        elif isinstance(chunk, ToolCallDelta):
            assert current is not None
            current[2] += chunk.arguments
        elif isinstance(chunk, ItemEnd) and current is not None:
            calls.append(tuple(current))  # type: ignore[arg-type]
            current = None
    assert current is None
    return calls


def test_interleaved_tool_call_pieces_are_buffered_not_lost() -> None:
    frames = [
        delta(tool_calls=[tc(0, "", id="call_a", name="alpha")]),
        delta(tool_calls=[tc(1, "", id="call_b", name="beta")]),
        delta(tool_calls=[tc(0, '{"x": ')]),
        delta(tool_calls=[tc(1, '{"y": 2}')]),
        delta(tool_calls=[tc(0, "1}")]),
        delta(finish="tool_calls"),
    ]
    chunks = feed_all(frames)
    assert calls_of(chunks) == [("call_a", "alpha", '{"x": 1}'), ("call_b", "beta", '{"y": 2}')]
    assert chunks[-1] == Finish("tool_calls")


def test_interleaved_calls_switch_once_current_is_complete() -> None:
    frames = [
        delta(tool_calls=[tc(0, '{"x"', id="call_a", name="alpha")]),
        delta(tool_calls=[tc(1, '{"y":', id="call_b", name="beta")]),
        delta(tool_calls=[tc(0, ": 1}")]),
        delta(tool_calls=[tc(1, " 2}")]),
        delta(tool_calls=[tc(2, "{}", id="call_c", name="gamma")]),
        delta(finish="tool_calls"),
    ]
    chunks = feed_all(frames)
    assert calls_of(chunks) == [
        ("call_a", "alpha", '{"x": 1}'),
        ("call_b", "beta", '{"y": 2}'),
        ("call_c", "gamma", "{}"),
    ]
    # call_b (buffered meanwhile) started as soon as call_a was complete, before the finish.
    assert chunks[:8] == [
        ToolCallStart("call_a", "alpha"),
        ToolCallDelta('{"x"'),
        ToolCallDelta(": 1}"),
        ItemEnd(),
        ToolCallStart("call_b", "beta"),
        ToolCallDelta('{"y": 2}'),
        ItemEnd(),
        ToolCallStart("call_c", "gamma"),
    ]


def test_sequential_calls_stream_live() -> None:
    frames = [
        delta(tool_calls=[tc(0, "", id="call_a", name="alpha")]),
        delta(tool_calls=[tc(0, '{"q":')]),
        delta(tool_calls=[tc(0, '"z"}')]),
        delta(tool_calls=[tc(1, "", id="call_b", name="beta")]),
        delta(tool_calls=[tc(1, "{}")]),
    ]
    parser = StreamParser()
    live = [parser.feed(frame) for frame in frames]
    assert live[1] == [ToolCallDelta('{"q":')]
    assert live[3] == [ItemEnd(), ToolCallStart("call_b", "beta")]


def test_missing_call_id_is_generated() -> None:
    chunks = feed_all(
        [delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{}"}}]), delta("stop")]
    )
    start = chunks[0]
    assert isinstance(start, ToolCallStart) and start.call_id.startswith("call_") and start.name == "f"
    assert chunks[-1] == Finish("tool_calls")  # a "stop" finish with calls made is a tool_calls finish


def test_text_then_tool_call_closes_message() -> None:
    chunks = feed_all(
        [
            delta(role="assistant", content="Let me check."),
            delta(tool_calls=[tc(0, "{}", id="call_1", name="lookup")]),
            delta("tool_calls"),
        ]
    )
    assert chunks == [
        TextDelta("Let me check."),
        ItemEnd(),
        ToolCallStart("call_1", "lookup"),
        ToolCallDelta("{}"),
        ItemEnd(),
        Finish("tool_calls"),
    ]


def test_reasoning_content_then_text() -> None:
    chunks = feed_all(
        [
            delta(reasoning_content="Think"),
            delta(reasoning_content="ing."),
            delta(content="Answer"),
            delta("stop"),
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 20,
                    "completion_tokens_details": {"reasoning_tokens": 5},
                },
            },
        ]
    )
    assert chunks == [
        ReasoningDelta("Think", kind="content"),
        ReasoningDelta("ing.", kind="content"),
        ReasoningDone(),
        TextDelta("Answer"),
        ItemEnd(),
        UsageReport(input_tokens=10, output_tokens=20, cached_tokens=None, reasoning_tokens=5),
        Finish("stop"),
    ]


def test_truncated_tool_call_left_open_for_finish() -> None:
    chunks = feed_all([delta(tool_calls=[tc(0, '{"q": "ab', id="call_1", name="f")]), delta("length")])
    assert chunks == [ToolCallStart("call_1", "f"), ToolCallDelta('{"q": "ab'), Finish("max_output_tokens")]


def test_refusal_delta() -> None:
    chunks = feed_all([delta(refusal="I can't"), delta(refusal=" help."), delta("stop")])
    assert chunks == [RefusalDelta("I can't"), RefusalDelta(" help."), ItemEnd(), Finish("stop")]


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("stop", "stop"),
        ("length", "max_output_tokens"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
    ],
)
def test_finish_reasons(wire: str, reason: str) -> None:
    assert feed_all([delta(content="x"), delta(wire)])[-1] == Finish(reason)  # type: ignore[arg-type]


def test_groq_usage_in_x_groq() -> None:
    chunks = feed_all(
        [
            delta(content="x"),
            {**delta("stop"), "x_groq": {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}},
        ]
    )
    assert UsageReport(input_tokens=3, output_tokens=4) in chunks


def test_nonstream_text_reasoning_refusal_and_usage() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {"role": "assistant", "reasoning_content": "hmm", "content": "Partial"},
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    assert parse_chat_completion(body) == [
        ReasoningDelta("hmm", kind="content"),
        ReasoningDone(),
        TextDelta("Partial"),  # left open: Finish(max_output_tokens) closes it as incomplete
        UsageReport(input_tokens=100, output_tokens=50, cached_tokens=64, reasoning_tokens=30),
        Finish("max_output_tokens"),
    ]


def test_nonstream_error_body_with_200() -> None:
    with pytest.raises(UpstreamError, match="model overloaded"):
        parse_chat_completion({"error": {"message": "model overloaded"}})


# --------------------------------------------------------------------------- request mapping


def test_instructions_system_and_developer_roles() -> None:
    request = ModelRequest(
        model="m",
        instructions="Be brief.",
        items=[
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Dev rule."}],
            },
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Sys rule."}]},
            user("hi"),
        ],
    )
    assert body_for(request)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Dev rule."},
        {"role": "system", "content": "Sys rule."},
        {"role": "user", "content": "hi"},
    ]
    assert body_for(request, developer_role=True)["messages"][1] == {
        "role": "developer",
        "content": "Dev rule.",
    }


def test_user_images_and_pdf_parts() -> None:
    request = ModelRequest(
        model="m",
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Compare these."},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,iVBORw0KGgo=",
                        "detail": "high",
                    },
                    {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
                    {"type": "input_file", "filename": "report.pdf", "file_data": "JVBERi0xLjQ="},
                    {
                        "type": "input_file",
                        "filename": "b.pdf",
                        "file_data": "data:application/pdf;base64,JVBE",
                    },
                ],
            }
        ],
    )
    assert body_for(request)["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ=", "filename": "report.pdf"},
        },
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "b.pdf"}},
    ]


def test_file_url_is_unsupported() -> None:
    request = ModelRequest(
        model="m",
        items=[
            user("a"),
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_file", "file_url": "https://x/y.pdf"}],
            },
        ],
    )
    with pytest.raises(UnsupportedParameter) as info:
        body_for(request)
    assert info.value.param == "input[1].content[0].file_url"
    assert info.value.status == 400


def test_sampling_and_token_limits() -> None:
    request = ModelRequest(model="m", items=[user("hi")], temperature=0.3, top_p=0.9, max_output_tokens=256)
    body = body_for(request)
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.3, 0.9, 256)
    assert "max_tokens" not in body
    legacy = body_for(request, max_tokens_param="max_tokens")
    assert legacy["max_tokens"] == 256 and "max_completion_tokens" not in legacy
    plain = body_for(ModelRequest(model="m", items=[user("hi")]))
    assert not {"temperature", "top_p", "max_completion_tokens", "tools", "tool_choice"} & plain.keys()


def test_json_schema_response_format_and_reasoning_effort() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = ModelRequest(
        model="m",
        items=[user("hi")],
        text_format={"type": "json_schema", "name": "city", "schema": schema, "strict": True},
        reasoning={"effort": "low", "summary": "auto"},
    )
    body = body_for(request)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }
    assert body["reasoning_effort"] == "low"
    text = body_for(ModelRequest(model="m", items=[user("hi")], text_format={"type": "text"}))
    assert "response_format" not in text


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", "auto"),
        ("required", "required"),
        ("none", "none"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (
            {
                "type": "allowed_tools",
                "tools": [{"type": "function", "name": "get_weather"}],
                "mode": "required",
            },
            "required",
        ),
        ({"type": "allowed_tools", "tools": [{"type": "function", "name": "get_weather"}]}, "auto"),
    ],
)
def test_tool_choice_forms(choice: Any, wire: Any) -> None:
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {"type": "object"},
            "strict": True,
        }
    ]
    body = body_for(
        ModelRequest(
            model="m", items=[user("hi")], tools=tools, tool_choice=choice, parallel_tool_calls=False
        )
    )
    assert body["tool_choice"] == wire
    assert body["parallel_tool_calls"] is False
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather.",
                "parameters": {"type": "object"},
                "strict": True,
            },
        }
    ]


def test_history_with_calls_outputs_and_reasoning() -> None:
    request = ModelRequest(
        model="m",
        items=[
            user("Weather in Paris and Rome?"),
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "plan"}],
                "encrypted_content": "gAAA",
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking."}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [
                    {"type": "input_text", "text": "22C, map:"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            {"type": "function_call", "call_id": "call_3", "name": "forecast", "arguments": ""},
            {"type": "function_call_output", "call_id": "call_3", "output": "sunny"},
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        ],
    )
    assert body_for(request)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "22C, map:"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "forecast", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "sunny"},
        {"role": "assistant", "content": "", "refusal": "No."},
    ]


def test_provider_artefacts_round_trip_only_for_own_items() -> None:
    extra = {"google": {"thought_signature": "sig=="}}
    own = {
        "type": "function_call",
        "call_id": "c1",
        "name": "f",
        "arguments": "{}",
        "_meta": {"provider": "oai", "extra_content": extra},
    }
    foreign = {**own, "call_id": "c2", "_meta": {"provider": "other", "extra_content": extra}}
    messages = body_for(ModelRequest(model="m", items=[user("x"), own, foreign]))["messages"]
    calls = messages[1]["tool_calls"]
    assert calls[0]["extra_content"] == extra
    assert "extra_content" not in calls[1] and "_meta" not in calls[1]
    # and the artefact is captured from the stream, on the call's ItemEnd
    chunks = feed_all(
        [delta(tool_calls=[{**tc(0, "{}", id="c9", name="f"), "extra_content": extra}]), delta("tool_calls")]
    )
    assert ItemEnd({"extra_content": extra}) in chunks


def test_extra_body_and_stream_usage_option() -> None:
    body = body_for(ModelRequest(model="m", items=[user("x")]), stream_usage=False, extra_body={"top_k": 20})
    assert "stream_options" not in body and body["top_k"] == 20
