"""Ollama adapter: the native ``/api/chat`` endpoint (NDJSON streaming).

``base_url`` is the server root without a path (default ``http://localhost:11434``); the adapter
posts to ``{base_url}/api/chat``. No key is needed; when one is configured it is sent as
``Authorization: Bearer``. Config options (``ProviderConfig.options``):

* ``think_levels`` (bool, default true): send ``reasoning.effort`` as ``"low"|"medium"|"high"``;
  false sends ``think: true`` instead (for models that only take a boolean).
* ``keep_alive`` (str | int): forwarded as ``keep_alive``.
* ``model_options`` (dict): extra runtime ``options`` (``num_ctx``, ``seed``…).

Pure translation: :func:`build_body`, :class:`StreamParser`; the base class makes
the call (NDJSON framing).
"""

from __future__ import annotations

import json
from typing import Any

from providers_app.adapters.base import ProviderAdapter
from providers_app.adapters.chunks import (
    Chunk,
    Finish,
    FinishReason,
    ItemEnd,
    OpenItem,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
    new_call_id,
)
from providers_app.adapters.content import (
    TEXT_PARTS,
    content_parts,
    image_url,
    parse_arguments,
    parse_data_url,
)
from providers_app.adapters.types import (
    ModelRequest,
    ProviderConfig,
    UnsupportedParameter,
    UpstreamError,
    extract_error_message,
    truncated,
)

DEFAULT_BASE_URL = "http://localhost:11434"

_THINK_LEVELS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}

_DONE_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "max_output_tokens"}


# --------------------------------------------------------------------------- request mapping


def _image_base64(part: dict[str, Any], param: str) -> str:
    """An ``input_image`` as the bare base64 Ollama wants (only data URLs can be inlined)."""
    url = image_url(part) or ""
    if url.startswith("data:"):
        data = parse_data_url(url, param + ".image_url")
        if data.is_base64:
            return data.payload
    raise UnsupportedParameter(
        param + ".image_url",
        "Ollama takes images inline only (data:image/...;base64 URLs); fetch the image and send it as a data URL.",
    )


def _content(parts: list[dict[str, Any]], param: str) -> tuple[str, list[str]]:
    """Parts -> (text, base64 images); files and unknown parts are refused."""
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(parts):
        kind = part.get("type")
        if kind in TEXT_PARTS:
            texts.append(part.get("text") or "")
        elif kind == "refusal":
            texts.append(part.get("refusal") or "")
        elif kind == "input_image":
            images.append(_image_base64(part, f"{param}[{j}]"))
        elif kind == "input_file":
            raise UnsupportedParameter(
                f"{param}[{j}]", "Ollama does not accept file inputs (PDFs or other files)."
            )
        else:
            raise UnsupportedParameter(
                f"{param}[{j}]", f"Content part type {kind!r} is not supported by Ollama."
            )
    return "\n".join(texts), images


def _reasoning_text(item: dict[str, Any]) -> str:
    """The raw trace of a reasoning item (its ``content`` texts, else its summary)."""
    parts = item.get("content") or item.get("summary") or []
    return "".join(p.get("text") or "" for p in parts if isinstance(p, dict))


def build_messages(request: ModelRequest, *, provider: str) -> list[dict[str, Any]]:
    """Canonical input items -> Ollama ``messages``."""
    messages: list[dict[str, Any]] = []
    names = {it.get("call_id"): it.get("name") for it in request.items if it.get("type") == "function_call"}
    thinking = ""  # this provider's own reasoning, attached to the next assistant message

    def assistant() -> dict[str, Any]:
        nonlocal thinking
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if thinking:
            message["thinking"] = thinking
            thinking = ""
        messages.append(message)
        return message

    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for i, item in enumerate(request.items):
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role") or "user"
            text, images = _content(content_parts(item.get("content")), f"input[{i}].content")
            if role in ("system", "developer"):
                messages.append({"role": "system", "content": text})
            elif role == "assistant":
                assistant()["content"] = text
            elif role == "user":
                message: dict[str, Any] = {"role": "user", "content": text}
                if images:
                    message["images"] = images
                messages.append(message)
            else:
                raise UnsupportedParameter(f"input[{i}].role", f"Message role {role!r} is not supported.")
        elif kind == "function_call":
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or thinking:
                last = assistant()
            call = {"function": {"name": item["name"], "arguments": parse_arguments(item.get("arguments"))}}
            last.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, str):
                text, images = output, []
            elif isinstance(output, list):
                text, images = _content(content_parts(output), f"input[{i}].output")
            else:
                text, images = json.dumps(output), []
            message = {"role": "tool", "content": text}
            if names.get(item.get("call_id")):
                message["tool_name"] = names[item.get("call_id")]
            if images:
                message["images"] = images
            messages.append(message)
        elif kind == "reasoning":
            if (item.get("_meta") or {}).get("provider") == provider:
                thinking += _reasoning_text(item)
        else:
            raise UnsupportedParameter(f"input[{i}]", f"Input item type {kind!r} is not supported by Ollama.")
    return messages


