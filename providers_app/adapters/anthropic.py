"""Anthropic Messages API adapter (``POST {base_url}/messages``), also used for z.ai's compatible endpoint.

``base_url`` is taken the way the Anthropic SDK would take it *plus* ``/v1``, e.g.
``https://api.anthropic.com/v1`` or ``https://api.z.ai/api/anthropic/v1``.

Config ``options`` understood here:

* ``default_max_tokens`` (int, 4096): ``max_tokens`` when the request sets no ``max_output_tokens``.
* ``anthropic_version`` (str, ``2023-06-01``): the ``anthropic-version`` header.
* ``thinking_mode`` (``"budget"`` | ``"adaptive"`` | ``"effort"``): how ``reasoning.effort`` is
  sent — a ``budget_tokens`` thinking block (default), ``{"type": "adaptive"}`` +
  ``output_config.effort`` (Claude Opus 4.6+), or ``output_config.effort`` alone.
* ``thinking_budgets`` (dict effort -> tokens): overrides :data:`THINKING_BUDGETS`.
* ``structured_outputs`` (bool, True): send ``text.format`` json_schema as ``output_config.format``;
  when False such a request is refused with :class:`UnsupportedParameter`.
* ``strict_tools`` (bool, True): forward ``strict: true`` of function tools.
* ``web_search`` (bool, True): offer OpenAI's ``web_search`` tool as Anthropic's web search server
  tool (``web_search_20250305``); False leaves it out of what the model sees (as for providers
  without a search of their own).

Web search: the server tool gets ``allowed_domains`` from ``filters.allowed_domains``,
``user_location`` from the tool, and ``max_uses`` from the request's ``max_tool_calls``. Each
``server_tool_use`` (name ``web_search``) and its ``web_search_tool_result`` become one
``web_search_call`` (an error result: status ``failed``), both blocks kept in the item's private
metadata (``server_blocks``, sealed for ``store: false`` clients) and sent back, as they came,
when the chain continues here. ``web_search_result_location`` citations on a text block become
``url_citation`` annotations spanning that block's text. Other server tools' blocks are skipped.

The request mapping (:func:`build_body`), the stream parser (:class:`StreamParser`) and the
non-streamed body parser (:func:`parse_message`) are pure functions of their input; the
adapter class only names them (the base class makes the call).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from providers_app.adapters.base import ProviderAdapter
from providers_app.adapters.chunks import (
    Chunk,
    Citation,
    Finish,
    FinishReason,
    ItemEnd,
    ReasoningDelta,
    ReasoningDone,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
    WebSearchDone,
    WebSearchStart,
)
from providers_app.adapters.content import image_url, inline_file, parse_arguments, parse_data_url
from providers_app.adapters.types import (
    ModelRequest,
    ProviderConfig,
    UnsupportedParameter,
    UpstreamError,
    extract_error_message,
    invalid_request,
    rate_limited,
    truncated,
)
from providers_app.adapters.web_search import (
    WEB_SEARCH_TYPES,
    allowed_domains,
    is_search_choice,
    user_location,
)

ANTHROPIC_VERSION = "2023-06-01"
#: The web search server tool version OpenAI's ``web_search`` is offered as.
WEB_SEARCH_TOOL = "web_search_20250305"
DEFAULT_MAX_TOKENS = 4096

#: ``reasoning.effort`` -> ``thinking.budget_tokens`` (Anthropic's minimum budget is 1024).
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 24576,
}

#: ``reasoning.effort`` -> ``output_config.effort`` in adaptive mode.
ADAPTIVE_EFFORTS: dict[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "pause_turn",  # a long server-tool turn paused: the loop sends it back to finish
    "tool_use": "tool_calls",
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}

#: File types sent as documents; the text ones go as plain text.
DOCUMENT_TYPES = {"application/pdf", "text/plain", "text/markdown"}


# --------------------------------------------------------------------------- request mapping


def build_body(request: ModelRequest, config: ProviderConfig, *, stream: bool) -> dict[str, Any]:
    """The Messages API body for ``request`` (raises :class:`UnsupportedParameter`)."""
    options = config.options
    system_parts: list[str] = []
    if request.instructions:
        system_parts.append(request.instructions)
    messages = _map_items(request.items, config.name, system_parts)

    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if system_parts:
        body["system"] = "\n\n".join(system_parts)

    explicit_max = request.max_output_tokens
    max_tokens = (
        explicit_max
        if explicit_max is not None
        else int(options.get("default_max_tokens", DEFAULT_MAX_TOKENS))
    )
    body["max_tokens"] = max_tokens

    output_config: dict[str, Any] = {}
    _map_reasoning(request, options, body, output_config, explicit_max)

    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p

    if request.tools:
        body["tools"] = _map_tools(request, options)
        choice = _map_tool_choice(request.tool_choice)
        if not request.parallel_tool_calls and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice

    fmt = request.text_format
    if fmt and fmt.get("type") not in (None, "text"):
        if fmt.get("type") != "json_schema":
            raise UnsupportedParameter(
                "text.format",
                f"text.format type '{fmt.get('type')}' is not supported by provider '{config.name}'; use json_schema.",
            )
        if not options.get("structured_outputs", True):
            raise UnsupportedParameter(
                "text.format",
                f"Provider '{config.name}' does not support structured outputs (text.format json_schema).",
            )
        output_config["format"] = {"type": "json_schema", "schema": fmt.get("schema") or {}}

    if output_config:
        body["output_config"] = output_config
    body["stream"] = stream
    return body


def _map_reasoning(
    request: ModelRequest,
    options: dict[str, Any],
    body: dict[str, Any],
    output_config: dict[str, Any],
    explicit_max: int | None,
) -> None:
    effort = (request.reasoning or {}).get("effort")
    if not effort or effort == "none":
        return
    mode = options.get("thinking_mode", "budget")
    if mode in ("adaptive", "effort"):
        level = ADAPTIVE_EFFORTS.get(effort)
        if level is None:
            raise UnsupportedParameter("reasoning.effort", f"reasoning.effort '{effort}' is not supported.")
        if mode == "adaptive":
            body["thinking"] = {"type": "adaptive"}
        output_config["effort"] = level
        return
    budgets = {**THINKING_BUDGETS, **(options.get("thinking_budgets") or {})}
    budget = budgets.get(effort)
    if budget is None:
        raise UnsupportedParameter("reasoning.effort", f"reasoning.effort '{effort}' is not supported.")
    budget = int(budget)
    if explicit_max is None:
        # The default max_tokens is room for the answer; thinking comes on top of it.
        body["max_tokens"] = budget + body["max_tokens"]
    elif explicit_max <= budget:
        # max_output_tokens caps thinking + answer; shrink the budget to fit under it.
        budget = explicit_max - 1
        if budget < 1024:
            raise UnsupportedParameter(
                "max_output_tokens",
                "max_output_tokens must be greater than 1024 when reasoning is enabled for this provider.",
            )
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}


def _map_tools(request: ModelRequest, options: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    searching = False
    for tool in request.tools:
        if tool.get("type") in WEB_SEARCH_TYPES:
            if not searching:  # one server tool, whichever of OpenAI's names asked for it
                tools.append(_search_tool(tool, request.extra.get("max_tool_calls")))
                searching = True
        else:
            tools.append(_map_tool(tool, options))
    return tools


def _search_tool(tool: dict[str, Any], max_uses: Any) -> dict[str, Any]:
    """OpenAI's ``web_search`` tool as Anthropic's web search server tool."""
    mapped: dict[str, Any] = {"type": WEB_SEARCH_TOOL, "name": "web_search"}
    if isinstance(max_uses, int) and max_uses > 0:
        mapped["max_uses"] = max_uses
    domains = allowed_domains(tool)
    if domains:
        mapped["allowed_domains"] = domains
    location = user_location(tool)
    if location:
        mapped["user_location"] = location
    return mapped


def _map_tool(tool: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise UnsupportedParameter(
            "tools", f"Tool type '{tool.get('type')}' is not supported by this provider."
        )
    mapped: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        mapped["description"] = tool["description"]
    mapped["input_schema"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("strict") is True and options.get("strict_tools", True):
        mapped["strict"] = True
    return mapped


def _map_tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if is_search_choice(choice):
        return {"type": "tool", "name": "web_search"}
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function" and choice.get("name"):
            return {"type": "tool", "name": choice["name"]}
        if kind == "allowed_tools":
            # Anthropic cannot restrict calls to a subset while keeping every tool visible;
            # all tools stay offered and only the mode is mapped (one required tool is forced).
            allowed = [
                t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict) and t.get("name")
            ]
            if choice.get("mode") == "required":
                if len(allowed) == 1:
                    return {"type": "tool", "name": allowed[0]}
                return {"type": "any"}
            return {"type": "auto"}
    raise UnsupportedParameter("tool_choice", f"tool_choice {json.dumps(choice)[:200]} is not supported.")


def _map_items(items: list[dict[str, Any]], provider: str, system_parts: list[str]) -> list[dict[str, Any]]:
    """Canonical items -> Anthropic messages (same-role turns merged, tool results first)."""
    messages: list[dict[str, Any]] = []

    def push(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            content = messages[-1]["content"]
        else:
            content = []
            messages.append({"role": role, "content": content})
        for block in blocks:
            if block["type"] == "tool_result":
                # Tool results go before any other block of the user turn.
                pos = 0
                while pos < len(content) and content[pos]["type"] == "tool_result":
                    pos += 1
                content.insert(pos, block)
            else:
                content.append(block)

    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            if role in ("system", "developer"):
                text = _plain_text(item.get("content"))
                if text:
                    system_parts.append(text)
                continue
            if role == "assistant":
                push("assistant", _assistant_blocks(item.get("content")))
            else:
                push("user", _user_blocks(item.get("content")))
        elif kind == "function_call":
            args = parse_arguments(item.get("arguments"))
            push(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": item["call_id"],
                        "name": item["name"],
                        "input": args if isinstance(args, dict) else {},
                    }
                ],
            )
        elif kind == "function_call_output":
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": item["call_id"]}
            content = _tool_result_content(item.get("output"))
            if content:
                block["content"] = content
            push("user", [block])
        elif kind == "web_search_call":
            meta = item.get("_meta") or {}
            blocks = meta.get("server_blocks")
            if meta.get("provider") == provider and isinstance(blocks, list):
                push("assistant", [dict(b) for b in blocks if isinstance(b, dict)])
            # another provider's search (or one whose blocks were not carried): its text stays
        elif kind == "reasoning":
            meta = item.get("_meta") or {}
            if meta.get("provider") != provider or not item.get("encrypted_content"):
                continue  # another provider's reasoning (or no signature): not sent back
            if meta.get("type") == "redacted_thinking":
                push("assistant", [{"type": "redacted_thinking", "data": item["encrypted_content"]}])
            else:
                parts = item.get("summary") or item.get("content") or []
                text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
                push(
                    "assistant",
                    [{"type": "thinking", "thinking": text, "signature": item["encrypted_content"]}],
                )
        # Other item types (e.g. item_reference) are resolved before the adapter; ignore leftovers.
    return messages


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or [] if isinstance(p, dict))


def _assistant_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or []:
        text = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or []:
        block = _content_block(part)
        if block is not None:
            blocks.append(block)
    return blocks


def _tool_result_content(output: Any) -> str | list[dict[str, Any]]:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _user_blocks(output)
    return json.dumps(output)


def _content_block(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text") or ""
        return {"type": "text", "text": text} if text else None
    if kind == "refusal":
        text = part.get("refusal") or ""
        return {"type": "text", "text": text} if text else None
    if kind == "input_image":
        return _image_block(part)
    if kind == "input_file":
        return _document_block(part)
    raise UnsupportedParameter("input", f"Content part type '{kind}' is not supported by this provider.")


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    url = image_url(part)
    if not url:
        if part.get("file_id"):
            raise UnsupportedParameter(
                "input.file_id", "Images by file_id are not supported by this provider; send image_url."
            )
        raise UnsupportedParameter("input.image_url", "input_image needs an image_url.")
    if url.startswith("data:"):
        data = parse_data_url(url, "input.image_url")
        if not data.is_base64:
            raise UnsupportedParameter("input.image_url", "Image data URLs must be base64-encoded.")
        media_type = data.mime or "image/jpeg"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data.payload}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _document_block(part: dict[str, Any]) -> dict[str, Any]:
    filename = part.get("filename")
    block: dict[str, Any]
    if part.get("file_data"):
        data = inline_file(part, unknown="application/octet-stream", param="input.file_data")
        if data.mime not in DOCUMENT_TYPES:
            raise UnsupportedParameter(
                "input.file_data",
                f"File type '{data.mime}' is not supported by this provider (PDF or plain text only).",
            )
        if data.mime != "application/pdf":
            text = data.text("input.file_data")
            block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
        else:
            if not data.is_base64:
                raise UnsupportedParameter("input.file_data", "PDF data URLs must be base64-encoded.")
            block = {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": data.payload},
            }
    elif part.get("file_url"):
        block = {"type": "document", "source": {"type": "url", "url": part["file_url"]}}
    elif part.get("file_id"):
        raise UnsupportedParameter(
            "input.file_id",
            "Files by file_id are not supported by this provider; send file_data or file_url.",
        )
    else:
        raise UnsupportedParameter("input.file_data", "input_file needs file_data or file_url.")
    if filename:
        block["title"] = filename
    return block


# --------------------------------------------------------------------------- response parsing


def usage_from(usage: dict[str, Any] | None, *, with_output: bool = True) -> UsageReport | None:
    """An Anthropic ``usage`` object -> :class:`UsageReport` (input includes cache reads/writes)."""
    if not usage:
        return None
    report = UsageReport()
    if usage.get("input_tokens") is not None:
        cache_read = usage.get("cache_read_input_tokens") or 0
        cache_write = usage.get("cache_creation_input_tokens") or 0
        report.input_tokens = usage["input_tokens"] + cache_read + cache_write
        report.cached_tokens = cache_read
    if with_output and usage.get("output_tokens") is not None:
        report.output_tokens = usage["output_tokens"]
    if report.input_tokens is None and report.output_tokens is None:
        return None
    return report


def finish_reason(stop_reason: str | None) -> FinishReason:
    return STOP_REASONS.get(stop_reason or "end_turn", "stop")


def stream_error(payload: dict[str, Any], provider: str) -> UpstreamError:
    """An ``event: error`` payload (or an error body) -> :class:`UpstreamError`."""
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    kind = error.get("type") or "api_error"
    message = f"Provider '{provider}' reported {kind}: {error.get('message') or 'unknown error'}"
    if kind == "overloaded_error":
        return UpstreamError(message, status=502, code="upstream_overloaded", retryable=True)
    if kind == "rate_limit_error":
        return rate_limited(message, retryable=True)
    if kind == "invalid_request_error":
        return invalid_request(message)
    if kind == "timeout_error":
        return UpstreamError(message, status=504, code="upstream_timeout", retryable=True)
    return UpstreamError(message, status=502, code="upstream_error", retryable=kind == "api_error")


def search_done(use: dict[str, Any] | None, result: dict[str, Any]) -> WebSearchDone:
    """A ``server_tool_use`` (name ``web_search``) and its ``web_search_tool_result`` as one search."""
    content = result.get("content")
    sources = [
        {"url": r["url"], "title": r.get("title") or ""}
        for r in (content if isinstance(content, list) else [])
        if isinstance(r, dict) and r.get("url")
    ]
    query = ((use or {}).get("input") or {}).get("query")
    return WebSearchDone(
        call_id=(use or {}).get("id") or result.get("tool_use_id") or "",
        queries=[query] if isinstance(query, str) and query else [],
        sources=sources,
        failed=isinstance(content, dict),  # a web_search_tool_result_error
        provider_data={"server_blocks": [use, result] if use else [result]},
    )


def citations(found: list[Any], start: int, end: int) -> list[Chunk]:
    """A text block's web search citations as ``Citation`` chunks spanning ``start``..``end``."""
    out: list[Chunk] = []
    seen = set()
    for citation in found:
        if not isinstance(citation, dict) or citation.get("type") != "web_search_result_location":
            continue
        url = citation.get("url")
        if url and url not in seen and end > start:
            seen.add(url)
            out.append(Citation(url, citation.get("title") or url, start, end))
    return out


