"""Chat Completions adapter: OpenAI and every OpenAI-compatible server (vLLM, LM Studio, Groq, OpenRouter…).

``base_url`` includes the version segment (e.g. ``https://api.openai.com/v1``); the adapter posts to
``{base_url}/chat/completions``. Config options (``ProviderConfig.options``):

* ``developer_role`` (bool): send developer messages with role ``developer`` instead of ``system``.
* ``max_tokens_param`` (str): ``"max_completion_tokens"`` (default) or ``"max_tokens"`` for older servers.
* ``stream_usage`` (bool, default true): ask for the usage chunk with ``stream_options.include_usage``.
* ``extra_body`` (dict): merged into every request body (server-specific knobs).

The translation functions (:func:`build_body`, :class:`StreamParser`,
:func:`parse_chat_completion`) are pure; :class:`OpenAIChatAdapter` only does the I/O.
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
from providers_app.adapters.content import TEXT_PARTS, content_parts, file_data_url, image_url
from providers_app.adapters.types import (
    ModelRequest,
    ProviderConfig,
    UnsupportedParameter,
    UpstreamError,
    extract_error_message,
    rate_limited,
    truncated,
    unexpected_body,
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "end_turn": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "content_filter": "content_filter",
}


# --------------------------------------------------------------------------- request mapping


def _texts(parts: list[dict[str, Any]]) -> list[str]:
    return [part.get("text") or "" for part in parts if part.get("type") in TEXT_PARTS]


def _user_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    """One user content part in Chat Completions form."""
    kind = part.get("type")
    if kind in TEXT_PARTS:
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "input_image":
        url = image_url(part)
        if not url:
            raise UnsupportedParameter(
                param, "Chat Completions takes images by URL or data URL, not by file_id."
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_data"):
            file: dict[str, Any] = {"file_data": file_data_url(part)}
            file["filename"] = part.get("filename") or "file.pdf"
            return {"type": "file", "file": file}
        if part.get("file_id"):
            return {"type": "file", "file": {"file_id": part["file_id"]}}
        raise UnsupportedParameter(
            param + ".file_url", "Chat Completions takes files inline (file_data), not by URL."
        )
    raise UnsupportedParameter(param, f"Content part type {kind!r} is not supported by Chat Completions.")


def _user_content(parts: list[dict[str, Any]], param: str) -> str | list[dict[str, Any]]:
    """User content: a plain string when it is a single text (widest server support), else parts."""
    if len(parts) == 1 and parts[0].get("type") in TEXT_PARTS:
        return parts[0].get("text") or ""
    return [_user_part(part, f"{param}[{j}]") for j, part in enumerate(parts)]


def _tool_output(output: Any, param: str) -> tuple[str, list[dict[str, Any]]]:
    """A function_call_output's text, plus non-text parts that must travel in a user message."""
    if isinstance(output, str):
        return output, []
    if not isinstance(output, list):
        return json.dumps(output), []
    texts: list[str] = []
    extra: list[dict[str, Any]] = []
    for j, part in enumerate(output):
        if not isinstance(part, dict):
            continue
        if part.get("type") in TEXT_PARTS:
            texts.append(part.get("text") or "")
        else:
            extra.append(_user_part(part, f"{param}[{j}]"))
    text = "\n".join(texts)
    if extra and not text:
        text = "The tool returned the content attached in the next message."
    return text, extra


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description") is not None:
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if isinstance(tool.get("strict"), bool):
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice is None or isinstance(choice, str):
        return choice or "auto"
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools":
        # The server enforces the allowed list itself; the model keeps seeing every tool.
        return choice.get("mode") or "auto"
    raise UnsupportedParameter(
        "tool_choice", f"tool_choice of type {kind!r} is not supported by Chat Completions."
    )


def build_messages(
    request: ModelRequest, *, provider: str, developer_role: bool = False
) -> list[dict[str, Any]]:
    """Canonical input items -> Chat Completions ``messages``."""
    messages: list[dict[str, Any]] = []
    pending_user: list[dict[str, Any]] = []  # non-text tool output, sent after the run of tool messages

    def append(message: dict[str, Any]) -> None:
        if pending_user and message["role"] != "tool":
            messages.append({"role": "user", "content": list(pending_user)})
            pending_user.clear()
        messages.append(message)

    if request.instructions:
        append({"role": "system", "content": request.instructions})
    for i, item in enumerate(request.items):
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role") or "user"
            parts = content_parts(item.get("content"))
            if role in ("system", "developer"):
                out_role = "developer" if role == "developer" and developer_role else "system"
                append({"role": out_role, "content": "\n".join(_texts(parts))})
            elif role == "assistant":
                message: dict[str, Any] = {"role": "assistant", "content": "".join(_texts(parts))}
                refusal = "".join(p.get("refusal") or "" for p in parts if p.get("type") == "refusal")
                if refusal:
                    message["refusal"] = refusal
                append(message)
            elif role == "user":
                append({"role": "user", "content": _user_content(parts, f"input[{i}].content")})
            else:
                raise UnsupportedParameter(f"input[{i}].role", f"Message role {role!r} is not supported.")
        elif kind == "function_call":
            call: dict[str, Any] = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
            }
            meta = item.get("_meta") or {}
            if meta.get("extra_content") is not None and meta.get("provider") == provider:
                call["extra_content"] = meta["extra_content"]
            last = messages[-1] if messages and not pending_user else None
            if last is not None and last["role"] == "assistant":
                if not last.get("tool_calls") and last.get("content") == "":
                    last["content"] = None
                last.setdefault("tool_calls", []).append(call)
            else:
                append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            text, extra = _tool_output(item.get("output"), f"input[{i}].output")
            append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
            pending_user.extend(extra)
        elif kind == "reasoning":
            continue  # Chat Completions has no place for reasoning items.
        else:
            raise UnsupportedParameter(
                f"input[{i}]", f"Input item type {kind!r} is not supported by Chat Completions."
            )
    if pending_user:
        messages.append({"role": "user", "content": list(pending_user)})
    return messages


