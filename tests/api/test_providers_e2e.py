"""Every provider behind one API, proved through the running server (daphne + fake upstream).

* Recorded fixtures of Anthropic, Gemini, Ollama and Chat Completions replayed through
  ``POST /v1/responses`` (OpenAI's are in ``test_openai_adapter.py``): spec-valid events in the
  expected order, and the upstream request compared with the recorded one.
* The digest's compliance scenarios with the model routed to each provider in turn, the upstream
  scripted with that provider's own wire format (``tests/support/wire.py``).
* A cross-provider chain Anthropic -> OpenAI -> Gemini, routing, unsupported fields, upstream
  errors, key hygiene, retries and timeouts.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.api import create, output_text, stream, types_of
from tests.support.replay import (
    CALL,
    HEAD,
    RAW_REASONING,
    SUMMARY,
    TEXT,
    Case,
    all_fixtures,
    compare_request,
    run_case,
)
from tests.support.spec import assert_valid_event, assert_valid_response
from tests.support.upstream import Reply
from tests.support.wire import ALL_WIRES, AnthropicWire, GeminiWire, OpenAIWire, Wire

DONE = ["response.completed"]


def _calls(resource):
    return [
        (i["name"], json.loads(i["arguments"])) for i in resource["output"] if i["type"] == "function_call"
    ]


def _expect(check):
    """A resource check written as a boolean expression with a readable failure."""

    def run(resource):
        assert check(resource), json.dumps(resource.get("output") or resource, indent=1)[:3000]

    return run


def _tools_from_anthropic(fixture_tools):
    return [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description"),
            "parameters": t["input_schema"],
        }
        for t in fixture_tools
        if t.get("type") in (None, "custom")
    ]


def _tools_from_chat(fixture_tools):
    return [
        {
            "type": "function",
            "name": t["function"]["name"],
            "description": t["function"].get("description"),
            "parameters": t["function"].get("parameters"),
            **({"strict": True} if t["function"].get("strict") else {}),
        }
        for t in fixture_tools
    ]


def _recorded(name):
    from tests.support.replay import recorded_request

    return recorded_request(name)


# --------------------------------------------------------------------------- recorded fixtures

EXCHANGE_TOOLS = _tools_from_anthropic(_recorded("anthropic/tool_call_with_server_tool_stream.sse")["tools"])
ENTITY_SYSTEM = _recorded("anthropic/parallel_tool_calls_nonstream.json")["system"]

FIXTURE_CASES = [
    # ---- Anthropic
    Case(
        "anthropic/text_nonstream.json",
        "claude-3-opus-latest",
        {"instructions": "You are a helpful assistant.\n\n", "input": "What is the capital of France?"},
        stream=False,
        shape=HEAD + TEXT + DONE,
        check=_expect(
            lambda r: output_text(r) == "The capital of France is Paris." and r["usage"]["input_tokens"] == 20
        ),
    ),
    Case(
        "anthropic/text_stream.sse",
        "claude-3-opus-latest",
        {"input": "Hello"},
        stream=True,
        shape=HEAD + TEXT + DONE,
        check=_expect(lambda r: output_text(r) == "Hello there!" and r["usage"]["output_tokens"] == 6),
    ),
    Case(
        "anthropic/parallel_tool_calls_nonstream.json",
        "claude-haiku-4-5",
        {
            "instructions": ENTITY_SYSTEM,
            "input": "Alice, Bob, Charlie and Daisy are a family. Who is the youngest?",
            "tools": _tools_from_anthropic(
                _recorded("anthropic/parallel_tool_calls_nonstream.json")["tools"]
            ),
        },
        stream=False,
        shape=HEAD + TEXT + CALL * 4 + DONE,
        check=_expect(
            lambda r: (
                [a["name"] for _, a in _calls(r)] == ["Alice", "Bob", "Charlie", "Daisy"]
                and r["usage"]["input_tokens"] == 423
            )
        ),
    ),
    Case(
        "anthropic/thinking_stream.sse",
        "claude-sonnet-4-0",
        {"input": "How do I cross the street?", "reasoning": {"effort": "low"}, "max_output_tokens": 4096},
        stream=True,
        shape=HEAD + SUMMARY + TEXT + DONE,
        check=_expect(
            lambda r: (
                r["output"][0]["type"] == "reasoning"
                and r["output"][0]["encrypted_content"]
                and r["output"][0]["summary"][0]["text"]
            )
        ),
    ),
    Case(
        "anthropic/tool_call_with_server_tool_stream.sse",
        "claude-sonnet-4-6",
        {"input": "What is the current USD to EUR exchange rate?", "tools": EXCHANGE_TOOLS},
        stream=True,
        shape=HEAD + TEXT + TEXT + CALL + DONE,
        check=_expect(
            lambda r: (
                _calls(r) == [("get_exchange_rate", {"from_currency": "USD", "to_currency": "EUR"})]
                and not any(
                    i["type"] == "function_call" and i["name"].startswith("tool_search") for i in r["output"]
                )
            )
        ),
        differs={
            "tools": "defer_loading and the provider's own tool_search server tool cannot be expressed in Open Responses"
        },
    ),
    Case(
        "anthropic/text_after_tool_result_stream.sse",
        "claude-sonnet-4-6",
        {
            "input": [
                {"role": "user", "content": "What is the current USD to EUR exchange rate?"},
                {
                    "role": "assistant",
                    "content": "Let me search for a tool that can provide current exchange rate information.",
                },
                {
                    "role": "assistant",
                    "content": "I found the right tool! Let me fetch the current USD to EUR exchange rate for you.",
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
            ],
            "tools": EXCHANGE_TOOLS,
        },
        stream=True,
        shape=HEAD + TEXT + DONE,
        check=_expect(lambda r: "0.92" in output_text(r)),
        differs={"tools": "defer_loading and the tool_search server tool are not expressible"},
    ),
    Case(
        "anthropic/error_400_invalid_request.json",
        "opus-effort",
        {"input": "What is 2+2?", "reasoning": {"effort": "xhigh"}},
        stream=False,
        status=400,
        check=_expect(
            lambda b: (
                "does not support effort level 'xhigh'" in b["error"]["message"]
                and b["error"]["code"] == "upstream_invalid_request"
            )
        ),
    ),
    # ---- Gemini
    Case(
        "gemini/text_nonstream.json",
        "gemini-2.5-flash",
        {"instructions": "You are a chatbot.", "input": "Hello!"},
        stream=False,
        shape=HEAD + TEXT + DONE,
        check=_expect(
            lambda r: (
                output_text(r) == "Hello! How can I help you today?"
                and r["usage"]["output_tokens"] == 9 + 34
                and r["usage"]["output_tokens_details"]["reasoning_tokens"] == 34
            )
        ),
    ),
    Case(
        "gemini/text_stream.sse",
        "gemini-2.0-flash-exp",
        {
            "instructions": "You are a helpful chatbot.",
            "input": "What is the capital of France?",
            "temperature": 0.0,
        },
        stream=True,
        shape=HEAD + TEXT + DONE,
        check=_expect(lambda r: output_text(r) == "The capital of France is Paris.\n"),
    ),
    Case(
        "gemini/thinking_stream.sse",
        "gemini-2.5-pro",
        {
            "instructions": "You are a helpful assistant.",
            "input": "How do I cross the street?",
            "reasoning": {"summary": "auto"},
            "tools": [{"type": "function", "name": "dummy", "description": ""}],
        },
        stream=True,
        shape=HEAD + SUMMARY + TEXT + DONE,
        check=_expect(
            lambda r: (
                r["output"][0]["summary"][0]["text"].startswith("**Clarifying User Goals**")
                and "stay alert" in output_text(r)
            )
        ),
        differs={"toolConfig": "we always send the (default) AUTO mode"},
    ),
    Case(
        "gemini/function_call_nonstream.json",
        "gemini-2.5-flash",
        {
            "input": "What's the weather in Paris?",
            "tool_choice": "auto",
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Get the current weather for a city.",
                    "parameters": {
                        "additionalProperties": False,
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                        "type": "object",
                    },
                }
            ],
        },
        stream=False,
        shape=HEAD + CALL + DONE,
        check=_expect(
            lambda r: (
                _calls(r) == [("get_weather", {"city": "Paris"})]
                and r["output"][0]["call_id"].startswith("call_")
            )
        ),
    ),
    Case(
        "gemini/function_call_stream.sse",
        "gemini-2.0-flash",
        {
            "instructions": "You are a helpful chatbot.",
            "input": "What is the temperature of the capital of France?",
            "tools": [
                {
                    "type": "function",
                    "name": d["name"],
                    "description": d["description"],
                    "parameters": d["parameters_json_schema"],
                }
                for d in _recorded("gemini/function_call_stream.sse")["tools"][0]["functionDeclarations"]
            ],
        },
        stream=True,
        shape=HEAD + CALL + DONE,
        check=_expect(
            lambda r: (
                _calls(r) == [("get_capital", {"country": "France"})]
                and r["output"][0]["call_id"].startswith("call_")
            )
        ),
        differs={"toolConfig": "we always send the (default) AUTO mode"},
    ),
    Case(
        "gemini/max_tokens_nonstream.json",
        "gemini-2.5-flash",
        {
            "instructions": "You are a helpful chatbot.",
            "input": "What is the capital of France?",
            "max_output_tokens": 16,
            "reasoning": {"effort": "none"},
        },
        stream=False,
        status="incomplete",
        shape=HEAD
        + TEXT[:3]
        + [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ],
        check=_expect(
            lambda r: (
                r["incomplete_details"] == {"reason": "max_output_tokens"}
                and r["output"][0]["status"] == "incomplete"
            )
        ),
        # The spec's minimum max_output_tokens is 16; the recording used 5.
        expect={"generationConfig": {"maxOutputTokens": 16, "thinkingConfig": {"thinkingBudget": 0}}},
    ),
    Case(
        "gemini/text_after_function_response_stream.sse",
        "gemini-2.0-flash",
        {
            "instructions": "You are a helpful chatbot.",
            "input": [
                {"role": "user", "content": "What is the temperature of the capital of France?"},
                {
                    "type": "function_call",
                    "call_id": "call_capital",
                    "name": "get_capital",
                    "arguments": '{"country": "France"}',
                },
                {"type": "function_call_output", "call_id": "call_capital", "output": "Paris"},
                {
                    "type": "function_call",
                    "call_id": "call_temp",
                    "name": "get_temperature",
                    "arguments": '{"city": "Paris"}',
                },
                {"type": "function_call_output", "call_id": "call_temp", "output": "30°C"},
            ],
            "tools": [
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
        },
        stream=True,
        shape=HEAD + TEXT + DONE,
        check=_expect(lambda r: output_text(r) == "The temperature in Paris is 30°C.\n"),
        # The recording's toolConfig is absent (we send AUTO, the API default) and its generationConfig empty.
        differs={"toolConfig": "we always send the (default) AUTO mode"},
    ),
    Case(
        "gemini/error_404_not_found.json",
        "gemini-3.6-flahs",
        {"input": "hello"},
        stream=False,
        status=404,
        check=_expect(
            lambda b: (
                b["error"]["code"] == "model_not_found"
                and "gemini-3.6-flahs is not found" in b["error"]["message"]
            )
        ),
    ),
    # ---- Ollama
    Case(
        "ollama/text_nonstream.json",
        "llama3",
        {"input": "Tell me a joke about OpenTelemetry"},
        stream=False,
        shape=HEAD + TEXT + DONE,
        check=_expect(
            lambda r: (
                output_text(r).startswith("A joke about OpenTelemetry!")
                and (r["usage"]["input_tokens"], r["usage"]["output_tokens"]) == (17, 66)
            )
        ),
    ),
    Case(
        "ollama/text_stream.ndjson",
        "llama3",
        {"input": "Tell me a joke about OpenTelemetry"},
        stream=True,
        shape=HEAD + TEXT + DONE,
        check=_expect(lambda r: output_text(r).startswith("Why did") and r["usage"]["output_tokens"] == 50),
    ),
    Case(
        "ollama/tool_call_nonstream.json",
        "llama3.2",
        {
            "input": "What is the weather today in Paris?",
            "tools": _tools_from_chat(_recorded("ollama/tool_call_nonstream.json")["tools"]),
        },
        stream=False,
        shape=HEAD + CALL + DONE,
        check=_expect(
            lambda r: _calls(r) == [("get_current_weather", {"format": "celsius", "location": "Paris, FR"})]
        ),
    ),
    Case(
        "ollama/tool_call_stream.ndjson",
        "llama3.2",
        {
            "input": "what is the weather in tokyo?",
            "tools": _tools_from_chat(_recorded("ollama/tool_call_stream.ndjson")["tools"]),
        },
        stream=True,
        shape=HEAD + CALL + DONE,
        check=_expect(lambda r: _calls(r) == [("get_weather", {"city": "Tokyo"})]),
    ),
    Case(
        "ollama/generate_midstream_error.ndjson",
        "llama3",
        {"input": "Is the sky blue?"},
        stream=True,
        status=502,
        check=_expect(lambda b: "an error was encountered while running the model" in b["error"]["message"]),
    ),
    # ---- Chat Completions (OpenAI and compatible servers), routed chat-* -> local-chat
    Case(
        "openai_chat/text_nonstream.json",
        "chat-o3-mini",
        {"input": [{"type": "message", "role": "system", "content": "You are a potato."}]},
        stream=False,
        shape=HEAD + TEXT + DONE,
        check=_expect(
            lambda r: (
                output_text(r).startswith("That's right\u2014I am a potato!")
                and r["usage"]["output_tokens_details"]["reasoning_tokens"] == 768
            )
        ),
    ),
    Case(
        "openai_chat/text_stream.sse",
        "chat-gpt-4o",
        {"input": "What is the capital of Mexico?"},
        stream=True,
        shape=HEAD + TEXT + DONE,
        check=_expect(
            lambda r: (
                output_text(r) == "The capital of Mexico is Mexico City." and r["usage"]["total_tokens"] > 0
            )
        ),
    ),
    Case(
        "openai_chat/tool_call_nonstream.json",
        "chat-gpt-4o",
        {
            "input": "What is the largest city in the user country?",
            "tool_choice": "required",
            "tools": _tools_from_chat(_recorded("openai_chat/tool_call_nonstream.json")["tools"]),
        },
        stream=False,
        shape=HEAD + CALL + DONE,
        check=_expect(
            lambda r: (
                _calls(r) == [("get_user_country", {})]
                and r["output"][0]["call_id"] == "call_iXFttys57ap0o16JSlC8yhYo"
            )
        ),
    ),
    Case(
        "openai_chat/parallel_tool_calls_stream.sse",
        "chat-gpt-4o",
        {
            "input": "Tell me: the capital of the country; the weather there; the product name",
            "tool_choice": "required",
            "tools": _tools_from_chat(_recorded("openai_chat/parallel_tool_calls_stream.sse")["tools"]),
        },
        stream=True,
        shape=HEAD + CALL + CALL + DONE,
        check=_expect(lambda r: _calls(r) == [("get_country", {}), ("get_product_name", {})]),
    ),
    Case(
        "openai_chat/groq_midstream_error.sse",
        "chat-gpt-oss-120b",
        {
            "input": [
                {
                    "role": "system",
                    "content": "Be concise. Never use pretty double quotes, just regular ones.",
                },
                {
                    "role": "user",
                    "content": _recorded("openai_chat/groq_midstream_error.sse")["messages"][1]["content"],
                },
            ],
            "tools": _tools_from_chat(_recorded("openai_chat/groq_midstream_error.sse")["tools"]),
            "tool_choice": "auto",
        },
        stream=True,
        status="failed",
        shape=HEAD
        + RAW_REASONING[:3]
        + [
            "response.reasoning.done",
            "response.content_part.done",
            "response.output_item.done",
            "error",
            "response.failed",
        ],
        check=_expect(lambda r: "Tool call validation failed" in r["error"]["message"]),
        differs={"stream_options": "we ask for the usage chunk; the Groq recording did not"},
    ),
    Case(
        "openai_chat/error_404_model_not_found.json",
        "chat-gpt-5.2-proo",
        {"input": "hello"},
        stream=False,
        status=404,
        check=_expect(
            lambda b: (
                b["error"]["code"] == "model_not_found"
                and "does not exist or you do not have access" in b["error"]["message"]
            )
        ),
    ),
]

UPSTREAM_PATHS = {
    "anthropic": "/v1/messages",
    "ollama": "/api/chat",
    "openai_chat": "/v1/chat/completions",
}


def test_every_fixture_has_a_case():
    from tests.api.test_openai_adapter import CASES as OPENAI_CASES

    covered = sorted(c.fixture for c in FIXTURE_CASES + OPENAI_CASES)
    assert covered == all_fixtures()


@pytest.mark.parametrize("case", FIXTURE_CASES, ids=lambda c: c.id)
def test_fixture_through_server(http, upstream, case):
    result, events, sent = run_case(http, upstream, case)
    family = case.fixture.split("/")[0]
    if family == "gemini":
        method = "streamGenerateContent?alt=sse" if case.stream else "generateContent"
        assert sent.path == f"/v1beta/models/{case.model}:{method}"
        assert sent.headers["x-goog-api-key"] == "gemini-test-secret-0003"
    else:
        assert sent.path == UPSTREAM_PATHS[family]
    if family == "anthropic":
        assert sent.headers["x-api-key"] == "sk-ant-test-secret-0002"
        assert sent.headers["anthropic-version"] == "2023-06-01"
    if family == "openai_chat":
        assert sent.headers["authorization"] == "Bearer sk-local-chat-secret-0004"
        assert sent.json()["model"] == case.model, "routes without 'model' keep the requested name"
    compare_request(case, sent)
    for event in events:
        assert_valid_event(event)


# --------------------------------------------------------------------------- compliance scenarios per provider

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
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF").decode()
PATHS = {
    "openai": "/v1/responses",
    "anthropic": "/v1/messages",
    "zai": "/zai/v1/messages",
    "ollama": "/api/chat",
    "local-chat": "/v1/chat/completions",
}
AUTH = {
    "openai": ("authorization", "Bearer sk-test-openai-secret-0001"),
    "anthropic": ("x-api-key", "sk-ant-test-secret-0002"),
    "zai": ("x-api-key", "zai-test-secret-0005"),
    "gemini": ("x-goog-api-key", "gemini-test-secret-0003"),
    "local-chat": ("authorization", "Bearer sk-local-chat-secret-0004"),
}
wires = pytest.mark.parametrize("wire", ALL_WIRES, ids=lambda w: w.provider)


def sent(upstream, wire: Wire, index: int = -1, *, stream: bool | None = None) -> dict:
    """The body of an upstream request, after checking its path, key and mode."""
    recorded = upstream.requests[index]
    if wire.provider == "gemini":
        assert recorded.path.startswith(f"/v1beta/models/{wire.model}:"), recorded.path
    else:
        assert recorded.path == PATHS[wire.provider], recorded.path
    header = AUTH.get(wire.provider)
    if header:
        assert recorded.headers.get(header[0]) == header[1]
    else:
        assert "authorization" not in recorded.headers
    assert wire.sent_model(recorded) == wire.model
    if stream is not None:
        assert wire.is_stream(recorded) is stream
    return recorded.json()


def sdk_raw(openai_client, **kwargs):
    """Call the SDK and return (parsed SDK object, raw JSON validated against the spec)."""
    raw = openai_client.responses.with_raw_response.create(**kwargs)
    data = raw.http_response.json()
    assert_valid_response(data)
    return raw.parse(), data


@wires
def test_basic_response(http, upstream, wire):
    upstream.queue(wire.text("Hello there, friend!", stream=False))
    data = create(
        http,
        {
            "model": wire.model,
            "input": [{"type": "message", "role": "user", "content": "Say hello in exactly 3 words."}],
            "stream": False,
        },
    )
    assert data["status"] == "completed" and output_text(data) == "Hello there, friend!"
    assert data["model"] == wire.model and data["usage"]["total_tokens"] > 0
    body = sent(upstream, wire, stream=False)
    assert wire.roles(body) == ["user"] and wire.texts(body) == ["Say hello in exactly 3 words."]


@wires
def test_streaming_response_with_sdk(openai_client, upstream, wire):
    upstream.queue(wire.text("1, 2, 3, 4, 5", stream=True))
    events = list(
        openai_client.responses.create(
            model=wire.model,
            input=[{"type": "message", "role": "user", "content": "Count from 1 to 5."}],
            stream=True,
        )
    )
    dumped = [json.loads(e.model_dump_json(exclude_unset=True, warnings=False)) for e in events]
    for index, event in enumerate(dumped):
        assert_valid_event(event)
        assert event["sequence_number"] == index
    from tests.support.replay import shape

    assert shape(dumped) == HEAD + TEXT + DONE
    assert events[-1].response.output_text == "1, 2, 3, 4, 5"
    sent(upstream, wire, stream=True)


@wires
def test_system_prompt(http, upstream, wire):
    upstream.queue(wire.text("Ahoy, matey!", stream=False))
    data = create(
        http,
        {
            "model": wire.model,
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
    body = sent(upstream, wire)
    assert wire.system(body) == "You are a pirate. Always respond in pirate speak."
    assert wire.roles(body) == ["user"]


@wires
def test_tool_calling_with_sdk(openai_client, upstream, wire):
    upstream.queue(wire.tool_call("get_weather", {"location": "San Francisco"}, stream=False))
    response, data = sdk_raw(
        openai_client,
        model=wire.model,
        input="What's the weather like in San Francisco?",
        tools=[WEATHER_TOOL],
    )
    calls = [i for i in response.output if i.type == "function_call"]
    assert (
        len(calls) == 1
        and calls[0].name == "get_weather"
        and json.loads(calls[0].arguments) == {"location": "San Francisco"}
    )
    assert calls[0].call_id and calls[0].id.startswith("fc_") and calls[0].status == "completed"
    assert data["status"] == "completed"
    assert wire.tool_names(sent(upstream, wire)) == ["get_weather"]


@wires
def test_tool_calling_streaming(http, upstream, wire):
    upstream.queue(wire.tool_call("get_weather", {"location": "San Francisco"}, stream=True))
    events = stream(
        http,
        {"model": wire.model, "input": "What's the weather like in San Francisco?", "tools": [WEATHER_TOOL]},
    )
    kinds = types_of(events)
    added = next(
        e
        for e in events
        if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
    )
    assert (
        added["item"]["arguments"] == ""
        and added["item"]["name"] == "get_weather"
        and added["item"]["status"] == "in_progress"
    )
    assert "response.function_call_arguments.delta" in kinds
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert json.loads(deltas) == json.loads(done["arguments"]) == {"location": "San Francisco"}
    item_done = next(
        e for e in events if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    )
    assert item_done["item"]["arguments"] == done["arguments"] and item_done["item"]["status"] == "completed"
    assert events[-1]["response"]["status"] == "completed"
    sent(upstream, wire, stream=True)


@wires
def test_function_call_roundtrip(http, upstream, wire):
    upstream.queue(
        wire.tool_call("get_weather", {"location": "San Francisco"}, stream=False),
        wire.text("It is 21 degrees and sunny.", stream=False),
    )
    first = create(
        http,
        {"model": wire.model, "input": "What's the weather like in San Francisco?", "tools": [WEATHER_TOOL]},
    )
    call = next(i for i in first["output"] if i["type"] == "function_call")
    second = create(
        http,
        {
            "model": wire.model,
            "previous_response_id": first["id"],
            "tools": [WEATHER_TOOL],
            "input": [
                {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temperature": 21}'}
            ],
        },
    )
    assert second["status"] == "completed" and output_text(second) == "It is 21 degrees and sunny."
    body = sent(upstream, wire)
    assert wire.tool_results(body) == ['{"temperature": 21}'], body
    assert wire.roles(body)[0] == "user"


@wires
def test_image_input(http, upstream, wire):
    upstream.queue(wire.text("A single red pixel.", stream=False))
    data = create(
        http,
        {
            "model": wire.model,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is in this image?"},
                        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                    ],
                }
            ],
        },
    )
    assert data["status"] == "completed"
    assert wire.images(sent(upstream, wire)) == 1


@wires
def test_file_input(http, upstream, wire):
    body = {
        "model": wire.model,
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
    }
    if not wire.takes_files:
        error = create(http, body, expect=400)["error"]
        assert error["code"] == "unsupported_parameter" and error["type"] == "invalid_request_error"
        assert "input" in error["param"] and "file" in error["message"].lower()
        assert upstream.requests == [], "refused before any upstream call"
        return
    upstream.queue(wire.text("An empty PDF.", stream=False))
    data = create(http, body)
    assert data["status"] == "completed"
    assert wire.files(sent(upstream, wire)) == 1


@wires
def test_multi_turn(http, upstream, wire):
    upstream.queue(wire.text("Your name is Alice.", stream=False))
    data = create(
        http,
        {
            "model": wire.model,
            "input": [
                {"type": "message", "role": "user", "content": "My name is Alice."},
                {"type": "message", "role": "assistant", "content": "Hello Alice! Nice to meet you."},
                {"type": "message", "role": "user", "content": "What is my name?"},
            ],
        },
    )
    assert data["status"] == "completed" and output_text(data) == "Your name is Alice."
    body = sent(upstream, wire)
    assert wire.roles(body) == ["user", "assistant", "user"]
    assert wire.texts(body) == ["My name is Alice.", "Hello Alice! Nice to meet you.", "What is my name?"]


@wires
def test_previous_response_id_with_sdk(openai_client, upstream, wire):
    upstream.queue(wire.text("Nice to meet you, Bob.", stream=False), wire.text("You are Bob.", stream=True))
    first, _ = sdk_raw(openai_client, model=wire.model, input="My name is Bob.", instructions="Be brief.")
    events = list(
        openai_client.responses.create(
            model=wire.model, input="What is my name?", previous_response_id=first.id, stream=True
        )
    )
    final = events[-1].response
    assert (
        final.status == "completed"
        and final.output_text == "You are Bob."
        and final.previous_response_id == first.id
    )
    body = sent(upstream, wire, stream=True)
    assert wire.roles(body) == ["user", "assistant", "user"]
    assert wire.texts(body) == ["My name is Bob.", "Nice to meet you, Bob.", "What is my name?"]
    assert wire.system(body) == "", "instructions are not carried over from the previous response"


@wires
def test_max_output_tokens_truncation_is_incomplete(http, upstream, wire):
    """A provider stopping on its token limit ends the response (and its last item) incomplete."""
    truncated = {
        "openai": lambda: Reply.json(
            {
                **OpenAIWire()._response(
                    [{**OpenAIWire()._message("The capital of"), "status": "incomplete"}], "incomplete"
                ),
                "incomplete_details": {"reason": "max_output_tokens"},
            }
        ),
        "anthropic": lambda: Reply.json(
            AnthropicWire()._message([{"type": "text", "text": "The capital of"}], "max_tokens")
        ),
        "gemini": lambda: Reply.json(GeminiWire()._frame([{"text": "The capital of"}], "MAX_TOKENS")),
    }
    family = {"zai": "anthropic"}.get(wire.provider, wire.provider)
    if family in truncated:
        upstream.queue(truncated[family]())
    elif wire.provider == "ollama":
        done = {**wire._done(), "done_reason": "length"}
        done["message"]["content"] = "The capital of"
        upstream.queue(Reply.json(done))
    else:
        reply = json.loads(wire.text("The capital of", stream=False).chunks[0])
        reply["choices"][0]["finish_reason"] = "length"
        upstream.queue(Reply.json(reply))
    data = create(
        http, {"model": wire.model, "input": "What is the capital of France?", "max_output_tokens": 16}
    )
    assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["output"][-1]["status"] == "incomplete" and output_text(data) == "The capital of"
    limit = {
        "openai": lambda b: b["max_output_tokens"],
        "anthropic": lambda b: b["max_tokens"],
        "gemini": lambda b: b["generationConfig"]["maxOutputTokens"],
        "ollama": lambda b: b["options"]["num_predict"],
        "local-chat": lambda b: b["max_completion_tokens"],
    }[{"zai": "anthropic"}.get(wire.provider, wire.provider)]
    assert limit(sent(upstream, wire)) == 16


# --------------------------------------------------------------------------- a chain across providers


def test_cross_provider_chain_anthropic_openai_gemini(http, upstream):
    """One conversation through Anthropic -> OpenAI -> Gemini -> Anthropic -> Gemini by previous_response_id.

    History is stored in canonical form; each provider gets the whole conversation in its own
    wire format, and reasoning artefacts (Anthropic thinking signatures, OpenAI encrypted
    reasoning, Gemini thought signatures) go back only to the provider that made them.
    """
    anthropic, openai_wire, gemini = AnthropicWire(), OpenAIWire(), GeminiWire()
    reasoning = {"id": "rs_openai_2", "type": "reasoning", "summary": [], "encrypted_content": "enc-openai-2"}
    call = {
        "id": "fc_openai_2",
        "type": "function_call",
        "status": "completed",
        "name": "get_weather",
        "call_id": "call_openai_2",
        "arguments": '{"location": "Paris"}',
    }
    upstream.queue(
        anthropic.reasoning_text(
            "The user asks for a capital.", "sig-anthropic-1", "The capital of France is Paris.", stream=True
        ),
        Reply.json(openai_wire._response([reasoning, call])),
        gemini.reasoning_text(
            "Summarising the weather.", "sig-gemini-3", "It is sunny in Paris.", stream=True
        ),
        anthropic.text("You asked about Paris.", stream=False),
        gemini.text("Goodbye, Ada.", stream=False),
    )
    t1 = stream(
        http,
        {
            "model": "claude-sonnet-4-5",
            "input": "I am Ada. What is the capital of France?",
            "reasoning": {"effort": "low"},
        },
    )[-1]["response"]
    assert [i["type"] for i in t1["output"]] == ["reasoning", "message"] and t1["output"][0][
        "encrypted_content"
    ] == "sig-anthropic-1"
    t2 = create(
        http,
        {
            "model": "gpt-4o",
            "previous_response_id": t1["id"],
            "input": "And the weather there?",
            "tools": [WEATHER_TOOL],
        },
    )
    assert [i["type"] for i in t2["output"]] == ["reasoning", "function_call"]
    t3 = stream(
        http,
        {
            "model": "gemini-2.5-flash",
            "previous_response_id": t2["id"],
            "tools": [WEATHER_TOOL],
            "input": [{"type": "function_call_output", "call_id": "call_openai_2", "output": "sunny, 24C"}],
        },
    )[-1]["response"]
    assert output_text(t3) == "It is sunny in Paris."
    t4 = create(
        http,
        {
            "model": "claude-sonnet-4-5",
            "previous_response_id": t3["id"],
            "input": "What did I ask first?",
            "tools": [WEATHER_TOOL],
        },
    )
    t5 = create(http, {"model": "gemini-2.5-flash", "previous_response_id": t4["id"], "input": "Bye!"})
    assert output_text(t4) == "You asked about Paris." and output_text(t5) == "Goodbye, Ada."
    for resource in (t1, t2, t3, t4, t5):
        assert_valid_response(resource)
        assert all("_meta" not in item for item in resource["output"]), (
            "private provider data never leaves the server"
        )
    b1, b2, b3, b4, b5 = (r.json() for r in upstream.requests)

    # Turn 2 (OpenAI): Anthropic's answer as an assistant message, its thinking left out.
    assert [(i.get("type", "message"), i.get("role")) for i in b2["input"]] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert openai_wire.texts(b2) == [
        "I am Ada. What is the capital of France?",
        "The capital of France is Paris.",
        "And the weather there?",
    ]
    assert "sig-anthropic-1" not in json.dumps(b2)

    # Turn 3 (Gemini): OpenAI's call as a functionCall (no foreign signature), the result matched by name.
    assert gemini.roles(b3) == ["user", "assistant", "user", "assistant", "user"]
    parts = [p for c in b3["contents"] for p in c["parts"]]
    assert {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}} in parts
    assert gemini.tool_results(b3) == ["sunny, 24C"]
    assert (
        gemini.reasoning_sent(b3) == []
        and "enc-openai-2" not in json.dumps(b3)
        and "sig-anthropic-1" not in json.dumps(b3)
    )

    # Turn 4 (Anthropic): its own thinking block back verbatim, OpenAI's call as tool_use/tool_result.
    assert anthropic.reasoning_sent(b4) == ["sig-anthropic-1"]
    first_assistant = b4["messages"][1]["content"]
    assert first_assistant[0] == {
        "type": "thinking",
        "thinking": "The user asks for a capital.",
        "signature": "sig-anthropic-1",
    }
    uses = [b for m in b4["messages"] for b in m["content"] if b["type"] == "tool_use"]
    assert uses == [
        {"type": "tool_use", "id": "call_openai_2", "name": "get_weather", "input": {"location": "Paris"}}
    ]
    assert anthropic.tool_results(b4) == ["sunny, 24C"]
    assert "enc-openai-2" not in json.dumps(b4) and "sig-gemini-3" not in json.dumps(b4)
    assert anthropic.texts(b4)[-2:] == ["It is sunny in Paris.", "What did I ask first?"]

    # Turn 5 (Gemini): its own thought signature back, nobody else's.
    assert gemini.reasoning_sent(b5) == ["sig-gemini-3"]
    assert "sig-anthropic-1" not in json.dumps(b5) and "enc-openai-2" not in json.dumps(b5)
    assert b1["thinking"]["type"] == "enabled"


# --------------------------------------------------------------------------- routing on the main server

DEFAULT_ROUTES = [
    ("gpt-4.1-mini", OpenAIWire()),
    ("o1-mini", OpenAIWire()),
    ("o3", OpenAIWire()),
    ("o4-mini", OpenAIWire()),
    ("claude-opus-4-1", AnthropicWire()),
    ("gemini-2.5-pro", GeminiWire()),
    ("llama3.1:8b", ALL_WIRES[4]),
    ("mistral-small", ALL_WIRES[4]),
    ("phi4", ALL_WIRES[4]),
    ("qwen2.5:7b", ALL_WIRES[4]),
]


@pytest.mark.parametrize(("model", "wire"), DEFAULT_ROUTES, ids=[m for m, _ in DEFAULT_ROUTES])
def test_default_routes(http, upstream, model, wire):
    upstream.queue(wire.text("routed", stream=False))
    data = create(http, {"model": model, "input": "hi"})
    assert output_text(data) == "routed" and data["model"] == model
    recorded = upstream.requests[0]
    expected = f"/v1beta/models/{model}:generateContent" if wire.family == "gemini" else PATHS[wire.provider]
    assert recorded.path == expected
    assert wire.sent_model(recorded) == model


def test_unknown_model_is_404_model_not_found(http, openai_client, upstream):
    error = create(http, {"model": "no-such-model-9", "input": "hi"}, expect=404)["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model") and error["type"] in (
        "not_found",
        "invalid_request_error",
    )
    assert "no-such-model-9" in error["message"]
    import openai

    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model="no-such-model-9", input="hi")
    assert upstream.requests == []


def test_config_route_rewrites_model(http, upstream):
    """``{"pattern": "fast", "provider": "local-chat", "model": "qwen2.5-7b-instruct"}`` in the config file."""
    upstream.queue(ALL_WIRES[5].text("quick", stream=True))
    events = stream(http, {"model": "fast", "input": "hi"})
    assert events[-1]["response"]["model"] == "fast", "clients see the name they asked for"
    recorded = upstream.requests[0]
    assert recorded.path == "/v1/chat/completions" and recorded.json()["model"] == "qwen2.5-7b-instruct"
    assert recorded.headers["authorization"] == "Bearer sk-local-chat-secret-0004"


def test_zai_is_the_anthropic_adapter_with_its_own_url_and_key(http, upstream):
    upstream.queue(AnthropicWire().text("GLM here", stream=True))
    events = stream(http, {"model": "glm-4.6", "input": "hi"})
    assert output_text(events[-1]["response"]) == "GLM here"
    recorded = upstream.requests[0]
    assert recorded.path == "/zai/v1/messages" and recorded.headers["x-api-key"] == "zai-test-secret-0005"
    assert recorded.json()["model"] == "glm-4.6" and recorded.json()["max_tokens"] == 4096


def _acme_stream(*tokens: str, stop: str = "end") -> Reply:
    lines = [{"token": t} for t in tokens] + [{"stop": stop, "usage": {"in": 4, "out": len(tokens)}}]
    return Reply(
        content_type="application/x-ndjson", chunks=[(json.dumps(line) + "\n").encode() for line in lines]
    )


def test_custom_adapter_by_dotted_path(http, openai_client, upstream):
    """tests.support.custom_adapter.AcmeAdapter, named in the config file, behind the same API."""
    upstream.queue(
        _acme_stream("Hello", " from", " Acme"),
        Reply.json({"text": "Plain answer", "stop": "end", "usage": {"in": 3, "out": 2}}),
    )
    events = stream(
        http,
        {
            "model": "acme-1",
            "instructions": "Be kind.",
            "input": [
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "Hello?"},
            ],
            "temperature": 0.5,
        },
    )
    from tests.support.replay import shape

    assert shape(events) == HEAD + TEXT + DONE and output_text(events[-1]["response"]) == "Hello from Acme"
    assert events[-1]["response"]["usage"]["input_tokens"] == 4
    response = openai_client.responses.create(model="acme-1", input="Again", max_output_tokens=64)
    assert response.output_text == "Plain answer" and response.status == "completed"
    first, second = (r.json() for r in upstream.requests)
    assert upstream.requests[0].path == "/acme/generate"
    assert first == {
        "model": "acme-1",
        "system": "Be kind.\n\nAnswer in English.",
        "turns": [{"role": "user", "text": "Hello?"}],
        "max_tokens": 1024,
        "stream": True,
        "temperature": 0.5,
    }
    assert second["max_tokens"] == 64 and second["stream"] is False
    error = create(http, {"model": "acme-1", "input": "hi", "tools": [WEATHER_TOOL]}, expect=400)["error"]
    assert error["param"] == "tools" and "does not support tools" in error["message"]


# --------------------------------------------------------------------------- fields a provider cannot honour

UNSUPPORTED = [
    (
        "ollama",
        {"model": "llama3.2", "input": "hi", "tools": [WEATHER_TOOL], "tool_choice": "required"},
        "tool_choice",
    ),
    (
        "ollama",
        {
            "model": "llama3.2",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://example.com/cat.png"}],
                }
            ],
        },
        "input[0].content[0].image_url",
    ),
    (
        "anthropic",
        {"model": "claude-sonnet-4-5", "input": "hi", "text": {"format": {"type": "json_object"}}},
        "text.format",
    ),
    (
        "gemini",
        {
            "model": "gemini-2.5-flash",
            "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-123"}]}],
        },
        "input[0].content[0].file_id",
    ),
    (
        "gemini",
        {
            "model": "gemini-2.5-flash",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "%% not base64 %%"}],
                }
            ],
        },
        "input",
    ),
    (
        "local-chat",
        {
            "model": "chat-x",
            "input": [
                {"role": "user", "content": [{"type": "input_file", "file_url": "https://example.com/a.pdf"}]}
            ],
        },
        "input[0].content[0].file_url",
    ),
    (
        "acme",
        {
            "model": "acme-1",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}],
                }
            ],
        },
        "input[0].content",
    ),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("provider", "body", "param"), UNSUPPORTED, ids=[f"{p}-{x}" for p, _, x in UNSUPPORTED]
)
def test_unsupported_field_is_400_naming_it(http, upstream, provider, body, param, streamed):
    """An adapter's UnsupportedParameter on the first sample is an HTTP 400, streamed or not."""
    response = http.post("/v1/responses", json={**body, "stream": streamed})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    from tests.support.spec import assert_valid_error

    assert_valid_error(response.json())
    assert (error["code"], error["type"], error["param"]) == (
        "unsupported_parameter",
        "invalid_request_error",
        param,
    )
    assert upstream.requests == [], "nothing was sent upstream"


