"""Validate a create request and normalise it: every problem is a 400 naming the offending ``param``."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from responses_app.errors import ApiError, invalid
from responses_app.ids import (
    custom_tool_call_id,
    function_call_id,
    function_call_output_id,
    message_id,
    new_id,
    reasoning_id,
)
from responses_app.openai_tools import MCP_ITEM_TYPES, PROVIDER_ITEM_TYPES, TOOL_TYPES, WEB_SEARCH_TYPES
from responses_app.types import CreateRequest

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
JSON_SCHEMA_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ROLES = {"user", "system", "developer", "assistant"}
USER_PARTS = {"input_text", "input_image", "input_file"}
SYSTEM_PARTS = {"input_text"}
ASSISTANT_PARTS = {"output_text", "refusal"}
OUTPUT_PARTS = {"input_text", "input_image", "input_file", "input_video"}
EFFORTS = {"none", "minimal", "low", "medium", "high", "xhigh", "max"}
REASONING_KEYS = {"effort", "summary", "generate_summary", "context", "mode"}
REASONING_CONTEXTS = {"auto", "current_turn", "all_turns"}
SUMMARIES = {"concise", "detailed", "auto"}
PHASES = {"commentary", "final_answer"}
IMAGE_DETAILS = {"low", "high", "auto"}
TEXT_FORMATS = {"text", "json_object", "json_schema"}
VERBOSITIES = {"low", "medium", "high"}
TRUNCATIONS = {"auto", "disabled"}
SERVICE_TIERS = {"auto", "default", "flex", "priority", "scale", "fast", "ultrafast"}
INCLUDES = {
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
    "file_search_call.results",
    "web_search_call.action.sources",
    "web_search_call.results",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
}
TOOL_CHOICE_VALUES = {"none", "auto", "required"}
APPROVAL_VALUES = {"always", "never"}
APPROVAL_FILTERS = {"always", "never"}
KNOWN_FIELDS = {
    "model",
    "input",
    "previous_response_id",
    "include",
    "tools",
    "tool_choice",
    "metadata",
    "text",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "background",
    "max_output_tokens",
    "max_tool_calls",
    "reasoning",
    "safety_identifier",
    "prompt_cache_key",
    "truncation",
    "instructions",
    "store",
    "service_tier",
    "top_logprobs",
    "user",
    "conversation",
    "prompt",
    # OpenAI's create request beyond the Open Responses spec (what each does here: services/surface.py)
    "client_metadata",
    "prompt_cache_retention",
    "prompt_cache_options",
    "background_options",
    "context_management",
    "image",
    "moderation",
    "access_programs",
}
MAX_INPUT_CHARS = 10_485_760
#: Longest ``model`` name (the stored column's length; longer names never match a real model).
MAX_MODEL_CHARS = 200
#: Longest client-chosen item ``id`` (the stored column's length).
MAX_ITEM_ID_CHARS = 80
#: Refused on a WebSocket ``response.create``, with why (``stream`` is accepted there and ignored).
WEBSOCKET_DISALLOWED = {
    "stream_options": "every turn streams over the socket, with no stream options",
    "background": "a turn runs while the connection waits for it; use HTTP for background responses",
}


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _required(obj: dict[str, Any], key: str, where: str) -> Any:
    """``obj[key]``, or a 400 ``missing_required_parameter`` naming ``{where}.{key}`` when absent or null."""
    value = obj.get(key)
    if value is None:
        raise invalid(
            f"Missing required parameter: '{where}.{key}'.", f"{where}.{key}", "missing_required_parameter"
        )
    return value


def _expect(value: Any, types: tuple[type, ...], param: str, what: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) and bool not in types:
        raise invalid(
            f"Invalid type for '{param}': expected {what}, but got a boolean.", param, "invalid_type"
        )
    if not isinstance(value, types):
        raise invalid(
            f"Invalid type for '{param}': expected {what}, but got {_type_name(value)}.",
            param,
            "invalid_type",
        )


def _choice(value: Any, allowed: Collection[str], param: str, *, nullable: bool = True) -> Any:
    """``value`` when it is one of ``allowed`` (strings); the type is checked first, so a list or an
    object is an ``invalid_type`` 400, never an "unhashable type" error."""
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise invalid(
            f"Invalid type for '{param}': expected one of {', '.join(map(repr, sorted(allowed)))}, "
            f"but got {_type_name(value)}.",
            param,
            "invalid_type",
        )
    if value not in allowed:
        raise invalid(
            f"Invalid value for '{param}': {_shown(value)}. Supported values are: "
            f"{', '.join(map(repr, sorted(allowed)))}.",
            param,
        )
    return value


def _shown(value: str, limit: int = 60) -> str:
    """A client's string quoted for an error message, cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _number(
    body: dict, key: str, lo: float | None = None, hi: float | None = None, *, integer: bool = False
) -> Any:
    value = body.get(key)
    if value is None:
        return None
    _expect(value, (int,) if integer else (int, float), key, "an integer" if integer else "a number")
    if lo is not None and value < lo:
        raise invalid(f"Invalid '{key}': {value} is below the minimum of {lo}.", key, "below_minimum")
    if hi is not None and value > hi:
        raise invalid(f"Invalid '{key}': {value} is above the maximum of {hi}.", key, "above_maximum")
    return value


def _bool(body: dict, key: str, default: bool | None) -> bool | None:
    value = body.get(key)
    if value is None:
        return default
    _expect(value, (bool,), key, "a boolean")
    return value


