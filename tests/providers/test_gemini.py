"""Gemini adapter: every recorded fixture replayed over a real socket, plus request-mapping cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from providers_app.adapters.base import (
    Citation,
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
    WebSearchDone,
)
from providers_app.adapters.gemini import (
    SKIP_SIGNATURE,
    GeminiAdapter,
    StreamParser,
)
from tests.support.adapters import adapter_for, body_of, collect, collect_until_error, texts, user
from tests.support.adapters import kinds as chunk_kinds
from tests.support.upstream import FakeUpstream, Reply, fixture_json

KEY = "AIza-test-secret-key"
WEATHER_SCHEMA = {
    "additionalProperties": False,
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "type": "object",
}


def adapter(up: FakeUpstream, name: str = "gemini", **kwargs: Any) -> GeminiAdapter:
    return adapter_for(GeminiAdapter, up, "/v1beta", name=name, api_key=KEY, **kwargs)


def body_for(request: ModelRequest, provider: str = "gemini") -> dict[str, Any]:
    return body_of(GeminiAdapter, request, name=provider)


def kinds(chunks: list[Any]) -> list[str]:
    return chunk_kinds(chunks, collapse_all=True)


def frame(
    parts: list[dict[str, Any]], finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        out["usageMetadata"] = usage
    return out


def sse(*frames: dict[str, Any]) -> Reply:
    return Reply.sse([(None, f) for f in frames], crlf=True)


# --------------------------------------------------------------------------- recorded fixtures


def test_text_stream_fixture() -> None:
    request = ModelRequest(
        model="gemini-2.0-flash-exp",
        instructions="You are a helpful chatbot.",
        items=[user("What is the capital of France?")],
        temperature=0.0,
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/text_stream.sse"))
        chunks = collect(adapter(up), request, stream=True)
        sent = up.requests[0]
    assert sent.method == "POST"
    assert sent.path == "/v1beta/models/gemini-2.0-flash-exp:streamGenerateContent?alt=sse"
    assert sent.headers["x-goog-api-key"] == KEY
    assert "authorization" not in sent.headers and KEY not in sent.path
    expected = fixture_json("gemini/text_stream.request.json")
    body = sent.json()
    assert body["contents"] == expected["contents"]
    assert body["systemInstruction"]["parts"] == expected["systemInstruction"]["parts"]
    assert body["generationConfig"] == expected["generationConfig"]
    assert "tools" not in body and "toolConfig" not in body
    assert chunks == [
        TextDelta("The"),
        TextDelta(" capital of France"),
        TextDelta(" is Paris.\n"),
        ItemEnd(),
        UsageReport(input_tokens=13, output_tokens=8, cached_tokens=0, reasoning_tokens=0),
        Finish("stop"),
    ]


def test_thinking_stream_fixture() -> None:
    request = ModelRequest(
        model="gemini-2.5-pro",
        instructions="You are a helpful assistant.",
        items=[user("How do I cross the street?")],
        tools=[
            {
                "type": "function",
                "name": "dummy",
                "description": "",
                "parameters": {"type": "object", "properties": {}},
            }
        ],
        reasoning={"summary": "auto"},
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/thinking_stream.sse"))
        chunks = collect(adapter(up), request, stream=True)
        body = up.requests[0].json()
    expected = fixture_json("gemini/thinking_stream.request.json")
    assert body["contents"] == expected["contents"]
    assert body["systemInstruction"]["parts"] == expected["systemInstruction"]["parts"]
    assert body["generationConfig"]["thinkingConfig"] == expected["generationConfig"]["thinkingConfig"]
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "dummy" and declaration["description"] == ""
    assert declaration["parametersJsonSchema"] == {"type": "object", "properties": {}}

    assert kinds(chunks) == [
        "ReasoningDelta",
        "ReasoningDone",
        "TextDelta",
        "ItemEnd",
        "UsageReport",
        "Finish",
    ]
    reasoning = [c for c in chunks if isinstance(c, ReasoningDelta)]
    assert len(reasoning) == 4 and all(c.kind == "summary" for c in reasoning)
    assert reasoning[0].text.startswith("**Clarifying User Goals**")
    assert reasoning[3].text.startswith("**Crafting Safe Instructions**")
    done = next(c for c in chunks if isinstance(c, ReasoningDone))
    assert done.provider_data is None and done.encrypted_content is None
    answer = texts(chunks)
    assert answer.startswith("This is a great question! Safely crossing the street")
    assert answer.endswith("Always assume a driver might not see you.")
    assert len([c for c in chunks if isinstance(c, TextDelta)]) == 19
    end = next(c for c in chunks if isinstance(c, ItemEnd))
    assert end.provider_data["thought_signature"].startswith("CiIB0e2Kb6Syj1a961Ef")
    assert end.provider_data["thought_signature"].endswith("dH8k=")
    assert chunks[-2:] == [
        UsageReport(input_tokens=34, output_tokens=469 + 787, cached_tokens=0, reasoning_tokens=787),
        Finish("stop"),
    ]


def test_text_after_function_response_stream_fixture() -> None:
    request = ModelRequest(
        model="gemini-2.0-flash",
        instructions="You are a helpful chatbot.",
        items=[
            user("What is the temperature of the capital of France?"),
            {
                "type": "function_call",
                "call_id": "call_a",
                "name": "get_capital",
                "arguments": '{"country": "France"}',
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "Paris"},
            {
                "type": "function_call",
                "call_id": "call_b",
                "name": "get_temperature",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_b", "output": "30°C"},
        ],
        tools=[
            {
                "type": "function",
                "name": "get_capital",
                "description": "Get the capital of a country.",
                "parameters": {
                    "type": "object",
                    "properties": {"country": {"type": "string", "description": "The country name."}},
                    "required": ["country"],
                },
            },
            {
                "type": "function",
                "name": "get_temperature",
                "description": "Get the temperature in a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "The city name."}},
                    "required": ["city"],
                },
            },
        ],
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/text_after_function_response_stream.sse"))
        chunks = collect(adapter(up), request, stream=True)
        body = up.requests[0].json()
    expected = fixture_json("gemini/text_after_function_response_stream.request.json")
    assert [c["role"] for c in body["contents"]] == [c["role"] for c in expected["contents"]]
    for got, want in zip(body["contents"], expected["contents"], strict=True):
        for got_part, want_part in zip(got["parts"], want["parts"], strict=True):
            if "text" in want_part:
                assert got_part == want_part
            elif "functionCall" in want_part:
                assert got_part["functionCall"]["name"] == want_part["functionCall"]["name"]
                assert got_part["functionCall"]["args"] == want_part["functionCall"]["args"]
            else:
                want_response = want_part["functionResponse"]
                assert got_part["functionResponse"]["name"] == want_response["name"]
                assert got_part["functionResponse"]["response"] == {
                    "output": want_response["response"]["return_value"]
                }
    assert "thoughtSignature" not in json.dumps(body)  # gemini-2.0: no sentinel
    declarations = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == ["get_capital", "get_temperature"]
    assert [d["description"] for d in declarations] == [
        d["description"] for d in expected["tools"][0]["functionDeclarations"]
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body["systemInstruction"]["parts"] == expected["systemInstruction"]["parts"]
    assert chunks == [
        TextDelta("The temperature in Paris"),
        TextDelta(" is 30°C.\n"),
        ItemEnd(),
        UsageReport(input_tokens=79, output_tokens=12, cached_tokens=0, reasoning_tokens=0),
        Finish("stop"),
    ]


def test_text_nonstream_fixture() -> None:
    request = ModelRequest(
        model="gemini-2.5-flash", instructions="You are a chatbot.", items=[user("Hello!")]
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/text_nonstream.json"))
        chunks = collect(adapter(up), request, stream=False)
        sent = up.requests[0]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    expected = fixture_json("gemini/text_nonstream.request.json")
    assert sent.json()["contents"] == expected["contents"]
    assert sent.json()["systemInstruction"]["parts"] == expected["systemInstruction"]["parts"]
    assert chunks == [
        TextDelta("Hello! How can I help you today?"),
        ItemEnd(),
        UsageReport(input_tokens=9, output_tokens=9 + 34, cached_tokens=0, reasoning_tokens=34),
        Finish("stop"),
    ]


def test_function_call_nonstream_fixture() -> None:
    request = ModelRequest(
        model="gemini-2.5-flash",
        items=[user("What's the weather in Paris?")],
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "description": "Get the current weather for a city.",
                "parameters": WEATHER_SCHEMA,
                "strict": True,
            }
        ],
        tool_choice="auto",
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/function_call_nonstream.json"))
        chunks = collect(adapter(up), request, stream=False)
        body = up.requests[0].json()
    expected = fixture_json("gemini/function_call_nonstream.request.json")
    assert body["contents"] == expected["contents"]
    assert body["toolConfig"] == expected["toolConfig"]
    want = expected["tools"][0]["functionDeclarations"][0]
    got = body["tools"][0]["functionDeclarations"][0]
    assert got["name"] == want["name"] and got["description"] == want["description"]
    assert got["parametersJsonSchema"] == want["parameters_json_schema"]
    assert "strict" not in got

    assert [type(c) for c in chunks] == [ToolCallStart, ToolCallDelta, ItemEnd, UsageReport, Finish]
    start = chunks[0]
    assert start.name == "get_weather"
    assert start.call_id.startswith("call_") and len(start.call_id) > 10
    signature = fixture_json("gemini/function_call_nonstream.json")["candidates"][0]["content"]["parts"][0][
        "thoughtSignature"
    ]
    assert start.provider_data == {"thought_signature": signature}
    assert json.loads(chunks[1].arguments) == {"city": "Paris"}
    assert chunks[3] == UsageReport(
        input_tokens=49, output_tokens=15 + 48, cached_tokens=0, reasoning_tokens=48
    )
    assert chunks[4] == Finish("tool_calls")


def test_max_tokens_nonstream_fixture() -> None:
    request = ModelRequest(
        model="gemini-2.5-flash",
        instructions="You are a helpful chatbot.",
        items=[user("What is the capital of France?")],
        max_output_tokens=5,
        reasoning={"effort": "none"},
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/max_tokens_nonstream.json"))
        chunks = collect(adapter(up), request, stream=False)
        body = up.requests[0].json()
    expected = fixture_json("gemini/max_tokens_nonstream.request.json")
    assert body["contents"] == expected["contents"]
    assert body["systemInstruction"]["parts"] == expected["systemInstruction"]["parts"]
    assert body["generationConfig"]["maxOutputTokens"] == expected["generationConfig"]["maxOutputTokens"]
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}  # fixture: thinking_budget 0
    # The cut-off message is left open: the emitter closes it as incomplete on Finish.
    assert chunks == [
        TextDelta("The capital of France is"),
        UsageReport(input_tokens=15, output_tokens=5, cached_tokens=0, reasoning_tokens=0),
        Finish("max_output_tokens"),
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_error_404_fixture(stream: bool) -> None:
    request = ModelRequest(model="gemini-3.6-flahs", items=[user("hello")])
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/error_404_not_found.json", status=404))
        chunks, error = collect_until_error(adapter(up), request, stream=stream)
        body = up.requests[0].json()
    assert body["contents"] == fixture_json("gemini/error_404_not_found.request.json")["contents"]
    assert chunks == []
    assert isinstance(error, UpstreamError)
    assert error.status == 404 and error.code == "model_not_found" and error.param == "model"
    assert "models/gemini-3.6-flahs is not found for API version v1beta" in error.message
    assert KEY not in error.message


# --------------------------------------------------------------------------- HTTP errors and auth


def test_429_retry_after_header_and_key_not_leaked() -> None:
    status_body = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    with FakeUpstream() as up:
        up.queue(Reply.json(status_body, status=429, headers={"Retry-After": "7"}))
        chunks, error = collect_until_error(
            adapter(up, max_retries=0), ModelRequest(model="gemini-2.5-flash", items=[user("x")])
        )
        assert len(up.requests) == 1
    assert chunks == [] and isinstance(error, UpstreamError)
    assert error.status == 429 and error.code == "rate_limit_exceeded" and error.retry_after == 7.0
    assert "Resource has been exhausted" in error.message and KEY not in error.message


def test_429_retry_delay_from_status_details() -> None:
    status_body = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27s"}],
        }
    }
    with FakeUpstream() as up:
        up.queue(Reply.json(status_body, status=429))
        _, error = collect_until_error(
            adapter(up, max_retries=0), ModelRequest(model="m", items=[user("x")]), stream=False
        )
    assert isinstance(error, UpstreamError) and error.status == 429 and error.retry_after == 27.0


def test_429_is_retried_before_giving_up() -> None:
    status_body = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    with FakeUpstream() as up:
        up.queue(
            Reply.json(status_body, status=429, headers={"Retry-After": "0"}),
            Reply.fixture("gemini/text_stream.sse"),
        )
        chunks = collect(adapter(up, max_retries=1), ModelRequest(model="m", items=[user("x")]))
        assert len(up.requests) == 2
    assert texts(chunks) == "The capital of France is Paris.\n"


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_becomes_502(status: int) -> None:
    body = {
        "error": {
            "code": status,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=status))
        _, error = collect_until_error(adapter(up, max_retries=0), ModelRequest(model="m", items=[user("x")]))
    assert isinstance(error, UpstreamError) and error.status == 502 and error.code == "upstream_error"
    assert "overloaded" in error.message and KEY not in error.message


def test_list_wrapped_status_body_and_auth_failure() -> None:
    body = [
        {
            "error": {
                "code": 403,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "PERMISSION_DENIED",
            }
        }
    ]
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=403))
        _, error = collect_until_error(adapter(up, max_retries=0), ModelRequest(model="m", items=[user("x")]))
    assert isinstance(error, UpstreamError) and error.status == 502 and error.code == "upstream_auth_failed"
    assert error.message.endswith("API key not valid. Please pass a valid API key.")
    assert KEY not in error.message


def test_no_key_header_when_unconfigured_and_custom_headers_kept() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/text_stream.sse"))
        config = ProviderConfig(
            name="g", adapter="gemini", base_url=up.base_url + "/v1beta/", headers={"x-extra": "1"}
        )
        collect(GeminiAdapter(config), ModelRequest(model="models/gemini-2.5-flash", items=[user("x")]))
        sent = up.requests[0]
    assert "x-goog-api-key" not in sent.headers and sent.headers["x-extra"] == "1"
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


def test_midstream_error_frame_raises_after_chunks() -> None:
    with FakeUpstream() as up:
        up.queue(
            sse(
                frame([{"text": "Hel"}]),
                {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
            )
        )
        chunks, error = collect_until_error(adapter(up), ModelRequest(model="m", items=[user("x")]))
    assert chunks == [TextDelta("Hel")]
    assert isinstance(error, UpstreamError) and error.status == 502 and "overloaded" in error.message


def test_stream_without_finish_reason_is_an_error() -> None:
    with FakeUpstream() as up:
        up.queue(sse(frame([{"text": "partial"}])))
        chunks, error = collect_until_error(adapter(up), ModelRequest(model="m", items=[user("x")]))
    assert chunks[0] == TextDelta("partial")
    assert isinstance(error, UpstreamError) and error.code == "upstream_disconnected"


# --------------------------------------------------------------------------- response parsing


def parse(*frames: dict[str, Any], single_call: bool = False) -> list[Any]:
    parser = StreamParser("g", single_call=single_call)
    out: list[Any] = []
    for f in frames:
        out.extend(parser.feed(f))
    out.extend(parser.finish())
    return out


def test_prompt_feedback_block_is_content_filter() -> None:
    chunks = parse(
        {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        }
    )
    assert chunks == [
        UsageReport(input_tokens=8, output_tokens=0, cached_tokens=0, reasoning_tokens=0),
        Finish("content_filter"),
    ]


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])
def test_safety_finish_reasons(reason: str) -> None:
    assert parse(frame([{"text": "a"}], finish=reason))[-1] == Finish("content_filter")


def test_parallel_calls_cached_tokens_and_signatures() -> None:
    chunks = parse(
        frame(
            [
                {"text": "Checking both.", "thoughtSignature": "sig-text"},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "sig-1",
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
            finish="STOP",
            usage={
                "promptTokenCount": 100,
                "cachedContentTokenCount": 60,
                "candidatesTokenCount": 20,
                "thoughtsTokenCount": 5,
            },
        )
    )
    assert kinds(chunks)[:3] == ["TextDelta", "ItemEnd", "ToolCallStart"]
    assert chunks[1] == ItemEnd(provider_data={"thought_signature": "sig-text"})
    starts = [c for c in chunks if isinstance(c, ToolCallStart)]
    assert [s.provider_data for s in starts] == [{"thought_signature": "sig-1"}, None]
    assert starts[0].call_id != starts[1].call_id
    assert [json.loads(c.arguments) for c in chunks if isinstance(c, ToolCallDelta)] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert chunks[-2:] == [
        UsageReport(input_tokens=100, output_tokens=25, cached_tokens=60, reasoning_tokens=5),
        Finish("tool_calls"),
    ]


def test_single_call_when_parallel_tool_calls_false() -> None:
    call = {"functionCall": {"name": "f", "args": {}}}
    chunks = parse(frame([call, call], finish="STOP"), single_call=True)
    assert len([c for c in chunks if isinstance(c, ToolCallStart)]) == 1 and chunks[-1] == Finish(
        "tool_calls"
    )


def test_signature_on_thought_part_goes_to_reasoning_done() -> None:
    chunks = parse(
        frame([{"text": "thinking", "thought": True}]),
        frame([{"text": "", "thought": True, "thoughtSignature": "sig-r"}]),
        frame([{"text": "answer"}], finish="STOP"),
    )
    assert chunks[:4] == [
        ReasoningDelta("thinking"),
        ReasoningDone(provider_data={"thought_signature": "sig-r"}),
        TextDelta("answer"),
        ItemEnd(),
    ]


def test_empty_text_with_signature_at_end_of_stream() -> None:
    chunks = parse(
        frame([{"text": "Hi"}]), frame([{"text": "", "thoughtSignature": "sig-end"}], finish="STOP")
    )
    assert chunks[:2] == [TextDelta("Hi"), ItemEnd(provider_data={"thought_signature": "sig-end"})]


def test_malformed_function_call_is_an_error() -> None:
    with pytest.raises(UpstreamError):
        parse(frame([], finish="MALFORMED_FUNCTION_CALL"))


# --------------------------------------------------------------------------- request mapping


def test_system_and_developer_messages_join_system_instruction() -> None:
    body = body_for(
        ModelRequest(
            model="gemini-2.5-flash",
            instructions="Be brief.",
            items=[
                {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Sys."}]},
                {"type": "message", "role": "developer", "content": "Dev."},
                user("Hi"),
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello"}],
                },
                {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
                user("Again"),
            ],
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Sys."}, {"text": "Dev."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello"}, {"text": "No."}]},
        {"role": "user", "parts": [{"text": "Again"}]},
    ]
    assert "generationConfig" not in body


def test_images_data_and_http_urls() -> None:
    message = {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Compare"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"},
            {"type": "input_image", "image_url": "https://example.com/cat.webp?size=2", "detail": "auto"},
            {"type": "input_image", "image_url": "https://example.com/photo"},
        ],
    }
    parts = body_for(ModelRequest(model="m", items=[message]))["contents"][0]["parts"]
    assert parts == [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.webp?size=2", "mimeType": "image/webp"}},
        {"fileData": {"fileUri": "https://example.com/photo", "mimeType": "image/jpeg"}},
    ]


def test_pdf_files() -> None:
    message = {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_file", "filename": "report.pdf", "file_data": "JVBERi0xLjQ="},
            {
                "type": "input_file",
                "filename": "a.pdf",
                "file_data": "data:application/pdf;base64,JVBERi0xLjQ=",
            },
            {"type": "input_file", "file_url": "https://example.com/paper.pdf"},
        ],
    }
    parts = body_for(ModelRequest(model="m", items=[message]))["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}},
        {"fileData": {"fileUri": "https://example.com/paper.pdf", "mimeType": "application/pdf"}},
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_file", "file_id": "file-123"},
        {"type": "input_image", "file_id": "file-123"},
        {"type": "input_audio"},
    ],
)
def test_unsupported_input_parts(part: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        body_for(ModelRequest(model="m", items=[{"type": "message", "role": "user", "content": [part]}]))
    assert info.value.status == 400 and info.value.param == "input"


def test_sampling_parameters() -> None:
    body = body_for(
        ModelRequest(model="m", items=[user("x")], temperature=0.3, top_p=0.9, max_output_tokens=256)
    )
    assert body["generationConfig"] == {"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 256}


def test_json_schema_format() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **WEATHER_SCHEMA}
    fmt = {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}
    config = body_for(ModelRequest(model="m", items=[user("x")], text_format=fmt))["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": WEATHER_SCHEMA}
    config = body_for(ModelRequest(model="m", items=[user("x")], text_format={"type": "json_object"}))[
        "generationConfig"
    ]
    assert config == {"responseMimeType": "application/json"}
    assert "generationConfig" not in body_for(
        ModelRequest(model="m", items=[user("x")], text_format={"type": "text"})
    )
    with pytest.raises(UnsupportedParameter) as info:
        body_for(ModelRequest(model="m", items=[user("x")], text_format={"type": "grammar"}))
    assert info.value.param == "text.format"


@pytest.mark.parametrize(
    ("model", "reasoning", "expected"),
    [
        ("gemini-2.5-flash", {"effort": "low"}, {"thinkingBudget": 1024, "includeThoughts": True}),
        (
            "gemini-2.5-pro",
            {"effort": "medium", "summary": "auto"},
            {"thinkingBudget": 8192, "includeThoughts": True},
        ),
        ("gemini-2.5-flash", {"effort": "high"}, {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash", {"effort": "none"}, {"thinkingBudget": 0}),
        ("gemini-2.5-flash", {"summary": "detailed"}, {"includeThoughts": True}),
        ("gemini-3-pro-preview", {"effort": "low"}, {"thinkingLevel": "low", "includeThoughts": True}),
        (
            "models/gemini-3-flash-preview",
            {"effort": "xhigh"},
            {"thinkingLevel": "high", "includeThoughts": True},
        ),
        (
            "gemini-3-flash-preview",
            {"effort": "minimal"},
            {"thinkingLevel": "minimal", "includeThoughts": True},
        ),
    ],
)
def test_reasoning_effort(model: str, reasoning: dict[str, Any], expected: dict[str, Any]) -> None:
    body = body_for(ModelRequest(model=model, items=[user("x")], reasoning=reasoning))
    assert body["generationConfig"]["thinkingConfig"] == expected


def test_reasoning_effort_unknown_value() -> None:
    with pytest.raises(UnsupportedParameter) as info:
        body_for(ModelRequest(model="m", items=[user("x")], reasoning={"effort": "ludicrous"}))
    assert info.value.param == "reasoning.effort"


TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": WEATHER_SCHEMA},
    {"type": "function", "name": "get_time", "description": None, "parameters": None},
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "name": "get_time"}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_weather"}],
            },
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"}]},
            {"mode": "VALIDATED", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = body_for(ModelRequest(model="m", items=[user("x")], tools=TOOLS, tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "Weather.", "parametersJsonSchema": WEATHER_SCHEMA},
                {"name": "get_time", "description": ""},
            ]
        }
    ]


def test_unsupported_tools_and_choices() -> None:
    with pytest.raises(UnsupportedParameter) as info:
        body_for(ModelRequest(model="m", items=[user("x")], tools=[{"type": "file_search"}]))
    assert info.value.param == "tools"
    with pytest.raises(UnsupportedParameter) as info:
        body_for(ModelRequest(model="m", items=[user("x")], tools=TOOLS, tool_choice={"type": "mcp"}))
    assert info.value.param == "tool_choice"


def test_parallel_calls_and_outputs_grouped_by_turn() -> None:
    items = [
        user("Weather in Paris and Rome?"),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "not json"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": [
                {"type": "input_text", "text": "sunny"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            ],
        },
    ]
    body = body_for(ModelRequest(model="gemini-2.5-flash", items=items))
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            ],
        },
    ]


def test_function_call_output_without_call() -> None:
    with pytest.raises(UnsupportedParameter):
        body_for(
            ModelRequest(model="m", items=[{"type": "function_call_output", "call_id": "zz", "output": "x"}])
        )


def history(provider: str) -> list[dict[str, Any]]:
    meta = {"provider": provider}
    return [
        user("Weather?"),
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "plan"}],
            "_meta": {**meta, "thought_signature": "sig-r"},
        },
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": "{}",
            "_meta": {**meta, "thought_signature": "sig-c"},
        },
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "reasoning", "summary": [], "_meta": {**meta, "thought_signature": "sig-r2"}},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is sunny."}],
            "_meta": {**meta, "thought_signature": "sig-m"},
        },
        user("Thanks"),
    ]


def test_own_signatures_round_trip() -> None:
    body = body_for(ModelRequest(model="gemini-2.5-flash", items=history("gemini")), provider="gemini")
    model_turns = [c for c in body["contents"] if c["role"] == "model"]
    assert model_turns[0]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {}},
            "thoughtSignature": "sig-c",
        },  # own signature wins
    ]
    assert model_turns[1]["parts"] == [{"text": "It is sunny.", "thoughtSignature": "sig-m"}]
    assert "plan" not in json.dumps(body)  # thought summaries are never sent back


def test_reasoning_signature_carried_to_next_model_part() -> None:
    items = [
        user("Hi"),
        {"type": "reasoning", "summary": [], "_meta": {"provider": "gemini", "thought_signature": "sig-r"}},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]
    body = body_for(ModelRequest(model="gemini-2.5-flash", items=items))
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "sig-r"}
    ]


def test_foreign_signatures_left_out() -> None:
    body = body_for(ModelRequest(model="gemini-2.5-flash", items=history("anthropic")), provider="gemini")
    assert "thoughtSignature" not in json.dumps(body)
    assert "sig-" not in json.dumps(body)


def test_gemini3_sentinel_for_unsigned_calls_only() -> None:
    body = body_for(ModelRequest(model="gemini-3-pro-preview", items=history("openai")), provider="gemini")
    model_turns = [c for c in body["contents"] if c["role"] == "model"]
    assert model_turns[0]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": SKIP_SIGNATURE}
    ]
    assert model_turns[1]["parts"] == [{"text": "It is sunny."}]
    own = body_for(ModelRequest(model="gemini-3-pro-preview", items=history("gemini")), provider="gemini")
    assert SKIP_SIGNATURE not in json.dumps(own)


def test_artefacts_round_trip_through_adapter_owns() -> None:
    """The adapter decides ownership by its config name, end to end over the wire."""
    with FakeUpstream() as up:
        up.queue(Reply.fixture("gemini/text_stream.sse"), Reply.fixture("gemini/text_stream.sse"))
        collect(
            adapter(up, name="gemini-prod"),
            ModelRequest(model="gemini-2.5-flash", items=history("gemini-prod")),
        )
        collect(
            adapter(up, name="gemini-prod"),
            ModelRequest(model="gemini-2.5-flash", items=history("gemini-dev")),
        )
        own, foreign = up.requests[0].json(), up.requests[1].json()
    assert "sig-c" in json.dumps(own) and "sig-m" in json.dumps(own)
    assert "thoughtSignature" not in json.dumps(foreign)


def test_parallel_tool_calls_false_relays_first_call_only() -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    with FakeUpstream() as up:
        up.queue(Reply.json(frame([call, call], finish="STOP")))
        request = ModelRequest(model="m", items=[user("x")], tools=TOOLS[:1], parallel_tool_calls=False)
        chunks = collect(adapter(up), request, stream=False)
    assert [type(c) for c in chunks] == [ToolCallStart, ToolCallDelta, ItemEnd, Finish]


# --------------------------------------------------------------------------- Google Search grounding
# groundingMetadata constructed from the documented format (no recording exists):
# https://ai.google.dev/gemini-api/docs/google-search and https://ai.google.dev/api/generate-content#Segment


def grounded(parts: list[dict[str, Any]], supports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"parts": parts, "role": "model"},
                "finishReason": "STOP",
                "groundingMetadata": {
                    "webSearchQueries": ["q1", "q2", "q1"],
                    "groundingChunks": [
                        {"web": {"uri": "https://a.example", "title": "a.example"}},
                        {"web": {"uri": "https://b.example", "title": "b.example"}},
                    ],
                    "groundingSupports": supports,
                },
            }
        ]
    }


def test_grounding_offsets_are_bytes_into_the_named_part() -> None:
    """A thought part, then two text parts: ``partIndex`` 2 and byte offsets past a multi-byte
    character land on the right characters of the one answer message."""
    first, second = "Héllo wörld. ", "Ünïcode “quotes” here."
    cited = "“quotes”"
    start = second.encode().index(cited.encode())
    supports = [
        {
            "segment": {"partIndex": 2, "startIndex": start, "endIndex": start + len(cited.encode())},
            "groundingChunkIndices": [1],
        },
        {
            "segment": {"partIndex": 1, "startIndex": 0, "endIndex": 7, "text": "Héllo w"},
            "groundingChunkIndices": [0, 9],
        },
        # Offsets that do not point at the quoted text: the text is found instead.
        {"segment": {"startIndex": 0, "endIndex": 3, "text": "wörld"}, "groundingChunkIndices": [0]},
    ]
    parts = [{"text": "thinking", "thought": True}, {"text": first}, {"text": second}]
    parser = StreamParser("gemini")
    chunks = [*parser.feed(grounded(parts, supports)), *parser.finish()]
    text = first + second
    citations = [(c.url, text[c.start : c.end]) for c in chunks if isinstance(c, Citation)]
    assert citations == [
        ("https://b.example", cited),
        ("https://a.example", "Héllo w"),
        ("https://a.example", "wörld"),
    ]
    search = next(c for c in chunks if isinstance(c, WebSearchDone))
    assert search.queries == ["q1", "q2"] and [s["url"] for s in search.sources] == [
        "https://a.example",
        "https://b.example",
    ]
    kinds = [type(c).__name__ for c in chunks]
    assert kinds.index("WebSearchDone") < kinds.index("TextDelta"), "a whole body: the search first"
    assert kinds.index("Citation") < kinds.index("ItemEnd") < kinds.index("Finish")


def test_streamed_grounding_comes_last() -> None:
    parser = StreamParser("gemini")
    frames = [{"candidates": [{"content": {"parts": [{"text": "Ça va. "}]}}]}]
    frames.append(
        grounded(
            [{"text": "Très bien."}],
            [{"segment": {"startIndex": 8, "endIndex": 19}, "groundingChunkIndices": [0]}],
        )
    )
    chunks = [c for f in frames for c in parser.feed(f)] + list(parser.finish())
    kinds = [type(c).__name__ for c in chunks]
    assert kinds == ["TextDelta", "TextDelta", "Citation", "ItemEnd", "WebSearchDone", "Finish"]
    citation = chunks[2]
    assert "Ça va. Très bien."[citation.start : citation.end] == "Très bien."


def test_web_search_request_mapping() -> None:
    search_call = {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search"},
    }
    body = body_for(
        ModelRequest(model="m", items=[user("x"), search_call], tools=[*TOOLS, {"type": "web_search"}])
    )
    assert body["tools"][-1] == {"google_search": {}} and "functionDeclarations" in body["tools"][0]
    assert body["toolConfig"]["functionCallingConfig"]["mode"] == "AUTO"
    assert [c["role"] for c in body["contents"]] == ["user"], "a search has nothing to send back"
    only = body_for(
        ModelRequest(
            model="m", items=[user("x")], tools=[{"type": "web_search"}], tool_choice={"type": "web_search"}
        )
    )
    assert only["tools"] == [{"google_search": {}}] and "toolConfig" not in only
    with pytest.raises(UnsupportedParameter):
        body_for(
            ModelRequest(
                model="m",
                items=[user("x")],
                tools=[{"type": "web_search", "filters": {"allowed_domains": ["a.example"]}}],
            )
        )
