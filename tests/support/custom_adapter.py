"""A complete custom provider adapter: the example of docs/providers.md (kept identical by a test).

"Acme" is an imaginary in-house model server with a small JSON API:

* ``POST {base_url}/generate`` with ``{"model", "system", "turns": [{"role", "text"}],
  "max_tokens", "temperature", "stream"}``;
* non-streamed answer: ``{"text": "...", "stop": "end"|"length", "usage": {"in": 3, "out": 5}}``;
* streamed answer (NDJSON): ``{"token": "..."}`` lines, then ``{"stop": ..., "usage": {...}}``;
  a ``{"error": "..."}`` line reports a failure mid-stream.

Acme has no tools and no images: such requests are refused with a 400 naming the field.
The base class makes the call (retries, error mapping, NDJSON framing, timeouts, masking the
key); this module only says where to send what, and how to read the answer.
Enable it with a provider entry such as
``{"name": "acme", "adapter": "tests.support.custom_adapter.AcmeAdapter", "base_url": "http://acme:8080"}``
and a route ``{"pattern": "acme-*", "provider": "acme"}``.
"""

from __future__ import annotations

from typing import Any

from providers_app.adapters.base import (
    Chunk,
    Finish,
    ItemEnd,
    ModelRequest,
    ProviderAdapter,
    ProviderConfig,
    TextDelta,
    UnsupportedParameter,
    UpstreamError,
    UsageReport,
    message_text,
)

STOP_REASONS = {"end": "stop", "length": "max_output_tokens"}


def build_acme_body(request: ModelRequest, config: ProviderConfig, *, stream: bool) -> dict[str, Any]:
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
        "max_tokens": request.max_output_tokens or int(config.options.get("default_max_tokens", 1024)),
        "stream": stream,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


class AcmeParser:
    """Acme's answer objects -> chunks: each streamed line, or the whole non-streamed body."""

    def __init__(self, provider: str, request: ModelRequest | None = None) -> None:
        self.provider = provider
        self.done = False  # the object with "stop" came: the base class stops reading

    def feed(self, data: dict[str, Any]) -> list[Chunk]:
        if "error" in data:
            raise UpstreamError(f"Provider '{self.provider}' failed mid-stream: {data['error']}", status=502)
        text = data.get("token") or data.get("text")
        chunks: list[Chunk] = [TextDelta(text)] if text else []
        if "stop" in data:
            usage = data.get("usage") or {}
            reason = STOP_REASONS.get(data["stop"] or "end", "stop")
            if reason != "max_output_tokens":
                chunks.append(ItemEnd())  # a cut-off message stays open: Finish marks it incomplete
            chunks.append(UsageReport(input_tokens=usage.get("in"), output_tokens=usage.get("out")))
            chunks.append(Finish(reason))
            self.done = True
        return chunks

    def finish(self) -> list[Chunk]:
        if not self.done:
            raise UpstreamError(
                f"Provider '{self.provider}' ended the stream early.",
                status=502,
                code="upstream_disconnected",
            )
        return []


class AcmeAdapter(ProviderAdapter):
    """Acme's ``/generate`` endpoint, streamed (NDJSON) or not."""

    family = "acme"
    framing = "ndjson"  # streamed answers are JSON lines
    path = "generate"  # POST {base_url}/generate
    build_body = staticmethod(build_acme_body)  # raises UnsupportedParameter before any call
    parser_class = AcmeParser  # made per call as AcmeParser(provider name, request)
