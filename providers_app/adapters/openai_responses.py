"""OpenAI Responses API adapter: a near pass-through (``POST {base_url}/responses``).

We keep the conversation state ourselves, so upstream calls are sent with ``store: false``
and ask for ``reasoning.encrypted_content`` so reasoning round-trips statelessly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from providers_app.adapters.base import ProviderAdapter
from providers_app.adapters.chunks import (
    Chunk,
    Citation,
    Finish,
    ItemEnd,
    ProviderItem,
    ReasoningDelta,
    ReasoningDone,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from providers_app.adapters.types import ModelRequest, ProviderConfig, UpstreamError, truncated
from providers_app.adapters.web_search import WEB_SEARCH_TYPES

INPUT_KEYS = {
    "message": ("type", "role", "content", "phase"),
    "function_call": ("type", "call_id", "name", "arguments", "namespace"),
    "function_call_output": ("type", "call_id", "output"),
    "custom_tool_call": ("type", "call_id", "name", "input", "namespace"),
    "custom_tool_call_output": ("type", "call_id", "output"),
}
#: Output items of OpenAI's hosted and client-executed tools: relayed as they are, and sent back.
PROVIDER_ITEM_TYPES = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "image_generation_call",
        "computer_call",
        "computer_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "tool_search_call",
        "tool_search_output",
    }
)
#: Tool types this provider takes as they are (the loop translates the others, see
#: ``responses_app.loop.tool_types``).
NATIVE_TOOL_TYPES = (
    frozenset(
        {
            "namespace",
            "custom",
            "file_search",
            "code_interpreter",
            "image_generation",
            "computer_use_preview",
            "computer",
            "local_shell",
            "shell",
            "apply_patch",
            "tool_search",
            "programmatic_tool_calling",
        }
    )
    | WEB_SEARCH_TYPES
)


def build_body(request: ModelRequest, config: ProviderConfig, *, stream: bool) -> dict[str, Any]:
    """The upstream body for ``request``."""
    body: dict[str, Any] = {
        "model": request.model,
        "input": [x for x in (map_item(i, config.name) for i in request.items) if x],
        "stream": stream,
        "store": False,
    }
    if request.instructions:
        body["instructions"] = request.instructions
    tools = [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description"),
            "parameters": t.get("parameters"),
            "strict": t.get("strict"),
        }
        if t.get("type") == "function"
        else _without_none(t)
        for t in request.tools
        if t.get("type") == "function" or t.get("type") in NATIVE_TOOL_TYPES
    ]
    if tools:
        body["tools"] = [{k: v for k, v in t.items() if v is not None} for t in tools]
        body["tool_choice"] = request.tool_choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    for key in ("temperature", "top_p", "max_output_tokens"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if request.text_format and request.text_format.get("type") != "text":
        body["text"] = {"format": {k: v for k, v in request.text_format.items() if v is not None}}
    if request.reasoning:
        body["reasoning"] = {k: v for k, v in request.reasoning.items() if v is not None}
    include = set(request.include) | {"reasoning.encrypted_content"}
    body["include"] = sorted(include)
    for key in ("service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "user"):
        if request.extra.get(key) is not None:
            body[key] = request.extra[key]
    if request.extra.get("verbosity"):
        body.setdefault("text", {})["verbosity"] = request.extra["verbosity"]
    if body.get("service_tier") == "default":
        del body["service_tier"]  # what validation fills in when the client sent none: the upstream's default
    return body


def _without_none(value: Any) -> Any:
    """``value`` without null fields at any depth (a tool as validated echoes absent fields as null)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def map_item(item: dict[str, Any], provider: str) -> dict[str, Any] | None:
    kind = item.get("type")
    if kind == "reasoning":
        # Reasoning goes back only to the provider that made it, with its own id.
        meta = item.get("_meta") or {}
        if meta.get("provider") != provider or not item.get("encrypted_content"):
            return None
        out = {
            "type": "reasoning",
            "summary": item.get("summary") or [],
            "encrypted_content": item["encrypted_content"],
        }
        if meta.get("id"):
            out["id"] = meta["id"]
        return out
    if kind in PROVIDER_ITEM_TYPES:
        if (item.get("_meta") or {}).get("provider") not in (None, provider):
            return None  # another provider's (a search Anthropic or Gemini ran): not OpenAI's item
        # Sent back without the item id, as OpenAI's own clients do with store: false.
        return {k: v for k, v in item.items() if k not in ("id", "_meta")}
    keys = INPUT_KEYS.get(kind)
    if keys is None:
        return None
    out = {k: item[k] for k in keys if k in item}
    if kind == "message" and out.get("role") == "assistant":
        out["content"] = [
            {"type": "output_text", "text": p.get("text", ""), "annotations": p.get("annotations") or []}
            if p.get("type") == "output_text"
            else p
            for p in out["content"]
        ]
    return out


def usage_chunk(usage: dict[str, Any] | None) -> UsageReport | None:
    if not usage:
        return None
    return UsageReport(
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        cached_tokens=(usage.get("input_tokens_details") or {}).get("cached_tokens"),
        reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens"),
    )


def tool_call_start(item: dict[str, Any]) -> ToolCallStart:
    return ToolCallStart(
        item.get("call_id", ""),
        item.get("name", ""),
        {"id": item.get("id")},
        namespace=item.get("namespace") or None,
        custom=item.get("type") == "custom_tool_call",
    )


def finish_chunk(response: dict[str, Any], saw_tool_call: bool) -> Finish:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return Finish("content_filter" if reason == "content_filter" else "max_output_tokens")
    return Finish("tool_calls" if saw_tool_call else "stop")


