""" "Test connection": one small upstream call through a provider's own adapter, for the admin."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from providers_app.adapters.base import Finish, ModelRequest, ProviderConfig, TextDelta, UpstreamError
from providers_app.registry import adapter_class, all_routes

GLOB_CHARS = set("*?[")


@dataclass(frozen=True, slots=True)
class ConnectionResult:
    ok: bool
    model: str
    message: str
    seconds: float


def probe_model(config: ProviderConfig) -> str | None:
    """A model name to try: ``options.test_model``, else the first route that names one for this provider."""
    if config.options.get("test_model"):
        return str(config.options["test_model"])
    for route in all_routes():
        if route.provider != config.name:
            continue
        if route.upstream_model:
            return route.upstream_model
        if not GLOB_CHARS & set(route.pattern):
            return route.pattern
    return None


def check_connection(config: ProviderConfig, model: str, *, timeout: float = 30.0) -> ConnectionResult:
    """Ask ``model`` for a few tokens (no retries) and report what happened, never raising."""
    adapter = adapter_class(config.adapter)(replace(config, max_retries=0))
    request = ModelRequest(
        model=model,
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Reply with the word: pong"}],
            }
        ],
        max_output_tokens=16,
    )

    async def run() -> str:
        text = []
        try:
            async for chunk in adapter.sample(request, stream=False):
                if isinstance(chunk, TextDelta):
                    text.append(chunk.text)
                elif isinstance(chunk, Finish):
                    break
        finally:
            await adapter.aclose()
        return "".join(text)

    def clean(message: str) -> str:
        return message.replace(config.api_key, "[redacted]") if config.api_key else message

    started = time.perf_counter()
    try:
        text = asyncio.run(asyncio.wait_for(run(), timeout=min(timeout, config.first_byte_timeout + 5)))
    except UpstreamError as exc:
        return ConnectionResult(False, model, clean(exc.message), time.perf_counter() - started)
    except TimeoutError:
        return ConnectionResult(
            False, model, f"No answer within {timeout:.0f} s", time.perf_counter() - started
        )
    except Exception as exc:  # noqa: BLE001 - the operator sees what went wrong instead of a 500
        return ConnectionResult(
            False, model, clean(f"{type(exc).__name__}: {exc}"), time.perf_counter() - started
        )
    reply = text.strip()
    summary = f"answered “{reply[:80]}”" if reply else "answered (no text)"
    return ConnectionResult(True, model, summary, time.perf_counter() - started)
