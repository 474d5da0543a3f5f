"""A deterministic built-in provider (models ``mock-*``): no key, no network.

It echoes the input back, word by word; when function tools are offered (and the last item is
not a tool result) it calls one with arguments that fit its schema. Model-name suffixes switch
on behaviours useful in demos and tests:

* ``mock-reasoning``: a reasoning summary before the answer;
* ``mock-slow``: 50 ms between tokens (``options.token_delay`` or ``MOCK_TOKEN_DELAY`` set it too);
* ``mock-fail``: the provider fails before the first token (HTTP 502);
* ``mock-midstream-error``: the provider fails after two tokens;
* ``mock-rate-limited``: the provider answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from providers_app.adapters.base import (
    Chunk,
    Finish,
    ModelRequest,
    ProviderAdapter,
    ReasoningDelta,
    ReasoningDone,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UpstreamError,
    UsageReport,
    message_text,
)


def example_for_schema(schema: dict[str, Any] | None, name: str = "value") -> Any:
    """A value that fits a JSON schema (enough for typical tool parameter schemas)."""
    if not isinstance(schema, dict):
        return "example"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {key: example_for_schema(sub, key) for key, sub in props.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items"), name)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if schema.get("format") == "date":
        return "2026-01-01"
    return {"location": "Paris", "city": "Paris", "country": "France", "query": "example"}.get(
        name, f"example {name}"
    )


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text) or [text]


class MockAdapter(ProviderAdapter):
    family = "mock"

    def _delay(self, request: ModelRequest) -> float:
        if "slow" in request.model:
            return 0.05
        if "token_delay" in self.config.options:
            return float(self.config.options["token_delay"])
        from providers_app.conf import providers_settings

        return float(providers_settings.MOCK_TOKEN_DELAY or 0.0)

    async def sample(self, request: ModelRequest, *, stream: bool) -> AsyncIterator[Chunk]:
        model = request.model
        if "rate-limited" in model:
            raise UpstreamError(
                "Provider 'mock' returned HTTP 429: rate limited (mock)",
                status=429,
                code="rate_limit_exceeded",
                error_type="too_many_requests",
                retry_after=2,
            )
        if model.endswith("-fail"):
            raise UpstreamError(
                "Provider 'mock' returned HTTP 502: the mock provider failed on purpose",
                status=502,
                code="upstream_error",
            )
        delay = self._delay(request)
        input_tokens = sum(
            len(_words(message_text(i))) for i in request.items if i.get("type") == "message"
        ) + len((request.instructions or "").split())
        call = self._tool_call(request)
        if call is not None:
            name, arguments = call
            yield ToolCallStart(call_id=f"call_mock_{len(request.items)}", name=name)
            half = max(1, len(arguments) // 2)
            for piece in (arguments[:half], arguments[half:]):
                if delay:
                    await asyncio.sleep(delay)
                if piece:
                    yield ToolCallDelta(piece)
            yield UsageReport(input_tokens=input_tokens, output_tokens=len(arguments) // 4 + 1)
            yield Finish("tool_calls")
            return
        output_tokens = 0
        if "reasoning" in model:
            for word in _words("The user wants a reply; I will answer briefly."):
                output_tokens += 1
                yield ReasoningDelta(word)
            yield ReasoningDone(encrypted_content="mock-reasoning-signature")
        words = _words(self._answer(request))
        limit = request.max_output_tokens
        for index, word in enumerate(words):
            if limit is not None and output_tokens >= limit:
                yield UsageReport(input_tokens=input_tokens, output_tokens=output_tokens)
                yield Finish("max_output_tokens")
                return
            if index == 2 and "midstream-error" in model:
                raise UpstreamError(
                    "Provider 'mock' dropped the stream: simulated mid-stream failure",
                    status=502,
                    code="upstream_disconnected",
                )
            if index:
                # Each token arrives on its own, like a network read of a real stream (tokens
                # parsed from one read are coalesced into one delta event by the emitter).
                await asyncio.sleep(delay)
            output_tokens += 1
            yield TextDelta(word)
        yield UsageReport(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            reasoning_tokens=11 if "reasoning" in model else 0,
        )
        yield Finish("stop")

    def _tool_call(self, request: ModelRequest) -> tuple[str, str] | None:
        tools = [t for t in request.tools if t.get("type") == "function"]
        choice = request.tool_choice
        if not tools or choice == "none" or not request.items:
            return None
        if request.items[-1].get("type") == "function_call_output":
            return None
        names = [t["name"] for t in tools]
        if isinstance(choice, dict) and choice.get("type") == "function":
            names = [choice["name"]]
        elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            if choice.get("mode") == "none":
                return None
            names = [t["name"] for t in choice["tools"]]
        tool = next(t for t in tools if t["name"] == names[0])
        return tool["name"], json.dumps(
            example_for_schema(tool.get("parameters") or {"type": "object", "properties": {}})
        )

    def _answer(self, request: ModelRequest) -> str:
        last = request.items[-1] if request.items else {}
        if last.get("type") == "function_call_output":
            output = last.get("output")
            if not isinstance(output, str):
                output = " ".join(p.get("text", "") for p in output if isinstance(p, dict))
            return f"The tool returned: {output}"
        users = [i for i in request.items if i.get("type") == "message" and i.get("role") == "user"]
        if not users:
            return "Hello! How can I help?"
        text = message_text(users[-1]).strip() or "(no text)"
        extras = []
        images = sum(1 for p in users[-1].get("content", []) if p.get("type") == "input_image")
        files = sum(1 for p in users[-1].get("content", []) if p.get("type") == "input_file")
        if images:
            extras.append(f" I see {images} image{'s' if images > 1 else ''}.")
        if files:
            extras.append(f" I read {files} file{'s' if files > 1 else ''}.")
        turns = len(users)
        prefix = f"(turn {turns}) " if turns > 1 else ""
        return f"{prefix}You said: {text}" + "".join(extras)
