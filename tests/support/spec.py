"""Validate responses and streamed events against the spec's OpenAPI document (jsonschema)."""

from __future__ import annotations

import copy
import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC = Path(__file__).resolve().parents[1] / "spec" / "openapi.json"

EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedStreamingEvent",
    "response.queued": "ResponseQueuedStreamingEvent",
    "response.in_progress": "ResponseInProgressStreamingEvent",
    "response.completed": "ResponseCompletedStreamingEvent",
    "response.failed": "ResponseFailedStreamingEvent",
    "response.incomplete": "ResponseIncompleteStreamingEvent",
    "response.output_item.added": "ResponseOutputItemAddedStreamingEvent",
    "response.output_item.done": "ResponseOutputItemDoneStreamingEvent",
    "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedStreamingEvent",
    "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneStreamingEvent",
    "response.content_part.added": "ResponseContentPartAddedStreamingEvent",
    "response.content_part.done": "ResponseContentPartDoneStreamingEvent",
    "response.output_text.delta": "ResponseOutputTextDeltaStreamingEvent",
    "response.output_text.done": "ResponseOutputTextDoneStreamingEvent",
    "response.refusal.delta": "ResponseRefusalDeltaStreamingEvent",
    "response.refusal.done": "ResponseRefusalDoneStreamingEvent",
    "response.reasoning.delta": "ResponseReasoningDeltaStreamingEvent",
    "response.reasoning.done": "ResponseReasoningDoneStreamingEvent",
    "response.reasoning_summary_text.delta": "ResponseReasoningSummaryDeltaStreamingEvent",
    "response.reasoning_summary_text.done": "ResponseReasoningSummaryDoneStreamingEvent",
    "response.output_text.annotation.added": "ResponseOutputTextAnnotationAddedStreamingEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaStreamingEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneStreamingEvent",
    "error": "ErrorStreamingEvent",
}


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    doc = json.loads(SPEC.read_text())
    doc = copy.deepcopy(doc)
    # Known generator bug in the 2026-04-24 document: JsonSchemaResponseFormat.schema is {"type": "null"}.
    doc["components"]["schemas"]["JsonSchemaResponseFormat"]["properties"]["schema"] = {"type": "object"}
    return doc


@cache
def validator(schema_name: str) -> Draft202012Validator:
    doc = _document()
    registry = Registry().with_resource(
        "urn:openresponses", Resource.from_contents(doc, default_specification=_spec())
    )
    return Draft202012Validator(
        {"$ref": f"urn:openresponses#/components/schemas/{schema_name}"}, registry=registry
    )


def _spec() -> Any:
    from referencing.jsonschema import DRAFT202012

    return DRAFT202012


def _errors(schema_name: str, value: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in validator(schema_name).iter_errors(value)
    ]


def assert_valid_response(resource: dict[str, Any]) -> None:
    """Every required key present with the right type (spec ``ResponseResource``)."""
    errors = _errors("ResponseResource", resource)
    assert not errors, f"ResponseResource invalid: {errors[:5]}"


def assert_valid_event(event: dict[str, Any]) -> None:
    event_type = event.get("type")
    assert event_type in EVENT_SCHEMAS, f"unknown event type {event_type!r}"
    errors = _errors(EVENT_SCHEMAS[event_type], event)
    assert not errors, f"{event_type} invalid: {errors[:5]}"


def assert_valid_stream(events: list[dict[str, Any]]) -> None:
    """Each event valid, sequence numbers 0, 1, 2…, and a terminal response that is valid too."""
    assert events, "no events"
    for index, event in enumerate(events):
        assert_valid_event(event)
        assert event["sequence_number"] == index, (
            f"sequence_number {event['sequence_number']} at position {index}"
        )
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] in {"response.completed", "response.failed", "response.incomplete"}
    assert_valid_response(events[-1]["response"])


def assert_valid_error(body: dict[str, Any]) -> None:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_valid_ws_error(event: dict[str, Any]) -> None:
    """A WebSocket failure message (spec ``WebSocketErrorEvent``: ``type``, integer ``status``, ``error``)."""
    errors = _errors("WebSocketErrorEvent", event)
    assert not errors, f"WebSocketErrorEvent invalid: {errors[:5]}"


def assert_valid_compact(resource: dict[str, Any]) -> None:
    """A ``POST /v1/responses/compact`` answer (spec ``CompactResource``)."""
    errors = _errors("CompactResource", resource)
    assert not errors, f"CompactResource invalid: {errors[:5]}"