def failure(response_or_error: dict[str, Any], name: str) -> UpstreamError:
    error = response_or_error.get("error") or {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    message = error.get("message") or "the provider reported a failure"
    code = error.get("code") or "upstream_error"
    status = 429 if code in {"rate_limit_exceeded", "insufficient_quota"} else 502
    return UpstreamError(
        f"Provider '{name}' failed: {message}",
        status=status,
        code=str(code),
        error_type="too_many_requests" if status == 429 else "server_error",
    )


def chunks_from_response(response: dict[str, Any], name: str) -> Iterator[Chunk]:
    """Chunks of a whole (non-streamed) Responses object."""
    if response.get("status") == "failed":
        raise failure(response, name)
    saw_tool_call = False
    for item in response.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            length = 0  # the parts' texts make one output_text part here: citations shift
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    yield TextDelta(part.get("text", ""))
                    for annotation in part.get("annotations") or []:
                        citation = url_citation(annotation, length)
                        if citation is not None:
                            yield citation
                    length += len(part.get("text", ""))
                elif part.get("type") == "refusal":
                    yield RefusalDelta(part.get("refusal", ""))
            if (
                item.get("status") != "incomplete"
            ):  # a cut-off message stays open: Finish closes it as incomplete
                yield ItemEnd({"id": item.get("id")})
        elif kind == "reasoning":
            for index, part in enumerate(item.get("summary") or []):
                yield ReasoningDelta(part.get("text", ""), "summary", index)
            for part in item.get("content") or []:
                yield ReasoningDelta(part.get("text", ""), "content")
            yield ReasoningDone(item.get("encrypted_content"), {"id": item.get("id")})
        elif kind in ("function_call", "custom_tool_call"):
            saw_tool_call = True
            yield tool_call_start(item)
            yield ToolCallDelta(item.get("arguments" if kind == "function_call" else "input", ""))
            yield ItemEnd()
        elif kind in PROVIDER_ITEM_TYPES:
            yield ProviderItem(item)
    usage = usage_chunk(response.get("usage"))
    if usage is not None:
        yield usage
    yield finish_chunk(response, saw_tool_call)


def url_citation(annotation: Any, shift: int) -> Citation | None:
    """A ``url_citation`` annotation as a citation, its offsets moved by ``shift`` characters."""
    if (
        not isinstance(annotation, dict)
        or annotation.get("type") != "url_citation"
        or not annotation.get("url")
    ):
        return None
    start, end = annotation.get("start_index"), annotation.get("end_index")
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    return Citation(annotation["url"], annotation.get("title") or "", start + shift, end + shift)


class StreamParser:
    """Turns Responses stream events into chunks (one instance per upstream call)."""

    __slots__ = ("name", "saw_tool_call", "done", "lengths")

    def __init__(self, name: str, request: ModelRequest | None = None) -> None:
        self.name = name
        self.saw_tool_call = False
        self.done = False
        # (item id, content index) -> characters of that text part so far: a message's parts make
        # one output_text part here, so a later part's citations shift by the earlier parts' text.
        self.lengths: dict[tuple[str, int], int] = {}

    def feed(self, event: dict[str, Any]) -> Iterator[Chunk]:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = event.get("delta", "")
            key = (event.get("item_id") or "", event.get("content_index") or 0)
            self.lengths[key] = self.lengths.get(key, 0) + len(delta)
            yield TextDelta(delta)
        elif kind == "response.output_text.annotation.added":
            item_id, index = event.get("item_id") or "", event.get("content_index") or 0
            shift = sum(n for (item, k), n in self.lengths.items() if item == item_id and k < index)
            citation = url_citation(event.get("annotation"), shift)
            if citation is not None:
                yield citation
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            yield ToolCallDelta(event.get("delta", ""))
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") in ("function_call", "custom_tool_call"):
                self.saw_tool_call = True
                yield tool_call_start(item)
        elif kind == "response.output_item.done":
            item = event.get("item") or {}
            if item.get("type") == "reasoning":
                yield ReasoningDone(item.get("encrypted_content"), {"id": item.get("id")})
            elif item.get("type") in ("function_call", "custom_tool_call"):
                yield ItemEnd()
            elif item.get("type") in PROVIDER_ITEM_TYPES:
                yield ProviderItem(item)
            elif item.get("type") == "message" and item.get("status") != "incomplete":
                yield ItemEnd({"id": item.get("id")})
        elif kind == "response.reasoning_summary_text.delta":
            yield ReasoningDelta(event.get("delta", ""), "summary", event.get("summary_index", 0))
        elif kind in {"response.reasoning_text.delta", "response.reasoning.delta"}:
            yield ReasoningDelta(event.get("delta", ""), "content")
        elif kind == "response.refusal.delta":
            yield RefusalDelta(event.get("delta", ""))
        elif kind in {"response.completed", "response.incomplete"}:
            response = event.get("response") or {}
            usage = usage_chunk(response.get("usage"))
            if usage is not None:
                yield usage
            self.done = True
            yield finish_chunk(response, self.saw_tool_call)
        elif kind == "response.failed":
            raise failure(event.get("response") or {}, self.name)
        elif kind == "error" or "error" in event:
            raise failure(event if "error" in event else {"error": event}, self.name)

    def finish(self) -> list[Chunk]:
        """Nothing more to say once ``response.completed`` came; the stream was cut short if not."""
        if not self.done:
            raise truncated(self.name)
        return []


class OpenAIResponsesAdapter(ProviderAdapter):
    """``POST {base_url}/responses`` (streamed as server-sent events)."""

    family = "openai"
    sealed_reasoning = False  # OpenAI encrypts its reasoning itself; relayed as OpenAI sent it
    native_tool_types = NATIVE_TOOL_TYPES
    path = "responses"
    build_body = staticmethod(build_body)
    parser_class = StreamParser
    parse_body = staticmethod(chunks_from_response)
