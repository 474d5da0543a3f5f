"""Anthropic Messages adapter: recorded fixtures replayed over a real socket, plus pure mapping tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from providers_app.adapters.anthropic import AnthropicAdapter, StreamParser, parse_message
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
    WebSearchStart,
)
from tests.support.adapters import (
    adapter_for,
    body_of,
    collect,
    collect_until_error,
    kinds,
    merged_usage,
    reasoning,
    texts,
    tool_calls,
    user,
)
from tests.support.upstream import FakeUpstream, Reply, fixture_json

KEY = "sk-ant-test-secret-key"


def make_adapter(up: FakeUpstream, **options: Any) -> AnthropicAdapter:
    return adapter_for(
        AnthropicAdapter, up, "/v1", name="anthropic", api_key=KEY, max_retries=0, options=options
    )


def body_for(request: ModelRequest, *, stream: bool = True, **options: Any) -> dict[str, Any]:
    return body_of(AnthropicAdapter, request, name="anthropic", stream=stream, **options)


def fixture_request(name: str) -> dict[str, Any]:
    return fixture_json(f"anthropic/{name}.request.json")


def without_server_blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fixture messages minus server-tool blocks and the fields we do not send."""
    out = []
    for m in messages:
        blocks = []
        for b in m["content"]:
            if b["type"] == "server_tool_use" or (
                b["type"] != "tool_result" and b["type"].endswith("_tool_result")
            ):
                continue
            b = {k: v for k, v in b.items() if k != "is_error"}
            blocks.append(b)
        out.append({"role": m["role"], "content": blocks})
    return out


def client_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: t[k] for k in ("name", "description", "input_schema")} for t in tools if "input_schema" in t]


EXCHANGE_TOOLS = [
    {
        "type": "function",
        "name": "get_exchange_rate",
        "description": "Look up the current exchange rate between two currencies.",
        "parameters": {
            "additionalProperties": False,
            "properties": {"from_currency": {"type": "string"}, "to_currency": {"type": "string"}},
            "required": ["from_currency", "to_currency"],
            "type": "object",
        },
    },
    {
        "type": "function",
        "name": "stock_lookup",
        "description": "Look up stock price by ticker symbol.",
        "parameters": {
            "additionalProperties": False,
            "properties": {"symbol": {"type": "string"}},
            "required": ["symbol"],
            "type": "object",
        },
    },
]


# --------------------------------------------------------------------------- fixtures replayed


def test_text_stream_fixture() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/text_stream.sse"))
        chunks = collect(make_adapter(up), ModelRequest(model="claude-3-opus-latest", items=[user("Hi")]))
        sent = up.requests[0]
    assert chunks == [
        UsageReport(input_tokens=11, cached_tokens=0),
        TextDelta("Hello"),
        TextDelta(" there"),
        TextDelta("!"),
        ItemEnd(),
        UsageReport(output_tokens=6),
        Finish("stop"),
    ]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json()
    assert body == {
        "model": "claude-3-opus-latest",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 4096,
        "stream": True,
    }