def _short_string(body: dict, key: str, max_len: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    _expect(value, (str,), key, "a string")
    if len(value) > max_len:
        raise invalid(
            f"Invalid '{key}': string too long ({len(value)} > {max_len}).", key, "string_above_max_length"
        )
    return value


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    value: Any


#: Shapes of OpenAI's create fields that this server checks but mostly does not act on:
#: a type, a set of allowed strings, a dict of known keys (each optional), ``ListOf(shape)``,
#: ``MapOf(shape)`` (an object with any keys) or ``Any``.
EXTRA_SHAPES: dict[str, Any] = {
    "client_metadata": MapOf(Any),
    "prompt_cache_retention": {"in_memory", "24h"},
    "prompt_cache_options": {
        "comparison_response_id": str,
        "mode": {"implicit", "explicit"},
        "prewarm": bool,
        "ttl": {"30m", "12h"},
    },
    "background_options": {"completion_window": {"soonest", "2h", "8h"}, "continuation_id": str},
    "context_management": ListOf({"type": str, "compact_threshold": int}),
    "image": {"context_compression": {"auto", "enabled", "disabled"}},
    "moderation": {
        "model": str,
        "policy": {"input": {"mode": {"score", "block"}}, "output": {"mode": {"score", "block"}}},
    },
    "access_programs": {"cyber": {"standard", "daybreak_blue", "daybreak_red"}},
    "stream_options": {"include_obfuscation": bool},
    "prompt": {"id": str, "version": str, "variables": MapOf(Any)},
}


def check_shape(value: Any, shape: Any, param: str) -> None:
    """``value`` (not null) against one of the :data:`EXTRA_SHAPES`; a 400 naming the param if not."""
    if shape is Any:
        return
    if isinstance(shape, type):
        _expect(value, (shape,), param, _TYPE_WORDS.get(shape, shape.__name__))
    elif isinstance(shape, set):
        _choice(value, shape, param, nullable=False)
    elif isinstance(shape, dict):
        _expect(value, (dict,), param, "an object")
        for key, child in value.items():
            if key not in shape:
                raise invalid(f"Unknown parameter: '{param}.{key}'.", f"{param}.{key}", "unknown_parameter")
            if child is not None:
                check_shape(child, shape[key], f"{param}.{key}")
    elif isinstance(shape, ListOf):
        _expect(value, (list,), param, "an array")
        for i, child in enumerate(value):
            check_shape(child, shape.item, f"{param}[{i}]")
    elif isinstance(shape, MapOf):
        _expect(value, (dict,), param, "an object")
        for key, child in value.items():
            if child is not None:
                check_shape(child, shape.value, f"{param}.{key}")
    else:  # pragma: no cover - a mistake in EXTRA_SHAPES
        raise TypeError(f"unknown shape {shape!r}")


_TYPE_WORDS = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "an array"}


