"""Tracing: spans only when the process configured a tracer provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from responses_app.observability import tracing


@pytest.fixture(autouse=True)
def fresh_tracer() -> Iterator[None]:
    tracing.reset()
    yield
    tracing.reset()


def test_no_span_is_made_without_a_tracer_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # the process set none

    assert tracing.tracer() is None
    with tracing.span("openresponses.sample", {"gen_ai.request.model": "m"}) as opened:
        assert opened is None


def test_spans_go_to_a_provider_set_after_the_first_look(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    assert tracing.tracer() is None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # as trace.set_tracer_provider does

    with tracing.span("openresponses.sample", {"gen_ai.request.model": "m", "empty": ""}) as opened:
        assert opened is not None and opened.is_recording()

    (finished,) = exporter.get_finished_spans()
    assert finished.name == "openresponses.sample" and dict(finished.attributes) == {
        "gen_ai.request.model": "m"
    }