def test_thinking_stream_fixture() -> None:
    request = ModelRequest(
        model="claude-sonnet-4-0",
        items=[user("How do I cross the street?")],
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=4096,
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/thinking_stream.sse"))
        chunks = collect(make_adapter(up), request)
        body = up.requests[0].json()
    expected = fixture_request("thinking_stream")
    for key in ("model", "messages", "max_tokens", "thinking", "stream"):
        assert body[key] == expected[key], key
    assert kinds(chunks) == [
        "UsageReport",
        "ReasoningDelta",
        "ReasoningDone",
        "TextDelta",
        "ItemEnd",
        "UsageReport",
        "Finish",
    ]
    assert reasoning(chunks) == (
        "This is a straightforward question about pedestrian safety. I should provide clear, helpful advice "
        "about how to safely cross a street. This is basic safety information that could help prevent accidents."
    )
    assert all(c.kind == "summary" for c in chunks if isinstance(c, ReasoningDelta))
    done = next(c for c in chunks if isinstance(c, ReasoningDone))
    assert done.encrypted_content.startswith(
        "EvMCCkYICxgCKkCHP2cSuEdcJK"
    ) and done.encrypted_content.endswith("fQYAQ==")
    assert done.provider_data == {"type": "thinking"}
    answer = texts(chunks)
    assert answer.startswith(
        "Here are the basic steps for safely crossing the street:\n\n**At intersections with traffic lights"
    )
    assert answer.endswith("Always prioritize safety over speed when crossing streets.")
    usage = merged_usage(chunks)
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (43, 282, 0)
    assert chunks[-1] == Finish("stop")


def test_tool_call_with_server_tool_stream_fixture() -> None:
    request = ModelRequest(
        model="claude-sonnet-4-6",
        items=[user("What is the current USD to EUR exchange rate?")],
        tools=EXCHANGE_TOOLS,
        max_output_tokens=4096,
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/tool_call_with_server_tool_stream.sse"))
        chunks = collect(make_adapter(up), request)
        body = up.requests[0].json()
    expected = fixture_request("tool_call_with_server_tool_stream")
    assert body["messages"] == expected["messages"]
    assert body["tools"] == client_tools(expected["tools"])
    assert body["tool_choice"] == expected["tool_choice"] == {"type": "auto"}
    assert body["max_tokens"] == expected["max_tokens"]

    assert kinds(chunks) == [
        "UsageReport",
        "TextDelta",
        "ItemEnd",  # closed by the (skipped) server tool block
        "TextDelta",
        "ItemEnd",
        "ToolCallStart",
        "ToolCallDelta",
        "ItemEnd",
        "UsageReport",
        "Finish",
    ]
    first_end = chunks.index(ItemEnd())
    assert (
        texts(chunks[:first_end])
        == "Let me search for a tool that can provide current exchange rate information."
    )
    assert (
        texts(chunks[first_end:])
        == "I found the right tool! Let me fetch the current USD to EUR exchange rate for you."
    )
    calls = tool_calls(chunks)
    assert [(c[0], c[1]) for c in calls] == [("toolu_01EFn5wTNBYA8Reni8rbmnHT", "get_exchange_rate")]
    assert json.loads(calls[0][2]) == {"from_currency": "USD", "to_currency": "EUR"}
    assert "tool_search_tool_bm25" not in repr(chunks) and "srvtoolu" not in repr(chunks)
    usage = merged_usage(chunks)
    assert (usage.input_tokens, usage.output_tokens) == (
        1591,
        175,
    )  # message_delta's input overrides message_start's
    assert chunks[-1] == Finish("tool_calls")


def test_text_after_tool_result_stream_fixture() -> None:
    items = [
        user("What is the current USD to EUR exchange rate?"),
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Let me search for a tool that can provide current exchange rate information.",
                }
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "I found the right tool! Let me fetch the current USD to EUR exchange rate for you.",
                }
            ],
        },
        {
            "type": "function_call",
            "call_id": "toolu_01EFn5wTNBYA8Reni8rbmnHT",
            "name": "get_exchange_rate",
            "arguments": '{"from_currency": "USD", "to_currency": "EUR"}',
        },
        {
            "type": "function_call_output",
            "call_id": "toolu_01EFn5wTNBYA8Reni8rbmnHT",
            "output": [{"type": "input_text", "text": "1 USD = 0.92 EUR"}],
        },
    ]
    request = ModelRequest(model="claude-sonnet-4-6", items=items, tools=EXCHANGE_TOOLS)
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/text_after_tool_result_stream.sse"))
        chunks = collect(make_adapter(up), request)
        body = up.requests[0].json()
    expected = fixture_request("text_after_tool_result_stream")
    assert body["messages"] == without_server_blocks(expected["messages"])
    assert body["tools"] == client_tools(expected["tools"])
    assert body["max_tokens"] == 4096 and body["stream"] is True
    assert texts(chunks) == (
        "The current exchange rate is **1 USD = 0.92 EUR**. This means that for every US Dollar, you get "
        "approximately **92 Euro cents**. Keep in mind that exchange rates fluctuate constantly, so this rate "
        "may change throughout the day."
    )
    assert kinds(chunks) == ["UsageReport", "TextDelta", "ItemEnd", "UsageReport", "Finish"]
    usage = merged_usage(chunks)
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (1007, 59, 0)
    assert chunks[-1] == Finish("stop")