@wires
def test_allowed_tools_enforced_by_the_server(http, upstream, wire):
    """The model calls a tool outside ``allowed_tools``: the server refuses it, whatever the provider did."""
    time_tool = {
        "type": "function",
        "name": "get_time",
        "description": "Current time",
        "parameters": {"type": "object", "properties": {}},
    }
    upstream.queue(wire.tool_call("get_weather", {"location": "Paris"}, stream=True))
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_time"}]}
    body = {
        "model": wire.model,
        "input": "Weather in Paris?",
        "tools": [WEATHER_TOOL, time_tool],
        "tool_choice": choice,
        "stream": True,
    }
    with http.stream("POST", "/v1/responses", json=body) as response:
        raw = response.read().decode()
    if response.status_code == 200:  # some text came first: the stream ends with error + response.failed
        from tests.support.spec import assert_valid_stream
        from tests.support.sse import parse_sse

        events, _done = parse_sse(raw)
        assert_valid_stream(events)
        assert types_of(events)[-2:] == ["error", "response.failed"]
        error = events[-1]["response"]["error"]
        assert not any(e.get("item", {}).get("type") == "function_call" for e in events), (
            "the refused call is never emitted"
        )
    else:
        assert response.status_code == 502, raw  # the model misbehaved: never a 500
        error = json.loads(raw)["error"]
        assert error["type"] == "model_error"
    assert error["code"] == "tool_not_allowed" and "get_weather" in error["message"]
    assert sorted(wire.tool_names(sent(upstream, wire))) == ["get_time", "get_weather"], (
        "all tools stay visible to the model"
    )