def is_search_use(block: dict[str, Any]) -> bool:
    return block.get("type") == "server_tool_use" and block.get("name") == "web_search"


class StreamParser:
    """Turns Anthropic stream events (parsed JSON) into chunks. One instance per sample.

    Text blocks that follow each other form one message; a non-text block closes it.
    Web search server tool blocks become a web search (see the module docstring); other server
    tool blocks (``server_tool_use``, ``*_tool_result``) are skipped entirely.
    """

    __slots__ = ("provider", "blocks", "text_open", "text_len", "searches", "stop_reason", "done")

    def __init__(self, provider: str, request: ModelRequest | None = None) -> None:
        self.provider = provider
        # index -> [block type, accumulated signature/data or "had deltas" flag, fallback input]
        self.blocks: dict[int, list[Any]] = {}
        self.text_open = False
        self.text_len = 0  # characters of the open message's text so far (citation offsets)
        self.searches: dict[str, dict[str, Any]] = {}  # server_tool_use id -> block, until its result
        self.stop_reason: str | None = None
        self.done = False  # message_stop came and Finish was emitted

    def feed(self, event: dict[str, Any]) -> list[Chunk]:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._start(event)
        if kind == "content_block_stop":
            return self._stop(event)
        if kind == "message_start":
            report = usage_from((event.get("message") or {}).get("usage"), with_output=False)
            return [report] if report else []
        if kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            out: list[Chunk] = self._close_text() if not self._truncated() else []
            report = usage_from(event.get("usage"))
            if report:
                out.append(report)
            return out
        if kind == "message_stop":
            return self._end()
        if kind == "error" or "error" in event:
            raise stream_error(event, self.provider)
        return []  # ping and unknown events

    def _truncated(self) -> bool:
        # A cut-off text block stays open: Finish closes it as incomplete.
        return finish_reason(self.stop_reason) == "max_output_tokens"

    def finish(self) -> list[Chunk]:
        """Chunks that end the sample (none after ``message_stop``); a stream cut before the
        ``message_delta`` that carries the stop reason is an error."""
        if not self.done and self.stop_reason is None:
            raise truncated(self.provider)
        return self._end()

    def _end(self) -> list[Chunk]:
        if self.done:
            return []
        self.done = True
        out = self._close_text() if not self._truncated() else []
        out.append(Finish(finish_reason(self.stop_reason)))
        return out

    def _close_text(self) -> list[Chunk]:
        if self.text_open:
            self.text_open = False
            return [ItemEnd()]
        return []

    def _start(self, event: dict[str, Any]) -> list[Chunk]:
        block = event.get("content_block") or {}
        btype = block.get("type") or ""
        index = event.get("index", 0)
        if btype == "text":
            if not self.text_open:
                self.text_len = 0
            self.text_open = True
            text = block.get("text")
            # [type, where the block's text starts in the message, its citations]
            self.blocks[index] = ["text", self.text_len, list(block.get("citations") or [])]
            if text:
                self.text_len += len(text)
                return [TextDelta(text)]
            return []
        out = self._close_text()
        if btype == "thinking":
            self.blocks[index] = ["thinking", block.get("signature") or "", None]
            if block.get("thinking"):
                out.append(ReasoningDelta(block["thinking"], kind="summary"))
        elif btype == "redacted_thinking":
            self.blocks[index] = ["redacted_thinking", block.get("data") or "", None]
        elif btype == "tool_use":
            self.blocks[index] = ["tool_use", False, block.get("input")]
            out.append(ToolCallStart(call_id=block.get("id") or "", name=block.get("name") or ""))
        elif is_search_use(block):
            self.blocks[index] = ["web_search", [], block]
            if not self.searches:  # (a search started while another waits: opened with its result)
                out.append(WebSearchStart(block.get("id") or ""))
            self.searches[block.get("id") or ""] = block
        elif btype == "web_search_tool_result":
            self.blocks[index] = ["skip", None, None]
            out.append(search_done(self.searches.pop(block.get("tool_use_id") or "", None), block))
        else:
            self.blocks[index] = ["skip", None, None]
        return out

    def _delta(self, event: dict[str, Any]) -> list[Chunk]:
        state = self.blocks.get(event.get("index", 0))
        if state is None:
            return []
        delta = event.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            if text and state[0] == "text":
                self.text_len += len(text)
                return [TextDelta(text)]
        elif dtype == "citations_delta":
            if state[0] == "text":
                state[2].append(delta.get("citation"))
        elif dtype == "input_json_delta":
            piece = delta.get("partial_json")
            if piece and state[0] == "tool_use":
                state[1] = True
                return [ToolCallDelta(piece)]
            if piece and state[0] == "web_search":
                state[1].append(piece)
        elif dtype == "thinking_delta":
            text = delta.get("thinking")
            if text and state[0] == "thinking":
                return [ReasoningDelta(text, kind="summary")]
        elif dtype == "signature_delta":
            if state[0] == "thinking":
                state[1] += delta.get("signature") or ""
        return []

    def _stop(self, event: dict[str, Any]) -> list[Chunk]:
        state = self.blocks.pop(event.get("index", 0), None)
        if state is None:
            return []
        btype = state[0]
        if btype == "text":
            return citations(state[2], state[1], self.text_len)
        if btype == "web_search":
            block = state[2]
            parsed = parse_arguments("".join(state[1])) if state[1] else block.get("input")
            # The block as it is sent back: its streamed input put together.
            self.searches[block.get("id") or ""] = {
                **block,
                "input": parsed if isinstance(parsed, dict) else {},
            }
            return []
        if btype == "thinking":
            return [ReasoningDone(encrypted_content=state[1] or None, provider_data={"type": "thinking"})]
        if btype == "redacted_thinking":
            return [
                ReasoningDone(encrypted_content=state[1] or None, provider_data={"type": "redacted_thinking"})
            ]
        if btype == "tool_use":
            out: list[Chunk] = []
            if not state[1]:
                # No input_json_delta came: the input (if any) was given whole in the start event.
                out.append(ToolCallDelta(json.dumps(state[2] or {}, separators=(",", ":"))))
            out.append(ItemEnd())
            return out
        return []