def test_text_nonstream_fixture() -> None:
    request = ModelRequest(
        model="claude-3-opus-latest",
        items=[user("What is the capital of France?")],
        instructions="You are a helpful assistant.\n\n",
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/text_nonstream.json"))
        chunks = collect(make_adapter(up), request, stream=False)
        body = up.requests[0].json()
    assert body == fixture_request("text_nonstream")
    assert chunks == [
        TextDelta("The capital of France is Paris."),
        ItemEnd(),
        UsageReport(input_tokens=20, output_tokens=10, cached_tokens=0),
        Finish("stop"),
    ]


def test_parallel_tool_calls_nonstream_fixture() -> None:
    expected = fixture_request("parallel_tool_calls_nonstream")
    request = ModelRequest(
        model="claude-haiku-4-5",
        items=[user("Alice, Bob, Charlie and Daisy are a family. Who is the youngest?")],
        instructions=expected["system"],
        tools=[
            {
                "type": "function",
                "name": "retrieve_entity_info",
                "description": "Get the knowledge about the given entity.",
                "parameters": expected["tools"][0]["input_schema"],
                "strict": False,
            }
        ],
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/parallel_tool_calls_nonstream.json"))
        chunks = collect(make_adapter(up), request, stream=False)
        body = up.requests[0].json()
    assert body == expected
    assert texts(chunks).startswith("I'll help you find out who is the youngest")
    calls = tool_calls(chunks)
    assert [c[0] for c in calls] == [
        "toolu_0167cfEnoQaPviGdVXA95zcu",
        "toolu_01EEe2V5HD1Ac4rKiUR4HD2T",
        "toolu_01XFyAjstT3966qvRynZyVPo",
        "toolu_013mnQZbgtK2oe3Mo3XKJsx3",
    ]
    assert {c[1] for c in calls} == {"retrieve_entity_info"}
    assert [json.loads(c[2]) for c in calls] == [{"name": n} for n in ("Alice", "Bob", "Charlie", "Daisy")]
    assert kinds(chunks) == ["TextDelta", "ItemEnd"] + ["ToolCallStart", "ToolCallDelta", "ItemEnd"] * 4 + [
        "UsageReport",
        "Finish",
    ]
    assert merged_usage(chunks) == UsageReport(input_tokens=423, output_tokens=202, cached_tokens=0)
    assert chunks[-1] == Finish("tool_calls")


def test_error_400_fixture() -> None:
    request = ModelRequest(
        model="claude-opus-4-6", items=[user("What is 2+2?")], reasoning={"effort": "xhigh"}
    )
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/error_400_invalid_request.json", status=400))
        chunks, error = collect_until_error(make_adapter(up, thinking_mode="effort"), request, stream=False)
        body = up.requests[0].json()
    assert body == fixture_request("error_400_invalid_request")
    assert chunks == []
    assert isinstance(error, UpstreamError)
    assert error.status == 400 and error.code == "upstream_invalid_request"
    assert "This model does not support effort level 'xhigh'" in error.message
    assert KEY not in error.message


# --------------------------------------------------------------------------- errors


def test_midstream_error_event() -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    with FakeUpstream() as up:
        up.queue(Reply.sse(events))
        chunks, error = collect_until_error(make_adapter(up), ModelRequest(model="m", items=[user("x")]))
    assert texts(chunks) == "Hel"
    assert isinstance(error, UpstreamError)
    assert error.status == 502 and error.code == "upstream_overloaded"
    assert "Overloaded" in error.message


def test_stream_cut_before_message_end() -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    ]
    with FakeUpstream() as up:
        up.queue(Reply.sse(events))
        chunks, error = collect_until_error(make_adapter(up), ModelRequest(model="m", items=[user("x")]))
    assert texts(chunks) == "Hel" and not any(isinstance(c, Finish) for c in chunks)
    assert isinstance(error, UpstreamError) and error.code == "upstream_disconnected"


def test_http_429_rate_limited() -> None:
    body = {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"},
    }
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=429, headers={"retry-after": "7"}))
        _, error = collect_until_error(make_adapter(up), ModelRequest(model="m", items=[user("x")]))
    assert isinstance(error, UpstreamError)
    assert error.status == 429 and error.code == "rate_limit_exceeded" and error.retry_after == 7.0
    assert "exceeded your rate limit" in error.message and KEY not in error.message


