"""Optional OpenTelemetry traces: one span per API request, per model sample, per tool call.

Only when ``opentelemetry`` is importable (``pip install "openresponses[otel]"``); otherwise every
helper is a no-op costing one dictionary lookup. Spans go to whatever tracer provider the process
configured (for example with ``opentelemetry-instrument`` or your own SDK setup); without one no
span is made at all (the API's default provider would make a non-recording span and its context
per sample, held for the sample's whole stream, only to drop it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator
from contextlib import AbstractContextManager
from typing import Any

_tracer: list[Any] = []


def tracer() -> Any:
    """The ``openresponses`` tracer, or None without OpenTelemetry or without a tracer provider."""
    if not _tracer:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer.append(None)
        else:
            _tracer.append(trace.get_tracer("openresponses"))
    current = _tracer[0]
    if current is not None and _unconfigured(current):
        return None  # (asked each time: a provider may be set after the first span)
    return current


def _unconfigured(current: Any) -> bool:
    """Whether ``current`` is the API's global tracer while the process set no tracer provider
    (its spans would be non-recording ones, dropped)."""
    from opentelemetry import trace

    return isinstance(current, trace.ProxyTracer) and isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


#: What :func:`span` gives without a tracer: one shared, stateless context manager yielding None.
_NO_SPAN = contextlib.nullcontext()


def span(name: str, attributes: dict[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span named ``name`` around the block (nothing without a tracer); yields it or None."""
    current = tracer()
    if current is None:
        return _NO_SPAN  # (no generator frame held for the block: a sample's block is its stream)
    return _opened(current, name, attributes)


@contextlib.contextmanager
def _opened(current: Any, name: str, attributes: dict[str, Any] | None) -> Iterator[Any]:
    clean = {k: v for k, v in (attributes or {}).items() if v is not None and v != ""}
    with current.start_as_current_span(name, attributes=clean) as opened:
        yield opened


def reset() -> None:
    """Look the tracer up again (after a test installs a tracer provider)."""
    _tracer.clear()


async def traced_tool_call(name: str, call: Awaitable[Any]) -> Any:
    """Await a tool call inside an ``openresponses.tool_call`` span."""
    if tracer() is None:
        return await call
    with span("openresponses.tool_call", {"gen_ai.tool.name": name}):
        return await call
