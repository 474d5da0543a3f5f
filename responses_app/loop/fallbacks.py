"""Fallback providers: a route's next provider answers when the current one fails before its first byte.

A failure counts when nothing of the sample reached the emitter yet and it is a connection error,
a 5xx, a 429 or a timeout (each provider's own retries come first). The response then records the
provider (and upstream model) that answers, and later samples of the loop stay with it. Items keep
their producing provider in ``_meta``, so history sent to the new provider is canonical, as in a
chain that changes provider.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from providers_app.adapters.base import ModelRequest, UpstreamError
from providers_app.registry import aget_adapter, route_for_model
from responses_app.models import Response
from responses_app.observability import tracing

logger = logging.getLogger(__name__)
NO_FALLBACK_CODES = {
    "upstream_auth_failed",
    "tool_not_allowed",
    "upstream_invalid_request",
    "unsupported_parameter",
    "model_not_found",
}


def falls_back(exc: BaseException) -> bool:
    """True for failures another provider may not have: unreachable, 5xx, 429, timeout."""
    if not isinstance(exc, UpstreamError) or exc.code in NO_FALLBACK_CODES:
        return False
    return exc.status == 429 or exc.status >= 500


def response_switch_provider(*, response_id: str, provider: str, upstream_model: str) -> None:
    """Record the provider that answers instead of the routed one."""
    Response.objects.filter(id=response_id).update(provider=provider, upstream_model=upstream_model)


async def sample_with_fallbacks(
    run: Any, adapter: Any, request: ModelRequest, cancel: Any
) -> tuple[bool, Any]:
    """``run._sample`` with the route's fallbacks; returns (completed, the adapter that answered)."""
    from responses_app.gateway.metrics import record_upstream_error
    from responses_app.loop.supervision.db import run_db

    response = run.response
    tried = {response.provider}
    while True:
        try:
            with tracing.span(
                "openresponses.sample",
                {"openresponses.provider": response.provider, "gen_ai.request.model": request.model},
            ):
                return await run._sample(adapter, request, cancel), adapter
        except UpstreamError as exc:
            if run.sample_started or not falls_back(exc):  # (past its first byte: no fallback)
                raise
            route = route_for_model(response.model)
            remaining = [(p, m) for p, m in (route.fallbacks if route else ()) if p not in tried]
            if not remaining:
                raise
            await run.start_stored()  # (what follows stores: only for a stored start)
            await run_db(record_upstream_error, provider=response.provider, code=exc.code)
            provider, model = remaining[0]
            logger.warning(
                "provider %s failed before its first byte (%s); falling back to %s",
                response.provider,
                exc.code,
                provider,
            )
            tried.add(provider)
            adapter = await aget_adapter(provider)
            # Before the request is rebuilt: sealed reasoning opens only for the provider that made it.
            run.emitter.provider, run.emitter.family = provider, adapter.family
            run.emitter.carried_meta = adapter.carried_meta
            run.emitter.sealed_reasoning = adapter.sealed_reasoning
            request = run.request_for(adapter, dataclasses.replace(request, model=model))
            await run_db(
                response_switch_provider, response_id=response.id, provider=provider, upstream_model=model
            )
            response.provider, response.upstream_model = provider, model
            run.emitter.provider = provider