def test_http_429_retried_then_succeeds() -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    with FakeUpstream() as up:
        up.queue(
            Reply.json(body, status=429, headers={"retry-after": "0"}),
            Reply.fixture("anthropic/text_stream.sse"),
        )
        adapter = AnthropicAdapter(
            ProviderConfig(
                name="anthropic",
                adapter="anthropic",
                base_url=up.base_url + "/v1",
                api_key=KEY,
                max_retries=1,
            )
        )
        chunks = collect(adapter, ModelRequest(model="m", items=[user("x")]))
        assert len(up.requests) == 2
    assert texts(chunks) == "Hello there!"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "upstream_overloaded",
        ),
        (
            500,
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            "upstream_error",
        ),
    ],
)
def test_http_5xx_is_502(status: int, body: dict[str, Any], code: str) -> None:
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=status))
        _, error = collect_until_error(
            make_adapter(up), ModelRequest(model="m", items=[user("x")]), stream=False
        )
    assert isinstance(error, UpstreamError)
    assert error.status == 502 and error.code == code
    assert body["error"]["message"] in error.message


def test_auth_error_does_not_leak_key() -> None:
    body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    with FakeUpstream() as up:
        up.queue(Reply.json(body, status=401))
        _, error = collect_until_error(make_adapter(up), ModelRequest(model="m", items=[user("x")]))
    assert isinstance(error, UpstreamError) and error.status == 502 and error.code == "upstream_auth_failed"
    assert KEY not in error.message and KEY not in str(error)


# --------------------------------------------------------------------------- headers / url


def test_headers_and_zai_base_url() -> None:
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/text_stream.sse"))
        adapter = AnthropicAdapter(
            ProviderConfig(
                name="zai",
                adapter="anthropic",
                base_url=up.base_url + "/api/anthropic/v1/",
                api_key="zai-key",
                headers={"anthropic-beta": "foo-2025-01-01", "x-extra": "1"},
                max_retries=0,
            )
        )
        collect(adapter, ModelRequest(model="glm-4.6", items=[user("x")]))
        sent = up.requests[0]
    assert sent.path == "/api/anthropic/v1/messages"
    assert sent.headers["x-api-key"] == "zai-key"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "foo-2025-01-01" and sent.headers["x-extra"] == "1"
    assert sent.headers["content-type"] == "application/json"


# --------------------------------------------------------------------------- request mapping


def test_sampling_parameters() -> None:
    body = body_for(
        ModelRequest(model="m", items=[user("x")], temperature=0.3, top_p=0.9, max_output_tokens=100)
    )
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.9, 100)
    body = body_for(ModelRequest(model="m", items=[user("x")]), default_max_tokens=1234)
    assert body["max_tokens"] == 1234 and "temperature" not in body and "top_p" not in body
    assert "tools" not in body and "tool_choice" not in body and "system" not in body


def test_system_and_developer_messages_go_to_system() -> None:
    items = [
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
        user("one"),
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use French."}]},
        user("two"),
    ]
    body = body_for(ModelRequest(model="m", items=items, instructions="You are helpful."))
    assert body["system"] == "You are helpful.\n\nBe brief.\n\nUse French."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
    ]


def test_images() -> None:
    items = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
            ],
        }
    ]
    content = body_for(ModelRequest(model="m", items=items))["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    with pytest.raises(UnsupportedParameter) as exc:
        body_for(
            ModelRequest(
                model="m",
                items=[
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_image", "file_id": "file_1"}],
                    }
                ],
            )
        )
    assert exc.value.param == "input.file_id" and exc.value.status == 400