def parse_message(body: dict[str, Any], provider: str) -> list[Chunk]:
    """A non-streamed Messages API response -> chunks."""
    if body.get("type") == "error":
        raise stream_error(body, provider)
    out: list[Chunk] = []
    text_open = False
    text_len = 0
    searches: dict[str, dict[str, Any]] = {}
    for block in body.get("content") or []:
        btype = block.get("type")
        if btype == "text":
            if block.get("text"):
                if not text_open:
                    text_len = 0
                out.append(TextDelta(block["text"]))
                text_open = True
                start, text_len = text_len, text_len + len(block["text"])
                out += citations(block.get("citations") or [], start, text_len)
            continue
        if btype == "web_search_tool_result":
            if text_open:
                out.append(ItemEnd())
                text_open = False
            out.append(search_done(searches.pop(block.get("tool_use_id") or "", None), block))
            continue
        if is_search_use(block):
            searches[block.get("id") or ""] = block
            continue  # opened with its result
        if text_open:
            out.append(ItemEnd())
            text_open = False
        if btype == "thinking":
            if block.get("thinking"):
                out.append(ReasoningDelta(block["thinking"], kind="summary"))
            out.append(
                ReasoningDone(
                    encrypted_content=block.get("signature") or None, provider_data={"type": "thinking"}
                )
            )
        elif btype == "redacted_thinking":
            out.append(
                ReasoningDone(
                    encrypted_content=block.get("data") or None, provider_data={"type": "redacted_thinking"}
                )
            )
        elif btype == "tool_use":
            out.append(ToolCallStart(call_id=block.get("id") or "", name=block.get("name") or ""))
            out.append(ToolCallDelta(json.dumps(block.get("input") or {}, separators=(",", ":"))))
            out.append(ItemEnd())
    if text_open and finish_reason(body.get("stop_reason")) != "max_output_tokens":
        out.append(ItemEnd())  # a cut-off text block stays open: Finish closes it as incomplete
    report = usage_from(body.get("usage"))
    if report:
        out.append(report)
    out.append(Finish(finish_reason(body.get("stop_reason"))))
    return out