# --------------------------------------------------------------------------- upstream errors, retries, keys

TEST_KEYS = [
    "sk-test-openai-secret-0001",
    "sk-ant-test-secret-0002",
    "gemini-test-secret-0003",
    "sk-local-chat-secret-0004",
    "zai-test-secret-0005",
]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_upstream_error_keeps_message_never_key(http, upstream, streamed):
    """A provider that echoes the key in its error: the message is relayed, the key is not."""
    body = {
        "error": {
            "message": "Incorrect API key provided: sk-test-openai-secret-0001. Find your key at https://example.com.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    upstream.queue(Reply.json(body, status=401))
    response = http.post("/v1/responses", json={"model": "gpt-4o", "input": "hi", "stream": streamed})
    assert response.status_code == 502 and "sk-test-openai-secret-0001" not in response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_failed" and "Incorrect API key provided: ***" in error["message"]
    assert len(upstream.requests) == 1, "401 is not retried"


def test_anthropic_error_body_mapped(http, upstream):
    upstream.queue(
        Reply.json(
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "Number of request tokens has exceeded your per-minute rate limit",
                },
            },
            status=429,
            headers={"retry-after": "0"},
        )
    )
    upstream.queue(
        Reply.json(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529
        )
    )
    upstream.queue(
        Reply.json(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529
        )
    )
    response = http.post("/v1/responses", json={"model": "claude-sonnet-4-5", "input": "hi"})
    assert response.status_code == 502 and len(upstream.requests) == 3
    error = response.json()["error"]
    assert error["code"] == "upstream_overloaded" and "Overloaded" in error["message"]