def test_files() -> None:
    pdf = base64.b64encode(b"%PDF-1.4 test").decode()
    txt = base64.b64encode(b"hello notes").decode()
    items = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_file",
                    "filename": "a.pdf",
                    "file_data": f"data:application/pdf;base64,{pdf}",
                },
                {"type": "input_file", "filename": "b.pdf", "file_data": pdf},
                {"type": "input_file", "file_url": "https://example.com/c.pdf"},
                {"type": "input_file", "filename": "notes.txt", "file_data": f"data:text/plain;base64,{txt}"},
            ],
        }
    ]
    content = body_for(ModelRequest(model="m", items=items))["messages"][0]["content"]
    assert content == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
            "title": "a.pdf",
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
            "title": "b.pdf",
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/c.pdf"}},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "hello notes"},
            "title": "notes.txt",
        },
    ]
    bad = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_file", "file_data": "data:image/gif;base64,R0lG"}],
        }
    ]
    with pytest.raises(UnsupportedParameter):
        body_for(ModelRequest(model="m", items=bad))


def test_text_format_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    body = body_for(ModelRequest(model="m", items=[user("x")], text_format=fmt))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in body_for(
        ModelRequest(model="m", items=[user("x")], text_format={"type": "text"})
    )
    with pytest.raises(UnsupportedParameter) as exc:
        body_for(ModelRequest(model="m", items=[user("x")], text_format=fmt), structured_outputs=False)
    assert exc.value.param == "text.format"
    with pytest.raises(UnsupportedParameter) as exc:
        body_for(ModelRequest(model="m", items=[user("x")], text_format={"type": "json_object"}))
    assert exc.value.param == "text.format"


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 4096), ("high", 16384)]
)
def test_reasoning_effort_budgets(effort: str, budget: int) -> None:
    body = body_for(ModelRequest(model="m", items=[user("x")], reasoning={"effort": effort}))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == budget + 4096


def test_reasoning_effort_edge_cases() -> None:
    assert "thinking" not in body_for(
        ModelRequest(model="m", items=[user("x")], reasoning={"effort": "none"})
    )
    assert "thinking" not in body_for(
        ModelRequest(model="m", items=[user("x")], reasoning={"summary": "auto"})
    )
    # An explicit max_output_tokens is a cap on thinking + answer: the budget shrinks under it.
    body = body_for(
        ModelRequest(model="m", items=[user("x")], reasoning={"effort": "high"}, max_output_tokens=8000)
    )
    assert body["max_tokens"] == 8000 and body["thinking"]["budget_tokens"] == 7999
    body = body_for(
        ModelRequest(model="m", items=[user("x")], reasoning={"effort": "low"}, max_output_tokens=20000)
    )
    assert body["max_tokens"] == 20000 and body["thinking"]["budget_tokens"] == 1024
    with pytest.raises(UnsupportedParameter) as exc:
        body_for(
            ModelRequest(model="m", items=[user("x")], reasoning={"effort": "low"}, max_output_tokens=500)
        )
    assert exc.value.param == "max_output_tokens"
    with pytest.raises(UnsupportedParameter) as exc:
        body_for(ModelRequest(model="m", items=[user("x")], reasoning={"effort": "ludicrous"}))
    assert exc.value.param == "reasoning.effort"
    body = body_for(
        ModelRequest(model="m", items=[user("x")], reasoning={"effort": "medium"}), thinking_mode="adaptive"
    )
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "medium"}
    body = body_for(
        ModelRequest(model="m", items=[user("x")], reasoning={"effort": "high"}),
        thinking_budgets={"high": 8000},
    )
    assert body["thinking"]["budget_tokens"] == 8000


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "name": "get_exchange_rate"}, {"type": "tool", "name": "get_exchange_rate"}),
        (
            {
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "function", "name": "stock_lookup"}],
            },
            {"type": "auto"},
        ),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "stock_lookup"}],
            },
            {"type": "tool", "name": "stock_lookup"},
        ),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": n} for n in ("a", "b")],
            },
            {"type": "any"},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = body_for(ModelRequest(model="m", items=[user("x")], tools=EXCHANGE_TOOLS, tool_choice=choice))
    assert body["tool_choice"] == expected
    assert [t["name"] for t in body["tools"]] == [
        "get_exchange_rate",
        "stock_lookup",
    ]  # all tools stay visible


