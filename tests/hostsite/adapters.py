"""The host's own provider adapter: answers with the last user message in capitals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from providers_app.adapters.base import (
    Chunk,
    Finish,
    ModelRequest,
    ProviderAdapter,
    TextDelta,
    UsageReport,
    message_text,
)


class ShoutAdapter(ProviderAdapter):
    family = "shout"

    async def sample(self, request: ModelRequest, *, stream: bool) -> AsyncIterator[Chunk]:
        users = [
            item for item in request.items if item.get("type") == "message" and item.get("role") == "user"
        ]
        words = (message_text(users[-1]) if users else "").upper().split()
        for index, word in enumerate(words):
            yield TextDelta(word if index == 0 else " " + word)
        yield UsageReport(input_tokens=len(words), output_tokens=len(words))
        yield Finish("stop")
