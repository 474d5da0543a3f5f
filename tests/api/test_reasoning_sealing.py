"""Reasoning continuity the way Codex drives it: ``store: false`` + ``include:
["reasoning.encrypted_content"]``, the client sending the reasoning items back itself.

Recorded Anthropic and Gemini answers are replayed; the items the server returned go back in a
second request, whose upstream body must carry the provider's signature byte for byte. The same
items sent to another provider family, or with an altered blob, are dropped (never a 500).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.api import create, stream
from tests.support.spec import assert_valid_response
from tests.support.upstream import Reply, fixture_json, fixture_path
from tests.support.wire import AnthropicWire, GeminiWire, OpenAIWire

SEALED = {"store": False, "include": ["reasoning.encrypted_content"]}


def _anthropic_signature() -> str:
    text = fixture_path("anthropic/thinking_stream.sse").read_text()
    return "".join(json.loads(f'"{s}"') for s in re.findall(r'"signature_delta","signature":"([^"]*)"', text))


def _gemini_signature(name: str) -> str:
    text = fixture_path(name).read_text()
    found = re.findall(r'"thoughtSignature": *"([^"]+)"', text)
    assert len(found) == 1
    return found[0]


def _tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def _anthropic_first_turn(http, upstream) -> dict:
    upstream.queue(Reply.fixture("anthropic/thinking_stream.sse"))
    events = stream(
        http,
        {
            "model": "claude-sonnet-4-0",
            "input": "How do I cross the street?",
            "reasoning": {"effort": "low"},
            "max_output_tokens": 4096,
            **SEALED,
        },
    )
    return events[-1]["response"]


def test_anthropic_thinking_round_trip_sealed(http, upstream):
    signature = _anthropic_signature()
    assert len(signature) > 100
    first = _anthropic_first_turn(http, upstream)
    reasoning = first["output"][0]
    assert reasoning["type"] == "reasoning"
    assert reasoning["encrypted_content"].startswith("orr1.")
    assert_valid_response(first)
    assert signature not in json.dumps(first), "the signature leaves the server sealed, never in clear"

    upstream.queue(AnthropicWire().text("Look both ways.", stream=False))
    create(
        http,
        {
            "model": "claude-sonnet-4-0",
            "input": [{"role": "user", "content": "How do I cross the street?"}, *first["output"]]
            + [{"role": "user", "content": "Thanks!"}],
            "reasoning": {"effort": "low"},
            "max_output_tokens": 4096,
            **SEALED,
        },
    )
    body = upstream.requests[-1].json()
    thinking = [
        b for m in body["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "thinking"
    ]
    assert len(thinking) == 1
    assert thinking[0]["signature"] == signature
    assert thinking[0]["thinking"] == reasoning["summary"][0]["text"]


@pytest.mark.parametrize("tampered", [False, True], ids=["other-provider", "tampered"])
def test_anthropic_reasoning_dropped_elsewhere_or_altered(http, upstream, tampered):
    signature = _anthropic_signature()
    first = _anthropic_first_turn(http, upstream)
    output = [dict(i) for i in first["output"]]
    if tampered:
        output[0]["encrypted_content"] = _tamper(output[0]["encrypted_content"])
        upstream.queue(AnthropicWire().text("Look both ways.", stream=False))
        model = "claude-sonnet-4-0"
    else:
        upstream.queue(OpenAIWire().text("Look both ways.", stream=False))
        model = "gpt-4o"
    result = create(
        http,
        {
            "model": model,
            "input": [{"role": "user", "content": "Hi"}, *output, {"role": "user", "content": "Go on"}],
        },
    )
    assert result["status"] == "completed"
    body = upstream.requests[-1].json()
    raw = json.dumps(body)
    assert signature not in raw and "orr1." not in raw
    if tampered:
        assert all(
            b.get("type") != "thinking" for m in body["messages"] for b in m["content"] if isinstance(b, dict)
        )
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    else:
        assert all(i.get("type") != "reasoning" for i in body["input"])


def test_gemini_thought_signature_round_trip_sealed(http, upstream):
    signature = _gemini_signature("gemini/thinking_stream.sse")
    upstream.queue(Reply.fixture("gemini/thinking_stream.sse"))
    request = {
        "model": "gemini-2.5-pro",
        "instructions": "You are a helpful assistant.",
        "reasoning": {"summary": "auto"},
        "tools": [{"type": "function", "name": "dummy", "description": ""}],
        **SEALED,
    }
    first = stream(http, {**request, "input": "How do I cross the street?"})[-1]["response"]
    assert signature not in json.dumps(first)
    assert any(
        i["type"] == "reasoning" and i.get("encrypted_content", "").startswith("orr1.")
        for i in first["output"]
    )

    upstream.queue(GeminiWire().text("You are welcome.", stream=False))
    create(
        http,
        {
            **request,
            "input": [{"role": "user", "content": "How do I cross the street?"}, *first["output"]]
            + [{"role": "user", "content": "Thanks!"}],
        },
    )
    body = upstream.requests[-1].json()
    model_parts = [p for c in body["contents"] if c["role"] == "model" for p in c["parts"]]
    assert [p.get("thoughtSignature") for p in model_parts if "thoughtSignature" in p] == [signature]
    assert model_parts[0]["thoughtSignature"] == signature

    # The same items on another provider family: nothing of Gemini's goes there.
    upstream.queue(AnthropicWire().text("Sure.", stream=False))
    create(
        http,
        {
            "model": "claude-sonnet-4-0",
            "input": [{"role": "user", "content": "How do I cross the street?"}, *first["output"]]
            + [{"role": "user", "content": "Thanks!"}],
        },
    )
    raw = json.dumps(upstream.requests[-1].json())
    assert signature not in raw and "orr1." not in raw


def test_gemini_function_call_signature_round_trip_sealed(http, upstream):
    signature = _gemini_signature("gemini/function_call_nonstream.json")
    tool = fixture_json("gemini/function_call_nonstream.request.json")["tools"][0]["functionDeclarations"][0]
    request = {
        "model": "gemini-2.5-flash",
        "tools": [
            {
                "type": "function",
                "name": tool["name"],
                "description": tool["description"],
                "parameters": tool["parameters_json_schema"],
            }
        ],
        **SEALED,
    }
    upstream.queue(Reply.fixture("gemini/function_call_nonstream.json"))
    first = create(http, {**request, "input": "What's the weather in Paris?"})
    assert_valid_response(first)
    assert [i["type"] for i in first["output"]] == ["function_call", "reasoning"]
    assert signature not in json.dumps(first)
    call = first["output"][0]

    upstream.queue(GeminiWire().text("Sunny.", stream=False))
    create(
        http,
        {
            **request,
            "input": [
                {"role": "user", "content": "What's the weather in Paris?"},
                *first["output"],
                {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
            ],
        },
    )
    body = upstream.requests[-1].json()
    parts = [p for c in body["contents"] if c["role"] == "model" for p in c["parts"]]
    assert parts == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": signature}
    ]

    # Without the carrier (a client that dropped it) the call goes back unsigned: the server kept nothing.
    upstream.queue(GeminiWire().text("Sunny.", stream=False))
    create(
        http,
        {
            **request,
            "input": [
                {"role": "user", "content": "What's the weather in Paris?"},
                call,
                {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
            ],
        },
    )
    parts = [p for c in upstream.requests[-1].json()["contents"] if c["role"] == "model" for p in c["parts"]]
    assert "thoughtSignature" not in parts[0]