def test_parallel_tool_calls_false_and_strict() -> None:
    tools = [dict(EXCHANGE_TOOLS[0], strict=True)]
    body = body_for(ModelRequest(model="m", items=[user("x")], tools=tools, parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["tools"][0]["strict"] is True
    body = body_for(
        ModelRequest(
            model="m", items=[user("x")], tools=tools, tool_choice="none", parallel_tool_calls=False
        ),
        strict_tools=False,
    )
    assert body["tool_choice"] == {"type": "none"} and "strict" not in body["tools"][0]


def test_tool_history_merging() -> None:
    items = [
        user("weather in Paris and Rome?"),
        {"type": "function_call", "call_id": "toolu_1", "name": "weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "toolu_2", "name": "weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"},
        user("and also tell me a joke"),
        {"type": "function_call_output", "call_id": "toolu_2", "output": "rainy"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris is sunny."}],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No jokes."}]},
        user("ok"),
    ]
    assert body_for(ModelRequest(model="m", items=items))["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
                {"type": "text", "text": "and also tell me a joke"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Paris is sunny."}, {"type": "text", "text": "No jokes."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "ok"}]},
    ]


def test_reasoning_round_trip_own_and_foreign() -> None:
    items = [
        user("q"),
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Let me think."}],
            "encrypted_content": "SIG123",
            "_meta": {"provider": "anthropic", "type": "thinking"},
        },
        {
            "type": "reasoning",
            "summary": [],
            "encrypted_content": "REDACTED",
            "_meta": {"provider": "anthropic", "type": "redacted_thinking"},
        },
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "foreign"}],
            "encrypted_content": "gAAAA",
            "_meta": {"provider": "openai"},
        },
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "no meta"}],
            "encrypted_content": "x",
        },
        {
            "type": "function_call",
            "call_id": "toolu_9",
            "name": "f",
            "arguments": "{}",
            "_meta": {"provider": "anthropic"},
        },
        {"type": "function_call_output", "call_id": "toolu_9", "output": "done"},
    ]
    messages = body_for(ModelRequest(model="m", items=items))["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "SIG123"},
            {"type": "redacted_thinking", "data": "REDACTED"},
            {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        ],
    }
    assert "gAAAA" not in json.dumps(messages) and "foreign" not in json.dumps(messages)


def test_foreign_only_assistant_turn_is_dropped() -> None:
    items = [
        user("a"),
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA", "_meta": {"provider": "openai"}},
        user("b"),
    ]
    assert body_for(ModelRequest(model="m", items=items))["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_thinking_stream_round_trips_into_next_request() -> None:
    """Chunks of a thinking stream, stored as a reasoning item, come back as the same thinking block."""
    with FakeUpstream() as up:
        up.queue(Reply.fixture("anthropic/thinking_stream.sse"))
        chunks = collect(
            make_adapter(up), ModelRequest(model="m", items=[user("q")], reasoning={"effort": "low"})
        )
    done = next(c for c in chunks if isinstance(c, ReasoningDone))
    item = {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": reasoning(chunks)}],
        "encrypted_content": done.encrypted_content,
        "_meta": {"provider": "anthropic", **(done.provider_data or {})},
    }
    answer = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": texts(chunks)}],
    }
    messages = body_for(ModelRequest(model="m", items=[user("q"), item, answer, user("thanks")]))["messages"]
    thinking = messages[1]["content"][0]
    assert thinking == {
        "type": "thinking",
        "thinking": reasoning(chunks),
        "signature": done.encrypted_content,
    }


# --------------------------------------------------------------------------- parsing (pure)


