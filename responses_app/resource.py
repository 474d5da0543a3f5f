"""The ``ResponseResource`` JSON of a stored response: all 31 required keys, spec defaults echoed."""

from __future__ import annotations

from typing import Any


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item without its private ``_meta``."""
    if "_meta" in item:
        return {k: v for k, v in item.items() if k != "_meta"}
    return item


def echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        return {k: v for k, v in tool.items() if k not in {"headers", "headers_sealed"}}
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def build_resource(
    response: Any, output: list[dict[str, Any]] | None = None, *, status: str | None = None
) -> dict[str, Any]:
    p = response.params
    return {
        "id": response.id,
        "object": "response",
        "created_at": int(response.created_at),
        "completed_at": int(response.completed_at)
        if response.completed_at and (status or response.status) == "completed"
        else None,
        "status": status or response.status,
        "incomplete_details": response.incomplete_details,
        "model": response.model,
        "previous_response_id": response.previous_response_id,
        "instructions": p.get("instructions"),
        "output": [public_item(i) for i in output] if output is not None else [],
        "error": public_error(response.error),
        "tools": [echo_tool(t) for t in p.get("tools") or []],
        "tool_choice": p.get("tool_choice", "auto"),
        "truncation": p.get("truncation", "disabled"),
        "parallel_tool_calls": p.get("parallel_tool_calls", True),
        "text": p.get("text") or {"format": {"type": "text"}},
        "top_p": _or(p.get("top_p"), 1.0),
        "presence_penalty": _or(p.get("presence_penalty"), 0.0),
        "frequency_penalty": _or(p.get("frequency_penalty"), 0.0),
        "top_logprobs": _or(p.get("top_logprobs"), 0),
        "temperature": _or(p.get("temperature"), 1.0),
        "reasoning": p.get("reasoning") or {"effort": None, "summary": None},
        "usage": response.usage,
        "max_output_tokens": p.get("max_output_tokens"),
        "max_tool_calls": p.get("max_tool_calls"),
        "store": response.store,
        "background": response.background,
        "service_tier": p.get("service_tier") or "default",
        "metadata": p.get("metadata") or {},
        "safety_identifier": p.get("safety_identifier"),
        "prompt_cache_key": p.get("prompt_cache_key"),
        "user": p.get("user"),
        **_conversation(response),
    }


def _conversation(response: Any) -> dict[str, Any]:
    """``conversation: {"id": …}`` for a response created in a conversation (absent otherwise)."""
    conversation_id = getattr(response, "conversation_id", None)
    return {"conversation": {"id": conversation_id}} if conversation_id else {}


def public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """The resource's ``error``: only ``code`` and ``message`` (the rest is kept for the API layer)."""
    if not error:
        return None
    return {"code": error.get("code") or "server_error", "message": error.get("message") or ""}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
