"""``POST /v1/responses/compact``: a conversation in, a ``response.compaction`` object out."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from responses_app.api.validation import check_model_length, normalize_input, parse_json_body
from responses_app.api.views import api_view, identify, json_response
from responses_app.errors import invalid
from responses_app.services import compaction, flows
from responses_app.types import CompactRequest

COMPACT_FIELDS = {"model", "input", "previous_response_id", "instructions", "prompt_cache_key"}


def validate_compact(body: Any) -> CompactRequest:
    """Check a ``CompactResponseMethodPublicBody``; every problem is a 400 naming its ``param``."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, "invalid_json")
    unknown = sorted(set(body) - COMPACT_FIELDS)
    if unknown:
        raise invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    model = body.get("model")
    if model is None or model == "":
        raise invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    if not isinstance(model, str):
        raise invalid("Invalid type for 'model': expected a string.", "model", "invalid_type")
    check_model_length(model)
    for key in ("previous_response_id", "instructions", "prompt_cache_key"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise invalid(f"Invalid type for '{key}': expected a string.", key, "invalid_type")
    if len(body.get("prompt_cache_key") or "") > 64:
        raise invalid(
            "Invalid 'prompt_cache_key': string too long (max 64).",
            "prompt_cache_key",
            "string_above_max_length",
        )
    previous = body.get("previous_response_id") or None
    raw_input = body.get("input")
    if raw_input is None and previous is None:
        raise invalid(
            "Missing required parameter: 'input' (or 'previous_response_id').",
            "input",
            "missing_required_parameter",
        )
    items, references = normalize_input(raw_input if raw_input is not None else [])
    compaction.check_compaction_items(items)
    return CompactRequest(
        model=model,
        input_items=items,
        previous_response_id=previous,
        instructions=body.get("instructions"),
        item_references=references,
    )


@api_view({"POST"})
async def compact_response(request: HttpRequest) -> HttpResponse:
    identity = await identify(request)
    compact = validate_compact(parse_json_body(request.body))
    resource = await flows.compact(
        request=compact,
        identity=identity,
        request_id=request.openresponses_request_id,  # type: ignore[attr-defined]
    )
    return json_response(resource)