def test_stream_parser_redacted_thinking_cache_and_whole_tool_input() -> None:
    parser = StreamParser("anthropic")
    events = [
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 10,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 5,
                    "output_tokens": 1,
                }
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "redacted_thinking", "data": "ENC=="},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_x", "name": "f", "input": {"a": 1}},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_y", "name": "g", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 2},
        {"type": "ping"},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 50}},
        {"type": "message_stop"},
    ]
    chunks = [c for ev in events for c in parser.feed(ev)]
    assert chunks == [
        UsageReport(input_tokens=115, cached_tokens=100),
        ReasoningDone(encrypted_content="ENC==", provider_data={"type": "redacted_thinking"}),
        ToolCallStart(call_id="toolu_x", name="f"),
        ToolCallDelta('{"a":1}'),
        ItemEnd(),
        ToolCallStart(call_id="toolu_y", name="g"),
        ToolCallDelta("{}"),
        ItemEnd(),
        UsageReport(output_tokens=50),
        Finish("max_output_tokens"),
    ]


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "max_output_tokens"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop: str, reason: str) -> None:
    chunks = parse_message(
        {"content": [], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 0}}, "anthropic"
    )
    assert chunks[-1] == Finish(reason)  # type: ignore[arg-type]


def test_parse_message_thinking_blocks() -> None:
    body = {
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "SIG"},
            {"type": "redacted_thinking", "data": "RED"},
            {"type": "text", "text": "Answer."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "More."},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 7, "output_tokens": 9},
    }
    assert parse_message(body, "anthropic") == [
        ReasoningDelta("hmm", kind="summary"),
        ReasoningDone(encrypted_content="SIG", provider_data={"type": "thinking"}),
        ReasoningDone(encrypted_content="RED", provider_data={"type": "redacted_thinking"}),
        TextDelta("Answer."),
        ItemEnd(),
        WebSearchDone(
            call_id="srvtoolu_1",
            queries=["x"],
            provider_data={"server_blocks": body["content"][3:5]},
        ),
        TextDelta("More."),
        ItemEnd(),
        UsageReport(input_tokens=10, output_tokens=9, cached_tokens=7),
        Finish("stop"),
    ]


def test_stream_error_event_kinds() -> None:
    parser = StreamParser("anthropic")
    with pytest.raises(UpstreamError) as exc:
        parser.feed({"type": "error", "error": {"type": "api_error", "message": "boom"}})
    assert exc.value.status == 502 and exc.value.code == "upstream_error" and "boom" in exc.value.message


@pytest.mark.parametrize(
    ("filename", "accepted"),
    [("notes.md", True), ("report.pdf", True), ("data.xyz", False), ("sheet.xlsx", False), (None, True)],
)
def test_file_type_from_the_filename(filename: str | None, accepted: bool) -> None:
    """Bare base64 takes its type from the filename: known text and PDF go, anything else is refused
    (an unknown extension is not taken for a PDF); no filename at all means a PDF."""
    part: dict[str, Any] = {"type": "input_file", "file_data": base64.b64encode(b"hello").decode()}
    if filename:
        part["filename"] = filename
    request = ModelRequest(model="m", items=[{"type": "message", "role": "user", "content": [part]}])
    if accepted:
        (block,) = body_for(request)["messages"][0]["content"]
        assert block["type"] == "document"
    else:
        with pytest.raises(UnsupportedParameter) as refused:
            body_for(request)
        assert refused.value.param == "input.file_data"


# --------------------------------------------------------------------------- web search (server tool)
# Stream events constructed from the documented format (no recording exists):
# https://platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool and
# https://platform.claude.com/docs/en/build-with-claude/citations (citations_delta).

RESULT = {
    "type": "web_search_result",
    "url": "https://example.com/q",
    "title": "Quantum news",
    "encrypted_content": "ENC-1",
    "page_age": "May 1, 2025",
}
WEB_CITATION = {
    "type": "web_search_result_location",
    "url": "https://example.com/q",
    "title": "Quantum news",
    "encrypted_index": "IDX",
    "cited_text": "…",
}