def _flatten(body: dict[str, Any]) -> dict[str, Any]:
    """The fields set in ``body`` by dotted name: objects of known fields one level deep."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, dict) and key in FLATTENED:
            for sub, subvalue in value.items():
                if subvalue is not None:
                    out[f"{key}.{sub}"] = subvalue
        else:
            out[key] = value
    return out


#: Objects whose keys are looked at one by one (each key has its own meaning per provider).
FLATTENED = {
    "reasoning",
    "text",
    "stream_options",
    "prompt_cache_options",
    "background_options",
    "image",
    "access_programs",
}


def check_model_length(model: str) -> None:
    if len(model) > MAX_MODEL_CHARS:
        raise invalid(
            f"Invalid 'model': string too long ({len(model)} > {MAX_MODEL_CHARS}).",
            "model",
            "string_above_max_length",
        )


def validate_create(
    body: Any, *, hosted_tool_names: frozenset[str] = frozenset(), websocket: bool = False
) -> CreateRequest:
    """``websocket=True``: a WebSocket ``response.create`` (``stream_options`` and ``background`` refused;
    ``stream`` checked, then ignored: every turn streams)."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, "invalid_json")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    if websocket:
        for key, why in WEBSOCKET_DISALLOWED.items():
            if key in body:
                raise invalid(
                    f"'{key}' is not supported in WebSocket mode: {why}.", key, "unsupported_parameter"
                )

    model = body.get("model")
    if model is None or model == "":
        raise invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    _expect(model, (str,), "model", "a string")
    check_model_length(model)

    previous = body.get("previous_response_id")
    _expect(previous, (str,), "previous_response_id", "a string", nullable=True)
    if previous is not None and not previous:
        raise invalid("Invalid 'previous_response_id': empty string.", "previous_response_id")

    conversation = parse_conversation(body.get("conversation"))
    if conversation is not None and previous is not None:
        raise invalid(
            "Mutually exclusive parameters: send either 'previous_response_id' or 'conversation', not both.",
            "conversation",
            "mutually_exclusive_parameters",
        )

    raw_input = body.get("input")
    if raw_input is None:
        if previous is None and conversation is None:
            raise invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        raw_input = []
    instructions = body.get("instructions")
    _expect(instructions, (str,), "instructions", "a string", nullable=True)

    input_items, references = normalize_input(raw_input)

    tools = normalize_tools(body.get("tools"), hosted_tool_names)
    tool_choice = normalize_tool_choice(body.get("tool_choice"), tools)

    stream = _bool(body, "stream", False)
    background = _bool(body, "background", False)
    store = _bool(body, "store", True)
    if background and not store:
        raise invalid(
            "Background responses must be stored: 'store' cannot be false with 'background'.", "store"
        )
    for key, shape in EXTRA_SHAPES.items():
        if body.get(key) is not None:
            check_shape(body[key], shape, key)

    metadata = body.get("metadata")
    _expect(metadata, (dict,), "metadata", "an object", nullable=True)
    metadata = metadata or {}
    if len(metadata) > 16:
        raise invalid(
            "Invalid 'metadata': at most 16 keys are allowed.", "metadata", "object_above_max_properties"
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise invalid(f"Invalid 'metadata': key '{key[:20]}…' is longer than 64 characters.", "metadata")
        _expect(value, (str,), f"metadata.{key}", "a string")
        if len(value) > 512:
            raise invalid(
                f"Invalid 'metadata.{key}': value is longer than 512 characters.",
                f"metadata.{key}",
                "string_above_max_length",
            )

    text = normalize_text(body.get("text"))
    reasoning = normalize_reasoning(body.get("reasoning"))

    truncation = _choice(body.get("truncation"), TRUNCATIONS, "truncation") or "disabled"
    service_tier = _choice(body.get("service_tier"), SERVICE_TIERS, "service_tier") or "default"
    include = body.get("include")
    _expect(include, (list,), "include", "an array", nullable=True)
    include = [
        _choice(value, INCLUDES, f"include[{i}]", nullable=False) for i, value in enumerate(include or [])
    ]

    params = {
        "instructions": instructions,
        "tools": tools,
        "tool_choice": tool_choice,
        "truncation": truncation,
        "parallel_tool_calls": _bool(body, "parallel_tool_calls", True),
        "text": text,
        "top_p": _number(body, "top_p", 0, 1),
        "presence_penalty": _number(body, "presence_penalty", -2, 2),
        "frequency_penalty": _number(body, "frequency_penalty", -2, 2),
        "top_logprobs": _number(body, "top_logprobs", 0, 20, integer=True),
        "temperature": _number(body, "temperature", 0, 2),
        "reasoning": reasoning,
        "max_output_tokens": _number(body, "max_output_tokens", 16, None, integer=True),
        "max_tool_calls": _number(body, "max_tool_calls", 1, None, integer=True),
        "service_tier": service_tier,
        "metadata": metadata,
        "safety_identifier": _short_string(body, "safety_identifier", 128),
        "prompt_cache_key": _short_string(body, "prompt_cache_key", 64),
        "user": _short_string(body, "user", 256),
        "include": include,
        "prompt_cache_retention": body.get("prompt_cache_retention"),
    }
    return CreateRequest(
        model=model,
        params=params,
        input_items=input_items,
        previous_response_id=previous,
        conversation_id=conversation,
        stream=bool(stream),
        background=bool(background),
        store=bool(store),
        item_references=references,
        fields=_flatten(body),
    )


def parse_conversation(raw: Any) -> str | None:
    """The conversation id of ``conversation``: ``"conv_…"`` or ``{"id": "conv_…"}``."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"id"})
        if unknown:
            raise invalid(
                f"Unknown parameter: 'conversation.{unknown[0]}'.",
                f"conversation.{unknown[0]}",
                "unknown_parameter",
            )
        conversation_id = raw.get("id")
        _expect(conversation_id, (str,), "conversation.id", "a string")
        param = "conversation.id"
    else:
        _expect(raw, (str,), "conversation", "a string or an object with an 'id'")
        conversation_id, param = raw, "conversation"
    if not conversation_id:
        raise invalid(f"Invalid '{param}': empty string.", param)
    return conversation_id


def normalize_input(raw: Any, param: str = "input") -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Canonical input items (messages always with a content list, ids assigned)."""
    if isinstance(raw, str):
        if len(raw) > MAX_INPUT_CHARS:
            raise invalid(f"Invalid '{param}': string too long.", param, "string_above_max_length")
        return [_message("user", [{"type": "input_text", "text": raw}])], []
    if not isinstance(raw, list):
        raise invalid(
            f"Invalid type for '{param}': expected a string or an array of input items, but got {_type_name(raw)}.",
            param,
            "invalid_type",
        )
    items: list[dict[str, Any]] = []
    references: list[tuple[int, str]] = []
    for index, item in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(item, dict):
            raise invalid(
                f"Invalid type for '{where}': expected an input item object, but got {_type_name(item)}.",
                where,
                "invalid_type",
            )
        item_type = item.get("type")
        if item_type is not None and not isinstance(item_type, str):
            raise invalid(
                f"Invalid type for '{where}.type': expected a string, but got {_type_name(item_type)}.",
                f"{where}.type",
                "invalid_type",
            )
        if item_type is None and "role" in item:
            item_type = "message"
        if item_type == "message":
            items.append(_normalize_message(item, where))
        elif item_type == "function_call":
            items.append(_normalize_function_call(item, where))
        elif item_type == "function_call_output":
            items.append(_normalize_function_call_output(item, where))
        elif item_type in ("custom_tool_call", "custom_tool_call_output"):
            items.append(normalize_custom_tool_item(item, where))
        elif item_type in PROVIDER_ITEM_TYPES:
            items.append(normalize_provider_item(item, where))
        elif item_type in MCP_ITEM_TYPES:
            items.append(normalize_mcp_item(item, where))
        elif item_type == "reasoning":
            items.append(_normalize_reasoning_item(item, where))
        elif item_type == "compaction":
            items.append(_normalize_compaction_item(item, where))
        elif item_type == "item_reference" or (item_type is None and "id" in item):
            ref = item.get("id")
            _expect(ref, (str,), f"{where}.id", "a string")
            references.append((len(items), ref))
            items.append({"type": "item_reference", "id": ref})
        elif item_type is None:
            raise invalid(
                f"Missing required parameter: '{where}.type'.", f"{where}.type", "missing_required_parameter"
            )
        else:
            raise invalid(
                f"Invalid value for '{where}.type': {item_type!r}. Supported item types are 'message', 'function_call', "
                "'function_call_output', 'custom_tool_call', 'custom_tool_call_output', 'mcp_approval_response', 'reasoning', 'compaction' and "
                "'item_reference'.",
                f"{where}.type",
            )
    return items, references


def _item_id(item: dict[str, Any], where: str) -> str | None:
    """An input item's own ``id``: a string of at most ``MAX_ITEM_ID_CHARS`` (it is stored as given)."""
    item_id = item.get("id")
    _expect(item_id, (str,), f"{where}.id", "a string", nullable=True)
    if item_id is not None and len(item_id) > MAX_ITEM_ID_CHARS:
        raise invalid(
            f"Invalid '{where}.id': string too long ({len(item_id)} > {MAX_ITEM_ID_CHARS}).",
            f"{where}.id",
            "string_above_max_length",
        )
    return item_id or None


def _normalize_compaction_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    encrypted = item.get("encrypted_content")
    _expect(encrypted, (str,), f"{where}.encrypted_content", "a string")
    return {
        "type": "compaction",
        "id": _item_id(item, where) or new_id("cmp"),
        "encrypted_content": encrypted,
    }


def _message(
    role: str, content: list[dict[str, Any]], item_id: str | None = None, phase: str | None = None
) -> dict[str, Any]:
    message = {
        "type": "message",
        "id": item_id or message_id(),
        "status": "completed",
        "role": role,
        "content": content,
    }
    if phase:
        message["phase"] = phase
    return message


def _normalize_message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = _required(item, "role", where)
    _choice(role, ROLES, f"{where}.role")
    content = _required(item, "content", where)
    default_part = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts = [_text_part(default_part, content)]
    elif isinstance(content, list):
        allowed = ASSISTANT_PARTS if role == "assistant" else USER_PARTS if role == "user" else SYSTEM_PARTS
        parts = [_normalize_part(part, f"{where}.content[{i}]", allowed) for i, part in enumerate(content)]
    else:
        raise invalid(
            f"Invalid type for '{where}.content': expected a string or an array of content parts, but got {_type_name(content)}.",
            f"{where}.content",
            "invalid_type",
        )
    phase = _choice(item.get("phase"), PHASES, f"{where}.phase")
    item_id = _item_id(item, where)
    return _message(role, parts, item_id, phase)


def _text_part(part_type: str, text: str) -> dict[str, Any]:
    if part_type == "output_text":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": part_type, "text": text}


def _normalize_part(part: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid(
            f"Invalid type for '{where}': expected a content part object, but got {_type_name(part)}.",
            where,
            "invalid_type",
        )
    part_type = _required(part, "type", where)
    _choice(part_type, allowed, f"{where}.type")
    if part_type in {"input_text", "output_text"}:
        text = part.get("text")
        _expect(text, (str,), f"{where}.text", "a string")
        out = _text_part(part_type, text)
        annotations = part.get("annotations")
        if part_type == "output_text" and annotations:
            _expect(annotations, (list,), f"{where}.annotations", "an array")
            for i, annotation in enumerate(annotations):
                _expect(annotation, (dict,), f"{where}.annotations[{i}]", "an object")
            out["annotations"] = annotations
        return out
    if part_type == "refusal":
        refusal = part.get("refusal")
        _expect(refusal, (str,), f"{where}.refusal", "a string")
        return {"type": "refusal", "refusal": refusal}
    if part_type == "input_image":
        url = part.get("image_url")
        if part.get("file_id") is not None:
            raise invalid(
                "File ids are not supported: send the image as 'image_url' (an http(s) or data URL).",
                f"{where}.file_id",
                "unsupported_parameter",
            )
        _expect(url, (str,), f"{where}.image_url", "a string")
        if not (url.startswith(("http://", "https://")) or url.startswith("data:image/")):
            raise invalid(
                f"Invalid '{where}.image_url': expected an http(s) URL or a data:image/… URL.",
                f"{where}.image_url",
                "invalid_image_url",
            )
        detail = _choice(part.get("detail"), IMAGE_DETAILS, f"{where}.detail") or "auto"
        return {"type": "input_image", "image_url": url, "detail": detail}
    if part_type == "input_file":
        out: dict[str, Any] = {"type": "input_file"}
        for key in ("filename", "file_data", "file_url"):
            value = part.get(key)
            _expect(value, (str,), f"{where}.{key}", "a string", nullable=True)
            if value is not None:
                out[key] = value
        if part.get("file_id") is not None:
            raise invalid(
                "File ids are not supported: send the file as 'file_data' or 'file_url'.",
                f"{where}.file_id",
                "unsupported_parameter",
            )
        if "file_url" in out and not out["file_url"].lower().startswith(("http://", "https://", "data:")):
            # file:// and other schemes would be fetched by whoever reads it (issue 16).
            raise invalid(
                f"Invalid '{where}.file_url': expected an http(s) URL or a data: URL.",
                f"{where}.file_url",
                "invalid_file_url",
            )
        if "file_data" not in out and "file_url" not in out:
            raise invalid(
                f"Missing '{where}.file_data' or '{where}.file_url'.",
                f"{where}.file_data",
                "missing_required_parameter",
            )
        return out
    if part_type == "input_video":
        url = part.get("video_url")
        _expect(url, (str,), f"{where}.video_url", "a string")
        return {"type": "input_video", "video_url": url}
    raise invalid(f"Invalid value for '{where}.type': {part_type!r}.", f"{where}.type")


def _normalize_function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    for key in ("call_id", "name", "arguments"):
        if item.get(key) is None:
            raise invalid(
                f"Missing required parameter: '{where}.{key}'.",
                f"{where}.{key}",
                "missing_required_parameter",
            )
        _expect(item[key], (str,), f"{where}.{key}", "a string")
    if not NAME_RE.match(item["name"]):
        raise invalid(
            f"Invalid '{where}.name': must match ^[a-zA-Z0-9_-]+$ and be at most 64 characters.",
            f"{where}.name",
        )
    out = {
        "type": "function_call",
        "id": _item_id(item, where) or function_call_id(),
        "call_id": item["call_id"],
        "name": item["name"],
        "arguments": item["arguments"],
        "status": "completed",
    }
    namespace = item.get("namespace")
    _expect(namespace, (str,), f"{where}.namespace", "a string", nullable=True)
    if namespace:
        out["namespace"] = namespace
    return out


def _normalize_function_call_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _required(item, "call_id", where)
    _expect(call_id, (str,), f"{where}.call_id", "a string")
    output = _required(item, "output", where)
    if isinstance(output, list):
        output = [
            _normalize_part(part, f"{where}.output[{i}]", OUTPUT_PARTS) for i, part in enumerate(output)
        ]
    else:
        _expect(output, (str,), f"{where}.output", "a string or an array of content parts")
    return {
        "type": "function_call_output",
        "id": _item_id(item, where) or function_call_output_id(),
        "call_id": call_id,
        "output": output,
        "status": "completed",
    }


def _normalize_reasoning_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    summary = item.get("summary") or []
    _expect(summary, (list,), f"{where}.summary", "an array")
    parts = []
    for i, part in enumerate(summary):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise invalid(
                f"Invalid '{where}.summary[{i}]': expected {{'type': 'summary_text', 'text': …}}.",
                f"{where}.summary[{i}]",
            )
        parts.append({"type": "summary_text", "text": part["text"]})
    encrypted = item.get("encrypted_content")
    _expect(encrypted, (str,), f"{where}.encrypted_content", "a string", nullable=True)
    out: dict[str, Any] = {
        "type": "reasoning",
        "id": _item_id(item, where) or reasoning_id(),
        "summary": parts,
    }
    if encrypted:
        out["encrypted_content"] = encrypted
    if isinstance(item.get("content"), list):
        out["content"] = item["content"]
    return out


def normalize_tools(raw: Any, hosted_tool_names: frozenset[str]) -> list[dict[str, Any]]:
    """The request's tools. ``function``, ``custom`` and ``namespace`` are checked and echoed in
    full; ``mcp`` and OpenAI's hosted types are kept as sent (what each provider gets of them is
    decided per provider by ``responses_app.loop.tool_types``)."""
    if raw is None:
        return []
    _expect(raw, (list,), "tools", "an array")
    tools = []
    seen: set[str] = set()
    namespaces: set[str] = set()
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        _expect(tool, (dict,), where, "a tool object")
        tool_type = _required(tool, "type", where)
        _choice(tool_type, TOOL_TYPES, f"{where}.type")  # the type first: never an unhashable value
        if tool_type == "mcp":
            tools.append(_mcp_tool(tool, where))
            continue
        if tool_type in ("function", "custom"):
            echo = _named_tool(tool, where, seen)
            if tool_type == "function" and echo["parameters"] is None and echo["name"] in hosted_tool_names:
                echo["hosted"] = True
            tools.append(echo)
            continue
        if tool_type == "namespace":
            tools.append(_namespace_tool(tool, where, namespaces))
            continue
        if tool_type not in TOOL_TYPES:
            raise invalid(
                f"Invalid value for '{where}.type': {tool_type!r}. Supported tool types are "
                f"{', '.join(repr(t) for t in sorted(TOOL_TYPES))}.",
                f"{where}.type",
            )
        if tool_type in WEB_SEARCH_TYPES:
            _web_search_tool(tool, where)  # its options are translated for other providers' searches
        tools.append(dict(tool))  # a hosted type: forwarded, omitted or refused per provider
    return tools


def _web_search_tool(tool: dict[str, Any], where: str) -> None:
    """The options of a ``web_search`` tool that adapters read, of the types OpenAI defines."""
    filters = tool.get("filters")
    _expect(filters, (dict,), f"{where}.filters", "an object", nullable=True)
    if filters is not None and filters.get("allowed_domains") is not None:
        _string_list(filters["allowed_domains"], f"{where}.filters.allowed_domains")
    location = tool.get("user_location")
    _expect(location, (dict,), f"{where}.user_location", "an object", nullable=True)
    for key in ("type", "city", "region", "country", "timezone"):
        value = (location or {}).get(key)
        _expect(value, (str,), f"{where}.user_location.{key}", "a string", nullable=True)
    _choice(tool.get("search_context_size"), ("low", "medium", "high"), f"{where}.search_context_size")
    _expect(
        tool.get("external_web_access"), (bool,), f"{where}.external_web_access", "a boolean", nullable=True
    )


def _tool_name(tool: dict[str, Any], where: str) -> str:
    name = _required(tool, "name", where)
    _expect(name, (str,), f"{where}.name", "a string")
    if not NAME_RE.match(name):
        raise invalid(
            f"Invalid '{where}.name': must match ^[a-zA-Z0-9_-]+$ and be at most 64 characters.",
            f"{where}.name",
        )
    return name


def _named_tool(tool: dict[str, Any], where: str, seen: set[str]) -> dict[str, Any]:
    """A ``function`` or ``custom`` tool as echoed; its name unique among ``seen``."""
    name = _tool_name(tool, where)
    if name in seen:
        raise invalid(f"Duplicate tool name '{name}' in 'tools'.", f"{where}.name", "duplicate_tool_name")
    seen.add(name)
    description = tool.get("description")
    _expect(description, (str,), f"{where}.description", "a string", nullable=True)
    if tool.get("type") == "custom":
        echo: dict[str, Any] = {"type": "custom", "name": name, "description": description}
        fmt = tool.get("format")
        _expect(fmt, (dict,), f"{where}.format", "an object", nullable=True)
        if fmt is not None:
            echo["format"] = _custom_format(fmt, f"{where}.format")
        return echo
    parameters = tool.get("parameters")
    _expect(parameters, (dict,), f"{where}.parameters", "an object", nullable=True)
    strict = tool.get("strict")
    _expect(strict, (bool,), f"{where}.strict", "a boolean", nullable=True)
    return {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": parameters,
        "strict": strict,
    }


def _custom_format(fmt: dict[str, Any], where: str) -> dict[str, Any]:
    kind = fmt.get("type")
    if kind == "text":
        return {"type": "text"}
    if kind != "grammar":
        raise invalid(
            f"Invalid value for '{where}.type': {kind!r}. Supported values are 'text' and 'grammar'.",
            f"{where}.type",
        )
    syntax = fmt.get("syntax")
    if syntax not in ("lark", "regex"):
        raise invalid(
            f"Invalid value for '{where}.syntax': {syntax!r}. Supported values are 'lark' and 'regex'.",
            f"{where}.syntax",
        )
    definition = fmt.get("definition")
    _expect(definition, (str,), f"{where}.definition", "a string")
    return {"type": "grammar", "syntax": syntax, "definition": definition}


def _namespace_tool(tool: dict[str, Any], where: str, namespaces: set[str]) -> dict[str, Any]:
    """A ``namespace`` tool (function and custom tools under one name, as Codex CLI sends)."""
    name = _tool_name(tool, where)
    if name in namespaces:
        raise invalid(f"Duplicate namespace '{name}' in 'tools'.", f"{where}.name", "duplicate_tool_name")
    namespaces.add(name)
    description = tool.get("description")
    _expect(description, (str,), f"{where}.description", "a string", nullable=True)
    inner = tool.get("tools")
    _expect(inner, (list,), f"{where}.tools", "an array")
    if not inner:
        raise invalid(f"Invalid '{where}.tools': a namespace holds at least one tool.", f"{where}.tools")
    seen: set[str] = set()
    echoed = []
    for j, member in enumerate(inner):
        member_where = f"{where}.tools[{j}]"
        if not isinstance(member, dict):
            raise invalid(
                f"Invalid type for '{member_where}': expected a tool object, but got {_type_name(member)}.",
                member_where,
                "invalid_type",
            )
        if member.get("type") not in ("function", "custom"):
            raise invalid(
                f"Invalid value for '{member_where}.type': {member.get('type')!r}. "
                "A namespace holds 'function' and 'custom' tools.",
                f"{member_where}.type",
            )
        echoed.append(_named_tool(member, member_where, seen))
    return {"type": "namespace", "name": name, "description": description, "tools": echoed}


def normalize_custom_tool_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``custom_tool_call`` or ``custom_tool_call_output`` input item (free-form tool calls)."""
    call_id = _required(item, "call_id", where)
    _expect(call_id, (str,), f"{where}.call_id", "a string")
    if item["type"] == "custom_tool_call_output":
        out = _normalize_function_call_output(item, where)
        return {**out, "type": "custom_tool_call_output"}
    name = _tool_name(item, where)
    text = item.get("input")
    _expect(text, (str,), f"{where}.input", "a string")
    namespace = item.get("namespace")
    _expect(namespace, (str,), f"{where}.namespace", "a string", nullable=True)
    out = {
        "type": "custom_tool_call",
        "id": item.get("id") or custom_tool_call_id(),
        "call_id": call_id,
        "name": name,
        "input": text,
        "status": "completed",
    }
    if namespace:
        out["namespace"] = namespace
    return out


def normalize_provider_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    """An item of one of OpenAI's own tools (``web_search_call``, ``local_shell_call``…), as a
    client sends back what an OpenAI model made: kept as it is, for that provider only."""
    for key in ("id", "call_id", "status"):
        _expect(item.get(key), (str,), f"{where}.{key}", "a string", nullable=True)
    out = {k: v for k, v in item.items() if k != "_meta"}
    out["id"] = item.get("id") or new_id(item["type"].split("_")[0][:4])
    out["status"] = item.get("status") or "completed"
    return out


def normalize_mcp_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    """An MCP item: the client's ``mcp_approval_response``, or one the server emitted, sent back
    (as clients do with ``store: false``)."""
    kind = item["type"]
    if kind == "mcp_approval_response":
        request_id = _required(item, "approval_request_id", where)
        _expect(request_id, (str,), f"{where}.approval_request_id", "a string")
        approve = _required(item, "approve", where)
        _expect(approve, (bool,), f"{where}.approve", "a boolean")
        reason = item.get("reason")
        _expect(reason, (str,), f"{where}.reason", "a string", nullable=True)
        return {
            "type": kind,
            "id": item.get("id") or new_id("mcpa"),
            "approval_request_id": request_id,
            "approve": approve,
            "reason": reason,
        }
    item_id = _required(item, "id", where)
    _expect(item_id, (str,), f"{where}.id", "a string")
    for key in ("server_label",) + (("name", "arguments") if kind != "mcp_list_tools" else ()):
        _expect(item.get(key), (str,), f"{where}.{key}", "a string")
    return {k: v for k, v in item.items() if k != "_meta"}


def _choice_names(tools: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Names a ``tool_choice`` may name, by tool type (functions of namespaces included)."""
    names: dict[str, set[str]] = {"function": set(), "custom": set()}
    for tool in tools:
        members = tool.get("tools") or [] if tool["type"] == "namespace" else [tool]
        for member in members:
            if member.get("type") in names:
                names[member["type"]].add(member["name"])
    return names


def _string_list(value: Any, param: str) -> list[str]:
    _expect(value, (list,), param, "an array of strings")
    for i, entry in enumerate(value):
        _expect(entry, (str,), f"{param}[{i}]", "a string")
    return value


def _tool_names_filter(value: Any, param: str) -> None:
    """``{"tool_names": [...], "read_only": bool}`` (both optional)."""
    _expect(value, (dict,), param, "an object")
    if value.get("tool_names") is not None:
        _string_list(value["tool_names"], f"{param}.tool_names")
    _expect(value.get("read_only"), (bool,), f"{param}.read_only", "a boolean", nullable=True)


def _mcp_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """OpenAI's MCP tool shape; every field the loop reads is checked here, so the loop may trust it."""
    for key in ("server_label", "server_url"):
        _expect(tool.get(key), (str,), f"{where}.{key}", "a string")
    if not tool["server_url"].lower().startswith(("http://", "https://")):
        raise invalid(f"Invalid '{where}.server_url': expected an http(s) URL.", f"{where}.server_url")
    for key in ("server_description", "authorization", "connector_id"):
        _expect(tool.get(key), (str,), f"{where}.{key}", "a string", nullable=True)
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        _tool_names_filter(allowed, f"{where}.allowed_tools")
    elif allowed is not None:
        _string_list(allowed, f"{where}.allowed_tools")
    headers = tool.get("headers")
    _expect(headers, (dict,), f"{where}.headers", "an object", nullable=True)
    for key, value in (headers or {}).items():
        _expect(value, (str,), f"{where}.headers.{key}", "a string")
    approval = tool.get("require_approval")
    if isinstance(approval, dict):
        for key, value in approval.items():
            _choice(key, APPROVAL_FILTERS, f"{where}.require_approval")
            if value is not None:
                _tool_names_filter(value, f"{where}.require_approval.{key}")
    else:
        _choice(approval, APPROVAL_VALUES, f"{where}.require_approval")
    return dict(tool)


def normalize_tool_choice(raw: Any, tools: list[dict[str, Any]]) -> Any:
    if raw is None:
        return "auto"
    names = _choice_names(tools)
    types = {t["type"] for t in tools}
    if isinstance(raw, str):
        _choice(raw, TOOL_CHOICE_VALUES, "tool_choice")
        if raw == "required" and not tools:
            raise invalid("'tool_choice' is 'required' but no tools were given.", "tool_choice")
        return raw
    if not isinstance(raw, dict):
        raise invalid(
            f"Invalid type for 'tool_choice': expected a string or an object, but got {_type_name(raw)}.",
            "tool_choice",
            "invalid_type",
        )
    kind = raw.get("type")
    _expect(kind, (str,), "tool_choice.type", "a string", nullable=True)
    if kind in ("function", "custom"):
        name = raw.get("name")
        _expect(name, (str,), "tool_choice.name", "a string")
        if name not in names[kind]:
            raise invalid(
                f"Invalid 'tool_choice.name': no {kind} tool named {name!r} in 'tools'.",
                "tool_choice.name",
                "unknown_tool",
            )
        return {"type": kind, "name": name}
    if kind == "allowed_tools":
        allowed = raw.get("tools")
        _expect(allowed, (list,), "tool_choice.tools", "an array")
        if not 1 <= len(allowed) <= 128:
            raise invalid("'tool_choice.tools' must list between 1 and 128 tools.", "tool_choice.tools")
        out = []
        for i, entry in enumerate(allowed):
            entry_type = entry.get("type") if isinstance(entry, dict) else None
            _expect(entry_type, (str,), f"tool_choice.tools[{i}].type", "a string", nullable=True)
            if entry_type in ("function", "custom"):
                if not isinstance(entry.get("name"), str):
                    raise invalid(
                        f"Invalid 'tool_choice.tools[{i}]': expected {{'type': '{entry_type}', 'name': …}}.",
                        f"tool_choice.tools[{i}]",
                    )
                if entry["name"] not in names[entry_type]:
                    raise invalid(
                        f"Invalid 'tool_choice.tools[{i}].name': no {entry_type} tool named {entry['name']!r}.",
                        f"tool_choice.tools[{i}].name",
                        "unknown_tool",
                    )
                out.append({"type": entry_type, "name": entry["name"]})
            elif entry_type in types and entry_type not in ("function", "custom", "namespace", "mcp"):
                out.append({"type": entry_type})
            else:
                raise invalid(
                    f"Invalid 'tool_choice.tools[{i}]': expected {{'type': 'function', 'name': …}} "
                    "or the type of a hosted tool in 'tools'.",
                    f"tool_choice.tools[{i}]",
                )
        mode = _choice(raw.get("mode"), TOOL_CHOICE_VALUES, "tool_choice.mode") or "auto"
        return {"type": "allowed_tools", "tools": out, "mode": mode}
    if kind in TOOL_TYPES - {"function", "custom", "namespace", "mcp"}:
        if kind not in types:
            raise invalid(
                f"Invalid 'tool_choice': no tool of type {kind!r} in 'tools'.",
                "tool_choice.type",
                "unknown_tool",
            )
        return {"type": kind}
    raise invalid(
        f"Invalid value for 'tool_choice.type': {kind!r}. Supported values are 'function', 'custom', "
        "'allowed_tools' and the type of a hosted tool in 'tools'.",
        "tool_choice.type",
    )


def normalize_text(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {"format": {"type": "text"}}
    _expect(raw, (dict,), "text", "an object")
    for key in raw:
        if key not in {"format", "verbosity"}:
            raise invalid(f"Unknown parameter: 'text.{key}'.", f"text.{key}", "unknown_parameter")
    out: dict[str, Any] = {}
    fmt = raw.get("format")
    if fmt is None:
        out["format"] = {"type": "text"}
    else:
        _expect(fmt, (dict,), "text.format", "an object")
        kind = _choice(fmt.get("type"), TEXT_FORMATS, "text.format.type", nullable=False)
        if kind in {"text", "json_object"}:
            out["format"] = {"type": kind}
        elif kind == "json_schema":
            name = fmt.get("name")
            _expect(name, (str,), "text.format.name", "a string")
            if not JSON_SCHEMA_NAME_RE.match(name):
                raise invalid(
                    "Invalid 'text.format.name': must match ^[a-zA-Z0-9_-]+$ and be at most 64 characters.",
                    "text.format.name",
                )
            schema = fmt.get("schema")
            _expect(schema, (dict,), "text.format.schema", "an object")
            description = fmt.get("description")
            _expect(description, (str,), "text.format.description", "a string", nullable=True)
            strict = fmt.get("strict")
            _expect(strict, (bool,), "text.format.strict", "a boolean", nullable=True)
            out["format"] = {
                "type": "json_schema",
                "name": name,
                "description": description,
                "schema": schema,
                "strict": bool(strict),
            }
    verbosity = _choice(raw.get("verbosity"), VERBOSITIES, "text.verbosity")
    if verbosity is not None:
        out["verbosity"] = verbosity
    return out


def normalize_reasoning(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    _expect(raw, (dict,), "reasoning", "an object")
    for key in raw:
        if key not in REASONING_KEYS:
            raise invalid(f"Unknown parameter: 'reasoning.{key}'.", f"reasoning.{key}", "unknown_parameter")
    effort = _choice(raw.get("effort"), EFFORTS, "reasoning.effort")
    summary = _choice(raw.get("summary"), SUMMARIES, "reasoning.summary")
    # ``generate_summary``: OpenAI's deprecated name of ``summary``.
    summary = summary or _choice(raw.get("generate_summary"), SUMMARIES, "reasoning.generate_summary")
    _choice(raw.get("context"), REASONING_CONTEXTS, "reasoning.context")
    _expect(raw.get("mode"), (str,), "reasoning.mode", "a string", nullable=True)
    return {"effort": effort, "summary": summary}


def parse_json_body(raw: bytes) -> Any:
    """Decode the body or raise a 400 that says what is wrong with it."""
    if not raw:
        raise ApiError(400, "The request body is empty: send a JSON object.", code="invalid_json")
    return parse_json(raw, "request body")


def parse_json(raw: str | bytes, what: str = "request body") -> Any:
    """Strict JSON for every front end (HTTP, WebSocket, compact): a 400 ``invalid_json`` for what
    the standard library would accept or choke on but no client should send — ``NaN``/``Infinity``,
    nesting deeper than ``MAX_JSON_DEPTH``, a lone UTF-16 surrogate (``"\\ud800"``) — and a 400
    naming the ``param`` for a NUL character in an identifier (a model name, a response, conversation
    or item id: they are looked up in text columns). NUL anywhere else (a tool's output, a text) is
    stored as sent (``responses_app.models.StoredJSONEncoder``).
    """
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ApiError(400, f"The {what} is not valid UTF-8.", code="invalid_json") from None
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError as exc:
        raise ApiError(400, f"The {what} is not valid JSON: {exc}.", code="invalid_json") from None
    escapes = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    check_json_value(data, what, strings=_MAYBE_BAD_STRING.search(escapes) is not None)
    return data


MAX_JSON_DEPTH = 64
# A NUL or a lone surrogate can only come from a ``\\u`` escape (raw control characters and
# undecodable bytes are refused by the parser): without such an escape no string needs a look.
_MAYBE_BAD_STRING = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Top-level fields that are identifiers (looked up in text columns, which cannot hold NUL).
_IDENTIFIERS = frozenset({"model", "previous_response_id", "conversation"})


def _is_identifier(path: tuple[Any, ...]) -> bool:
    """True for a string at ``model``, ``previous_response_id``, ``conversation``(``.id``) or the
    ``id`` of a list element (an input or conversation item); never for a body that is itself a
    string (the empty path)."""
    if not path:
        return False
    if len(path) == 1:
        return path[0] in _IDENTIFIERS
    if path == ("conversation", "id"):
        return True
    return path[-1] == "id" and isinstance(path[-2], int)


def _refuse_if_bad(value: str, path: tuple[Any, ...]) -> None:
    if _SURROGATE.search(value) or ("\x00" in value and _is_identifier(path)):
        _refuse_string(value, path)


def _refuse_constant(name: str) -> Any:
    raise ApiError(400, f"Not valid JSON: {name} is not a JSON number.", code="invalid_json")


def _too_deep(what: str) -> ApiError:
    return ApiError(
        400, f"The {what} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
    )


def check_json_value(data: Any, what: str = "request body", *, strings: bool = True) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` and (``strings``) lone surrogates, or NUL in an
    identifier.

    Iterative: a hostile document cannot exhaust the stack here.
    """
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep(what)
            for key, child in value.items():
                if strings and _SURROGATE.search(key):
                    _refuse_string(key, path + (key,))
                if isinstance(child, (dict, list)) or (strings and isinstance(child, str)):
                    stack.append((child, depth + 1, path + (key,)))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep(what)
            for index, child in enumerate(value):
                if isinstance(child, (dict, list)) or (strings and isinstance(child, str)):
                    stack.append((child, depth + 1, path + (index,)))
        elif isinstance(value, str) and _BAD_CHARACTER.search(value):
            _refuse_if_bad(value, path)


def _param(path: tuple[Any, ...]) -> str | None:
    """``("input", 0, "content")`` -> ``"input[0].content"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # The key itself may hold the bad character: shown as an escape, never raw.
            key = _BAD_CHARACTER.sub(lambda m: f"\\u{ord(m.group()):04x}", part)
            out += f".{key}" if out else key
    return out or None


def _refuse_string(value: str, path: tuple[Any, ...]) -> None:
    param = _param(path)
    where = f"Invalid '{param}'" if param else "Invalid JSON string"
    if "\x00" in value and not _SURROGATE.search(value):
        raise invalid(
            f"{where}: an identifier may not contain the NUL character (\\u0000).",
            param,
            "invalid_string",
        )
    raise invalid(
        f"{where}: the string holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape).",
        param,
        "invalid_string",
    )
