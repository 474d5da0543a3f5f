"""Drive an adapter against a fake upstream and collect its chunks (no Django needed)."""

from __future__ import annotations

import asyncio
from typing import Any

from providers_app.adapters.base import Chunk, ModelRequest, ProviderAdapter


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