def search_events(second_search: bool = False) -> list[dict[str, Any]]:
    def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_start", "index": index, "content_block": block}

    def delta(index: int, **d: Any) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": d}

    def stop(index: int) -> dict[str, Any]:
        return {"type": "content_block_stop", "index": index}

    query = '{"query":"quantum 2025"}'
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 5}}},
        start(0, {"type": "server_tool_use", "id": "srv_1", "name": "web_search"}),
        delta(0, type="input_json_delta", partial_json=query[:9]),
        delta(0, type="input_json_delta", partial_json=query[9:]),
        stop(0),
    ]
    if second_search:  # a second search before the first's result (they run in parallel)
        events += [
            start(
                9, {"type": "server_tool_use", "id": "srv_2", "name": "web_search", "input": {"query": "b"}}
            )
        ]
        events += [
            stop(9),
            start(10, {"type": "web_search_tool_result", "tool_use_id": "srv_2", "content": []}),
        ]
        events += [stop(10)]
    events += [
        start(1, {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": [RESULT]}),
        stop(1),
        start(2, {"type": "text", "text": "Naïve lead: "}),
        stop(2),
        start(3, {"type": "text", "text": ""}),
        delta(3, type="citations_delta", citation=WEB_CITATION),
        delta(3, type="text_delta", text="qubits "),
        delta(3, type="text_delta", text="doubled."),
        stop(3),
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    return events


def test_web_search_stream_becomes_a_search_and_a_citation() -> None:
    parser = StreamParser("anthropic")
    chunks = [c for event in search_events() for c in parser.feed(event)]
    use = {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"query": "quantum 2025"}}
    result = {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": [RESULT]}
    lead = len("Naïve lead: ")
    assert chunks == [
        UsageReport(input_tokens=5, cached_tokens=0),
        WebSearchStart("srv_1"),
        WebSearchDone(
            call_id="srv_1",
            queries=["quantum 2025"],
            sources=[{"url": RESULT["url"], "title": RESULT["title"]}],
            provider_data={"server_blocks": [use, result]},
        ),
        TextDelta("Naïve lead: "),
        TextDelta("qubits "),
        TextDelta("doubled."),
        Citation(RESULT["url"], "Quantum news", lead, lead + len("qubits doubled.")),
        ItemEnd(),
        UsageReport(output_tokens=9),
        Finish("stop"),
    ]


def test_a_search_started_while_another_waits_is_opened_with_its_result() -> None:
    parser = StreamParser("anthropic")
    chunks = [c for event in search_events(second_search=True) for c in parser.feed(event)]
    opened = [c.call_id for c in chunks if isinstance(c, WebSearchStart)]
    done = [(c.call_id, c.queries) for c in chunks if isinstance(c, WebSearchDone)]
    assert opened == ["srv_1"] and done == [("srv_2", ["b"]), ("srv_1", ["quantum 2025"])]


def test_web_search_request_mapping() -> None:
    tool = {
        "type": "web_search_preview",
        "user_location": {"type": "approximate"},  # no place: not sent
        "search_context_size": "high",
    }
    request = ModelRequest(
        model="m",
        items=[user("x")],
        tools=[tool, {"type": "web_search"}],
        tool_choice={"type": "web_search_preview"},
        extra={"max_tool_calls": None},
    )
    body = body_for(request)
    assert body["tools"] == [{"type": "web_search_20250305", "name": "web_search"}], "one server tool"
    assert body["tool_choice"] == {"type": "tool", "name": "web_search"}


def test_web_search_items_go_back_to_their_provider_only() -> None:
    blocks = [
        {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"query": "q"}},
        {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": [RESULT]},
    ]
    search = {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}}
    answer = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A."}]}
    for meta, expected in (
        (
            {"provider": "anthropic", "server_blocks": blocks},
            ["server_tool_use", "web_search_tool_result", "text"],
        ),
        ({"provider": "other", "server_blocks": blocks}, ["text"]),
        (None, ["text"]),
    ):
        item = {**search, "_meta": meta} if meta else search
        body = body_for(ModelRequest(model="m", items=[user("q"), item, answer]))
        assert [b["type"] for b in body["messages"][1]["content"]] == expected
    assert (
        body_for(
            ModelRequest(
                model="m",
                items=[user("q"), {**search, "_meta": {"provider": "anthropic", "server_blocks": blocks}}],
            )
        )["messages"][1]["content"]
        == blocks
    )
