"""A complete custom provider adapter: the example of docs/providers.md (kept identical by a test).

"Acme" is an imaginary in-house model server with a small JSON API:

* ``POST {base_url}/generate`` with ``{"model", "system", "turns": [{"role", "text"}],
  "max_tokens", "temperature", "stream"}``;
* non-streamed answer: ``{"text": "...", "stop": "end"|"length", "usage": {"in": 3, "out": 5}}``;
* streamed answer (NDJSON): ``{"token": "..."}`` lines, then ``{"stop": ..., "usage": {...}}``;
  a ``{"error": "..."}`` line reports a failure mid-stream.

Acme has no tools and no images: such requests are refused with a 400 naming the field.
Enable it with a provider entry such as
``{"name": "acme", "adapter": "tests.support.custom_adapter.AcmeAdapter", "base_url": "http://acme:8080"}``
and a route ``{"pattern": "acme-*", "provider": "acme"}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from providers_app.adapters.base import (
    Chunk,
    Finish,
    ItemEnd,
    ModelRequest,
    ProviderAdapter,
    TextDelta,
    UnsupportedParameter,
    UpstreamError,
    UsageReport,
    message_text,
)

STOP_REASONS = {"end": "stop", "length": "max_output_tokens"}


def build_acme_body(request: ModelRequest, *, stream: bool, default_max_tokens: int) -> dict[str, Any]:
    """Canonical Open Responses items -> Acme's request body (pure, easy to unit-test)."""
    if request.tools:
        raise UnsupportedParameter("tools", "The Acme provider does not support tools.")
    system = [request.instructions] if request.instructions else []
    turns = []
    for index, item in enumerate(request.items):
        kind = item.get("type", "message")
        if kind == "reasoning":
            continue  # another provider's reasoning: nothing Acme could use
        if kind != "message":
            raise UnsupportedParameter(f"input[{index}]", f"The Acme provider cannot take '{kind}' items.")
        for part in item.get("content") or []:
            if part.get("type") not in ("input_text", "output_text", "text", "refusal"):
                raise UnsupportedParameter(
                    f"input[{index}].content", f"The Acme provider takes text only, not '{part.get('type')}'."
                )
        if item.get("role") in ("system", "developer"):
            system.append(message_text(item))
        else:
            turns.append({"role": item.get("role", "user"), "text": message_text(item)})
    body: dict[str, Any] = {
        "model": request.model,
        "system": "\n\n".join(system),
        "turns": turns,
        "max_tokens": request.max_output_tokens or default_max_tokens,
        "stream": stream,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def final_chunks(data: dict[str, Any]) -> list[Chunk]:
    """The closing chunks for Acme's last object (usage and the finish reason)."""
    usage = data.get("usage") or {}
    reason = STOP_REASONS.get(data.get("stop") or "end", "stop")
    chunks: list[Chunk] = [] if reason == "max_output_tokens" else [ItemEnd()]  # a cut-off message stays open
    chunks.append(UsageReport(input_tokens=usage.get("in"), output_tokens=usage.get("out")))
    chunks.append(Finish(reason))
    return chunks


class AcmeAdapter(ProviderAdapter):
    """Acme's ``/generate`` endpoint, streamed (NDJSON) or not."""

    family = "acme"

    async def sample(self, request: ModelRequest, *, stream: bool) -> AsyncIterator[Chunk]:
        body = build_acme_body(
            request,
            stream=stream,
            default_max_tokens=int(self.config.options.get("default_max_tokens", 1024)),
        )
        headers = self.headers(
            {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        )
        if not stream:
            # post_json retries connection errors, 429 and 5xx, and maps HTTP errors.
            data = await self.post_json(self.url("generate"), json_body=body, headers=headers)
            if data.get("text"):
                yield TextDelta(data["text"])
            for chunk in final_chunks(data):
                yield chunk
            return
        response = await self.open_stream("POST", self.url("generate"), json_body=body, headers=headers)
        try:
            async for line in self.iter_lines(response):  # the idle timeout applies between lines
                if not line.strip():
                    continue
                data = json.loads(line)
                if "error" in data:
                    raise UpstreamError(
                        f"Provider '{self.config.name}' failed mid-stream: {data['error']}", status=502
                    )
                if data.get("token"):
                    yield TextDelta(data["token"])
                if "stop" in data:
                    for chunk in final_chunks(data):
                        yield chunk
                    return
        finally:
            await response.aclose()
        raise UpstreamError(
            f"Provider '{self.config.name}' ended the stream early.", status=502, code="upstream_disconnected"
        )