def test_retries_with_backoff_before_first_byte(http, upstream):
    upstream.queue(
        Reply.json({"error": {"message": "upstream hiccup"}}, status=503),
        Reply.json({"error": {"message": "slow down"}}, status=429, headers={"retry-after": "0"}),
        OpenAIWire().text("third time lucky", stream=True),
    )
    events = stream(http, {"model": "gpt-4o", "input": "hi"})
    assert output_text(events[-1]["response"]) == "third time lucky"
    assert len(upstream.requests) == 3 and upstream.requests[0].body == upstream.requests[2].body


def test_retries_exhausted_is_http_error(http, upstream):
    upstream.queue(
        *[
            Reply.json(
                {"error": {"message": "rate limited, try later"}}, status=429, headers={"retry-after": "0"}
            )
            for _ in range(3)
        ]
    )
    response = http.post("/v1/responses", json={"model": "gpt-4o", "input": "hi"})
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert (
        response.json()["error"]["type"] == "too_many_requests"
        and "rate limited, try later" in response.json()["error"]["message"]
    )
    assert len(upstream.requests) == 3, "max_retries=2: three attempts"


def test_no_retry_after_first_byte(http, upstream):
    """Once output was relayed a broken stream is an error event, never a silent retry."""
    full = OpenAIWire().text("partial answer that never finishes", stream=True)
    upstream.queue(Reply(content_type=full.content_type, chunks=full.chunks[:6]))
    events = stream(http, {"model": "gpt-4o", "input": "hi"})
    assert types_of(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["error"]["code"] == "upstream_disconnected"
    assert output_text(events[-1]["response"]), "the partial output is kept"
    assert len(upstream.requests) == 1


def test_keys_never_in_server_log_or_stored_responses(server, http):
    """Run last in this module: after every error above, no provider key is in the server log."""
    log = server.log_path.read_text()
    assert "failed" in log, "the log holds the failures of the tests above"
    for key in TEST_KEYS:
        assert key not in log, f"{key} leaked into {server.log_path.name}"


def test_docs_custom_adapter_example_is_the_tested_one():
    """docs/providers.md shows tests/support/custom_adapter.py verbatim (exercised above)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "providers.md").read_text()
    source = (root / "tests" / "support" / "custom_adapter.py").read_text()
    start = doc.index(
        "<!-- test: covered tests/api/test_providers_e2e.py::test_docs_custom_adapter_example_is_the_tested_one -->"
    )
    block = doc[start:].split("```python\n", 1)[1].split("```", 1)[0]
    assert block == source