def _tools_enabled(choice: Any) -> bool:
    """Whether tools are sent; ``required`` and forced functions cannot be honoured natively."""
    if choice is None or choice == "auto":
        return True
    if choice == "none":
        return False
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return _tools_enabled(choice.get("mode") or "auto")
    raise UnsupportedParameter(
        "tool_choice", "Ollama cannot force tool calls; only tool_choice 'auto' and 'none' are supported."
    )


def build_body(request: ModelRequest, config: ProviderConfig, *, stream: bool) -> dict[str, Any]:
    """The whole ``/api/chat`` body for ``request``."""
    options = config.options
    body: dict[str, Any] = {
        "model": request.model,
        "messages": build_messages(request, provider=config.name),
        "stream": stream,
    }
    if _tools_enabled(request.tool_choice) and request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description") or "",
                    "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
    runtime: dict[str, Any] = dict(options.get("model_options") or {})
    if request.temperature is not None:
        runtime["temperature"] = request.temperature
    if request.top_p is not None:
        runtime["top_p"] = request.top_p
    if request.max_output_tokens is not None:
        runtime["num_predict"] = request.max_output_tokens
    if runtime:
        body["options"] = runtime
    fmt = request.text_format or {}
    if fmt.get("type") == "json_schema":
        body["format"] = fmt.get("schema") or {"type": "object"}
    elif fmt.get("type") == "json_object":
        body["format"] = "json"
    elif fmt and fmt.get("type") != "text":
        raise UnsupportedParameter("text.format", f"text.format type {fmt.get('type')!r} is not supported.")
    effort = (request.reasoning or {}).get("effort")
    if effort == "none":
        body["think"] = False
    elif effort:
        level = _THINK_LEVELS.get(effort)
        if level is None:
            raise UnsupportedParameter(
                "reasoning.effort", f"reasoning.effort {effort!r} is not supported by Ollama."
            )
        body["think"] = level if options.get("think_levels", True) else True
    if options.get("keep_alive") is not None:
        body["keep_alive"] = options["keep_alive"]
    return body


# --------------------------------------------------------------------------- response parsing


class StreamParser(OpenItem):
    """Turns parsed ``/api/chat`` objects (stream lines or the single non-stream body) into chunks."""

    def __init__(
        self,
        provider: str = "provider",
        request: ModelRequest | None = None,
        *,
        parallel_tool_calls: bool = True,
    ) -> None:
        super().__init__()
        self.provider = provider
        self.parallel_tool_calls = parallel_tool_calls and (request is None or request.parallel_tool_calls)
        self.calls = 0
        self.done = False  # the ``done: true`` line came

    def feed(self, data: dict[str, Any]) -> list[Chunk]:
        """Chunks for one object; raises :class:`UpstreamError` for an ``{"error": …}`` line."""
        if data.get("error"):
            raise stream_error(data, self.provider)
        out: list[Chunk] = []
        message = data.get("message") or {}
        self.deltas(out, message.get("thinking"), message.get("content"))
        for call in message.get("tool_calls") or ():
            if self.calls and not self.parallel_tool_calls:
                continue  # parallel_tool_calls=false: keep the first call only
            fn = call.get("function") or {}
            arguments = fn.get("arguments")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments if arguments is not None else {})
            self.close_open(out)
            out.append(ToolCallStart(call.get("id") or new_call_id(), fn.get("name") or ""))
            out.append(ToolCallDelta(arguments))
            out.append(ItemEnd())
            self.calls += 1
        if data.get("done"):
            reason = _DONE_REASONS.get(data.get("done_reason") or "stop", "stop")
            if reason == "stop" and self.calls:
                reason = "tool_calls"
            if reason != "max_output_tokens":
                self.close_open(out)  # a truncated item stays open: Finish closes it as incomplete
            usage = UsageReport(
                input_tokens=data.get("prompt_eval_count"), output_tokens=data.get("eval_count")
            )
            out.append(usage)
            out.append(Finish(reason))
            self.done = True
        return out

    def finish(self) -> list[Chunk]:
        """Nothing more once ``done: true`` came (it carries the finish); raises when it never did."""
        if not self.done:
            raise truncated(self.provider)
        return []


def stream_error(payload: dict[str, Any], provider: str) -> UpstreamError:
    """An ``{"error": …}`` line (HTTP 200, mid-stream or as the whole body) -> :class:`UpstreamError`."""
    message = extract_error_message(json.dumps({"error": payload["error"]}))
    return UpstreamError(f"Provider '{provider}' failed mid-stream: {message}", status=502)


# --------------------------------------------------------------------------- adapter


class OllamaAdapter(ProviderAdapter):
    """``POST {base_url}/api/chat`` against a native Ollama server."""

    family = "ollama"
    framing = "ndjson"
    build_body = staticmethod(build_body)
    parser_class = StreamParser

    def endpoint(self, request: ModelRequest, *, stream: bool) -> str:
        base = (self.config.base_url or DEFAULT_BASE_URL).rstrip("/")
        if base.endswith("/api"):
            base = base[: -len("/api")]
        return base + "/api/chat"
