"""Request shapes of the Conversations API: bodies and query strings checked, 400 naming ``param``."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

from responses_app.api.validation import normalize_input
from responses_app.errors import invalid

MAX_ITEMS = 20
#: What ``include`` may ask for (OpenAI's ``ResponseIncludable``); only encrypted reasoning changes
#: what this server returns, the rest has nothing to add here.
INCLUDABLE = {
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
}


def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, "invalid_json")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    return body


def parse_metadata(raw: Any, param: str = "metadata") -> dict[str, str]:
    """Up to 16 string pairs, keys up to 64 characters, values up to 512 (null: none)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    if len(raw) > 16:
        raise invalid(
            f"Invalid '{param}': at most 16 keys are allowed.", param, "object_above_max_properties"
        )
    for key, value in raw.items():
        if len(key) > 64:
            raise invalid(f"Invalid '{param}': key '{key[:20]}…' is longer than 64 characters.", param)
        if not isinstance(value, str):
            raise invalid(
                f"Invalid type for '{param}.{key}': expected a string.", f"{param}.{key}", "invalid_type"
            )
        if len(value) > 512:
            raise invalid(
                f"Invalid '{param}.{key}': value is longer than 512 characters.",
                f"{param}.{key}",
                "string_above_max_length",
            )
    return dict(raw)


def parse_items(raw: Any, *, required: bool) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Canonical items (as for a response's ``input``) and the ``item_reference`` among them."""
    if raw is None:
        if required:
            raise invalid("Missing required parameter: 'items'.", "items", "missing_required_parameter")
        return [], []
    if not isinstance(raw, list):
        raise invalid("Invalid type for 'items': expected an array of items.", "items", "invalid_type")
    if len(raw) > MAX_ITEMS:
        raise invalid(
            f"Invalid 'items': at most {MAX_ITEMS} items can be added at a time.",
            "items",
            "array_above_max_length",
        )
    if required and not raw:
        raise invalid("Invalid 'items': expected at least one item.", "items", "empty_array")
    return normalize_input(raw, param="items")


def parse_create(body: Any) -> tuple[dict[str, str], list[dict[str, Any]], list[tuple[int, str]]]:
    """``POST /v1/conversations``: metadata, items and their references."""
    body = _object(body, {"items", "metadata"})
    items, references = parse_items(body.get("items"), required=False)
    return parse_metadata(body.get("metadata")), items, references


def parse_update(body: Any) -> dict[str, str]:
    """``POST /v1/conversations/{id}``: the new metadata (required; null clears it)."""
    body = _object(body, {"metadata"})
    if "metadata" not in body:
        raise invalid("Missing required parameter: 'metadata'.", "metadata", "missing_required_parameter")
    return parse_metadata(body["metadata"])


def parse_add(body: Any) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """``POST /v1/conversations/{id}/items``: the items to append."""
    body = _object(body, {"items"})
    return parse_items(body.get("items"), required=True)


def parse_include(query: QueryDict) -> set[str]:
    """``include`` (or ``include[]``, as the SDKs send arrays) of a query string."""
    values = query.getlist("include") + query.getlist("include[]")
    for i, value in enumerate(values):
        if value not in INCLUDABLE:
            raise invalid(f"Invalid value for 'include[{i}]': {value!r}.", f"include[{i}]")
    return set(values)


def parse_page(query: QueryDict) -> tuple[str | None, int, str]:
    """``after``, ``limit`` (1..100, default 20) and ``order`` (default ``desc``) of a list request."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit") from None
    if not 1 <= limit <= 100:
        raise invalid("Invalid 'limit': expected an integer between 1 and 100.", "limit")
    order = query.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise invalid("Invalid 'order': expected 'asc' or 'desc'.", "order")
    after = query.get("after") or None
    if after is not None and "\x00" in after:
        raise invalid("Invalid 'after': an id may not contain the NUL character.", "after", "invalid_string")
    return after, limit, order