def build_body(request: ModelRequest, config: ProviderConfig, *, stream: bool) -> dict[str, Any]:
    """The whole ``/chat/completions`` body for ``request``."""
    options = config.options
    body: dict[str, Any] = {
        "model": request.model,
        "messages": build_messages(
            request, provider=config.name, developer_role=bool(options.get("developer_role"))
        ),
        "stream": stream,
    }
    if stream and options.get("stream_usage", True):
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        body["tool_choice"] = _tool_choice(request.tool_choice)
        body["parallel_tool_calls"] = bool(request.parallel_tool_calls)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_output_tokens is not None:
        body[options.get("max_tokens_param") or "max_completion_tokens"] = request.max_output_tokens
    fmt = request.text_format or {}
    if fmt.get("type") == "json_schema":
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("description"):
            schema["description"] = fmt["description"]
        if fmt.get("strict") is not None:
            schema["strict"] = bool(fmt["strict"])
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.get("type") == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt and fmt.get("type") != "text":
        raise UnsupportedParameter("text.format", f"text.format type {fmt.get('type')!r} is not supported.")
    effort = (request.reasoning or {}).get("effort")
    if effort:
        body["reasoning_effort"] = effort
    extra = options.get("extra_body")
    if isinstance(extra, dict):
        body.update(extra)
    return body


# --------------------------------------------------------------------------- response parsing


def usage_report(usage: dict[str, Any]) -> UsageReport:
    """Chat Completions ``usage`` -> :class:`UsageReport` (prompt tokens already include cached ones)."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return UsageReport(
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        cached_tokens=prompt.get("cached_tokens"),
        reasoning_tokens=completion.get("reasoning_tokens"),
    )


def stream_error(payload: Any, provider: str) -> UpstreamError:
    """An error frame (``event: error`` or a data object with ``error``) -> :class:`UpstreamError`."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    message = extract_error_message(json.dumps({"error": error})) or "unknown error"
    status_code = code = None
    if isinstance(error, dict):
        status_code = error.get("status_code") or error.get("status")
        code = error.get("code")
        if code is None:
            code = error.get("type")
    text = f"Provider '{provider}' failed mid-stream: {message}"
    if status_code == 429 or code in ("rate_limit_exceeded", "rate_limit_error"):
        return rate_limited(text)
    return UpstreamError(
        text, status=502, code=str(code) if isinstance(code, (str, int)) else "upstream_error"
    )


class _Call:
    """One tool call being assembled from indexed stream pieces."""

    __slots__ = ("index", "call_id", "name", "full", "pending", "state", "extra")

    PENDING, OPEN, CLOSED = 0, 1, 2

    def __init__(self, index: int) -> None:
        self.index = index
        self.call_id: str | None = None
        self.name: str | None = None
        self.full: list[str] = []  # every argument piece seen
        self.pending: list[str] = []  # pieces not yet emitted
        self.state = _Call.PENDING
        self.extra: Any = None

    def complete(self) -> bool:
        """True when the arguments so far already form a whole JSON value (nothing more can follow)."""
        try:
            json.loads("".join(self.full))
        except ValueError:
            return False
        return True


