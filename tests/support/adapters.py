"""Helpers for adapter tests: point an adapter at the fake upstream, run it, read its chunks
(no Django needed). The one place for them; each provider's test module only adds its own wire
shapes."""

from __future__ import annotations

import asyncio
from typing import Any

from providers_app.adapters.base import (
    Chunk,
    ModelRequest,
    ProviderAdapter,
    ProviderConfig,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from tests.support.upstream import FakeUpstream


def adapter_for(
    cls: type[ProviderAdapter], upstream: FakeUpstream, path: str = "", *, name: str, **config: Any
) -> Any:
    """An adapter of class ``cls`` named ``name`` whose ``base_url`` is the fake upstream's + ``path``."""
    return cls(ProviderConfig(name=name, adapter=cls.family, base_url=upstream.base_url + path, **config))


def body_of(
    cls: type[ProviderAdapter], request: ModelRequest, *, name: str, stream: bool = True, **options: Any
) -> dict[str, Any]:
    """The upstream body ``cls`` would send for ``request`` (provider ``name``, these options)."""
    assert cls.build_body is not None
    return cls.build_body(request, ProviderConfig(name, cls.family, options=options), stream=stream)


def collect(adapter: ProviderAdapter, request: ModelRequest, *, stream: bool = True) -> list[Chunk]:
    """Run ``adapter.sample`` to the end in a fresh event loop and return every chunk."""

    async def run() -> list[Chunk]:
        try:
            return [chunk async for chunk in adapter.sample(request, stream=stream)]
        finally:
            await adapter.aclose()

    return asyncio.run(run())


def collect_until_error(
    adapter: ProviderAdapter, request: ModelRequest, *, stream: bool = True
) -> tuple[list[Chunk], Exception | None]:
    """Like :func:`collect`, but returns the chunks seen before an exception and the exception."""

    async def run() -> tuple[list[Chunk], Exception | None]:
        seen: list[Chunk] = []
        try:
            async for chunk in adapter.sample(request, stream=stream):
                seen.append(chunk)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return seen, exc
        finally:
            await adapter.aclose()
        return seen, None

    return asyncio.run(run())


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# --------------------------------------------------------------------------- reading chunks


def texts(chunks: list[Any]) -> str:
    """The answer's text."""
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def reasoning(chunks: list[Any]) -> str:
    """The reasoning text (summary and raw)."""
    return "".join(c.text for c in chunks if isinstance(c, ReasoningDelta))


def tool_calls(chunks: list[Any]) -> list[tuple[str, str, str]]:
    """``(call_id, name, arguments)`` of each function call, arguments joined."""
    calls: list[list[str]] = []
    for c in chunks:
        if isinstance(c, ToolCallStart):
            calls.append([c.call_id, c.name, ""])
        elif isinstance(c, ToolCallDelta):
            calls[-1][2] += c.arguments
    return [tuple(c) for c in calls]  # type: ignore[misc]


def kinds(chunks: list[Any], *, collapse_all: bool = False) -> list[str]:
    """Chunk type names, runs of one delta type collapsed (of any type with ``collapse_all``)."""
    out: list[str] = []
    for c in chunks:
        name = type(c).__name__
        if out and out[-1] == name and (collapse_all or name.endswith("Delta")):
            continue
        out.append(name)
    return out


def merged_usage(chunks: list[Any]) -> UsageReport:
    """The usage the emitter would keep: later non-None fields override earlier ones."""
    total = UsageReport()
    for c in chunks:
        if isinstance(c, UsageReport):
            for f in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
                if getattr(c, f) is not None:
                    setattr(total, f, getattr(c, f))
    return total