# --------------------------------------------------------------------------- adapter


class AnthropicAdapter(ProviderAdapter):
    """Anthropic Messages API (and Anthropic-compatible endpoints such as z.ai)."""

    family = "anthropic"
    #: OpenAI's web search tool is run by Anthropic's web search server tool.
    native_tool_types = WEB_SEARCH_TYPES
    #: A search's server_tool_use and web_search_tool_result blocks (encrypted results included).
    carried_meta = frozenset({"server_blocks"})
    path = "messages"
    build_body = staticmethod(build_body)
    parser_class = StreamParser
    parse_body = staticmethod(parse_message)

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        if config.options.get("web_search") is False:
            self.native_tool_types = frozenset()  # OpenAI's web search is left out, as elsewhere

    def request_headers(self) -> dict[str, str]:
        """``x-api-key`` and ``anthropic-version`` instead of a Bearer token."""
        extra = {"anthropic-version": str(self.config.options.get("anthropic_version", ANTHROPIC_VERSION))}
        if self.config.api_key:
            extra["x-api-key"] = self.config.api_key
        return {"content-type": "application/json", **extra, **self.config.headers}

    def error_from_response(self, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """Base mapping, plus Anthropic's 529 / ``overloaded_error`` as ``upstream_overloaded``."""
        error = super().error_from_response(status, raw, headers)
        if status == 529 or (status >= 500 and b"overloaded_error" in raw):
            message = extract_error_message(raw) or f"HTTP {status}"
            return UpstreamError(
                f"Provider '{self.config.name}' returned HTTP {status}: {message}",
                status=502,
                code="upstream_overloaded",
                retry_after=error.retry_after,
                retryable=True,
            )
        return error