class StreamParser(OpenItem):
    """Turns parsed ``chat.completion.chunk`` objects into neutral chunks (no I/O).

    Tool calls are keyed by ``index``. The current call streams live; pieces for other calls are
    buffered. The adapter switches to another call only once the current call's arguments form a
    complete JSON value, so interleaved pieces can never land in an already-closed call; whatever is
    still buffered is flushed, call by call in index order, by :meth:`finish`.
    """

    def __init__(self, provider: str = "provider", request: ModelRequest | None = None) -> None:
        super().__init__()  # the open item: "message" | "reasoning" | "call"
        self.provider = provider
        self.calls: dict[int, _Call] = {}
        self.current: _Call | None = None
        self.finish_reason: str | None = None
        self.usage: UsageReport | None = None
        self.done = False
        self.emitted_calls = 0

    # ---- item bookkeeping

    def close_open(self, out: list[Chunk]) -> None:
        if self.open == "call" and self.current is not None:
            call = self.current
            out.append(ItemEnd({"extra_content": call.extra} if call.extra is not None else None))
            call.state = _Call.CLOSED
            self.current = None
        super().close_open(out)

    def _start(self, call: _Call, out: list[Chunk]) -> None:
        self.close_open(out)
        if call.call_id is None:
            call.call_id = new_call_id()
        out.append(ToolCallStart(call.call_id, call.name or ""))
        if call.pending:
            out.append(ToolCallDelta("".join(call.pending)))
            call.pending.clear()
        call.state = _Call.OPEN
        self.current = call
        self.open = "call"
        self.emitted_calls += 1

    # ---- feeding

    def _tool_piece(self, piece: dict[str, Any], out: list[Chunk]) -> None:
        index = piece.get("index")
        piece_id = piece.get("id")
        if not isinstance(index, int):
            # Some servers leave out ``index``: match by id, else a new id is a new call.
            index = next((c.index for c in self.calls.values() if piece_id and c.call_id == piece_id), None)
            if index is None:
                index = len(self.calls) if piece_id or not self.calls else max(self.calls)
        call = self.calls.get(index)
        if call is None:
            call = self.calls[index] = _Call(index)
        if call.state == _Call.CLOSED:
            return
        if piece_id and call.call_id is None:
            call.call_id = piece_id
        if piece.get("extra_content") is not None:
            call.extra = piece["extra_content"]
        fn = piece.get("function") or {}
        if fn.get("name") and call.name is None:
            call.name = fn["name"]
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):
            args = json.dumps(args)
        if args:
            call.full.append(args)
        if call is self.current:
            if args:
                out.append(ToolCallDelta(args))
            return
        if args:
            call.pending.append(args)
        if call.name is None:
            return
        if self.current is not None and not self.current.complete():
            return  # keep streaming the current call; this one waits in its buffer
        self._start(call, out)

    def feed(self, data: dict[str, Any]) -> list[Chunk]:
        """Chunks for one parsed stream object; raises for an error object (``{"error": …}``)."""
        if data.get("error"):
            raise stream_error(data, self.provider)
        out: list[Chunk] = []
        usage = data.get("usage") or (data.get("x_groq") or {}).get("usage")
        if usage:
            self.usage = usage_report(usage)
        for choice in data.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            self.deltas(out, reasoning, delta.get("content"), delta.get("refusal"))
            for piece in delta.get("tool_calls") or ():
                self._tool_piece(piece, out)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[Chunk]:
        """The closing chunks (buffered calls, usage, finish); raises if the stream was cut short
        (no ``finish_reason`` and no ``[DONE]``)."""
        if self.finish_reason is None and not self.done:
            raise truncated(self.provider)
        out: list[Chunk] = []
        for index in sorted(self.calls):
            call = self.calls[index]
            if call.state == _Call.PENDING and (call.name or call.full):
                self._start(call, out)
        reason = _FINISH_REASONS.get(self.finish_reason or "stop", "stop")
        if reason == "stop" and self.emitted_calls:
            reason = "tool_calls"
        if reason != "max_output_tokens":
            self.close_open(out)  # a truncated item stays open: Finish closes it as incomplete
        if self.usage is not None:
            out.append(self.usage)
        out.append(Finish(reason))
        return out


def parse_chat_completion(body: Any, provider: str = "provider") -> list[Chunk]:
    """A non-streamed ``chat.completion`` object -> the full chunk list."""
    if not isinstance(body, dict):
        raise unexpected_body(provider)
    if body.get("error"):
        raise stream_error(body, provider)
    parser = StreamParser(provider)
    choices = body.get("choices") or []
    choice = next((c for c in choices if c.get("index", 0) == 0), choices[0] if choices else None)
    out: list[Chunk] = []
    if choice is not None:
        message = dict(choice.get("message") or {})
        calls = message.get("tool_calls") or []
        message["tool_calls"] = [{**call, "index": call.get("index", n)} for n, call in enumerate(calls)]
        out.extend(
            parser.feed(
                {"choices": [{"index": 0, "delta": message, "finish_reason": choice.get("finish_reason")}]}
            )
        )
    if body.get("usage"):
        parser.usage = usage_report(body["usage"])
    parser.done = True
    out.extend(parser.finish())
    return out


# --------------------------------------------------------------------------- adapter


class OpenAIChatAdapter(ProviderAdapter):
    """``POST {base_url}/chat/completions`` for OpenAI and OpenAI-compatible servers."""

    family = "openai_chat"
    path = "chat/completions"
    build_body = staticmethod(build_body)
    parser_class = StreamParser
    parse_body = staticmethod(parse_chat_completion)
