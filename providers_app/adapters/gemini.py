"""Google Gemini adapter (Generative Language API, ``generateContent`` / ``streamGenerateContent``).

``base_url`` is the API root including the version, as the SDK takes it, e.g.
``https://generativelanguage.googleapis.com/v1beta``. The key goes in the ``x-goog-api-key``
header (never in the URL, so it cannot leak into error messages).

Request mapping (:func:`build_body`, pure):

* ``instructions`` and every system/developer message (wherever it sits) -> ``systemInstruction``
  (one text part each, in order).
* user -> role ``user``, assistant -> role ``model``; adjacent contents of the same role merge, so
  a model turn's text and parallel ``functionCall`` parts share one content, and the matching
  ``functionResponse`` parts share the next user content (Gemini wants them grouped).
* images: ``data:`` URL -> ``inlineData``; other URLs -> ``fileData`` (MIME type guessed from the
  extension). Files: ``file_data`` (base64 or data URL) -> ``inlineData`` (``application/pdf`` for
  PDFs), ``file_url`` -> ``fileData``. ``file_id`` has no Gemini meaning -> UnsupportedParameter.
  ``detail`` is a hint with no Gemini counterpart and is not sent.
* ``function_call`` -> ``functionCall {name, args}``; ``function_call_output`` ->
  ``functionResponse {name, response: {"output": ...}}`` where ``name`` is found by matching the
  ``call_id`` to the earlier ``function_call``. Gemini has no call ids, so ids are not sent.
* Thought signatures (only for items this provider made, see ``owns``): a function call's
  signature goes back on its ``functionCall`` part; an assistant message's goes on its first text
  part; a reasoning item's (thought text is never sent back) goes on the next model part of the
  same turn that has none of its own. For ``gemini-3*`` models, a model turn with function calls
  and no signature at all (foreign or legacy history) gets Google's documented
  ``skip_thought_signature_validator`` sentinel on its first ``functionCall``, without which
  Gemini 3 answers 400.
* tools -> one ``functionDeclarations`` tool using ``parametersJsonSchema`` (full JSON Schema;
  ``$schema`` keys removed). ``strict`` has no counterpart (Gemini validates against the schema
  anyway) and is not sent.
* OpenAI's ``web_search`` tool -> ``{"google_search": {}}`` (Grounding with Google Search;
  provider option ``web_search: false`` leaves it out instead). ``filters.allowed_domains`` cannot be
  honoured (UnsupportedParameter); ``user_location`` and ``search_context_size`` have no
  counterpart and are not sent; forcing the search with ``tool_choice`` leaves it to the model.
  ``web_search_call`` items in the history are not sent (the answer's text carries what was found).
* tool_choice -> ``toolConfig.functionCallingConfig``: auto AUTO, required ANY, none NONE,
  ``{"type":"function"}`` ANY + allowedFunctionNames, ``allowed_tools`` allowedFunctionNames with
  ANY (mode required) or VALIDATED (mode auto: text or a call limited to the names).
* ``parallel_tool_calls=False``: Gemini cannot be told, so only the first function call of the
  answer is relayed (the rest are dropped by the parser).
* temperature/top_p/max_output_tokens -> generationConfig; json_schema -> ``responseMimeType``
  ``application/json`` + ``responseJsonSchema``; json_object -> ``responseMimeType`` only.
* reasoning.effort -> ``thinkingConfig``: ``thinkingLevel`` for gemini-3 models (none/minimal ->
  minimal, xhigh -> high), ``thinkingBudget`` otherwise (none 0, minimal 512, low 1024, medium
  8192, high/xhigh 24576). ``includeThoughts`` is true when a summary is asked for or an effort
  other than ``none`` is given.

Response mapping (:class:`StreamParser`, pure; every streamed frame is a whole
GenerateContentResponse): ``thought: true`` parts -> ReasoningDelta(kind="summary"); other text ->
TextDelta; ``functionCall`` -> ToolCallStart (generated ``call_…`` id, signature in
``provider_data["thought_signature"]``) + one ToolCallDelta + ItemEnd. A signature on a thought part
is returned in ``ReasoningDone.provider_data``, one on a text part in the message's
``ItemEnd.provider_data`` (both as ``{"thought_signature": ...}``). Usage comes from the last
``usageMetadata`` seen (it is cumulative). A candidate's ``groundingMetadata`` becomes one
``web_search_call`` (``webSearchQueries`` as its queries, ``groundingChunks[].web`` as its sources),
before the answer when it is known first (a whole body), after it otherwise (a stream sends it
last), and ``groundingSupports`` become ``url_citation`` annotations: each segment's UTF-8 byte
offsets (into the part ``partIndex`` names, or the streamed text) converted to character offsets,
checked against the segment's ``text``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
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
    new_call_id,
)
from providers_app.adapters.content import (
    guess_mime,
    image_url,
    inline_file,
    is_base64,
    parse_arguments,
    parse_data_url,
)
from providers_app.adapters.types import (
    ModelRequest,
    ProviderConfig,
    UnsupportedParameter,
    UpstreamError,
    invalid_request,
    rate_limited,
    truncated,
)
from providers_app.adapters.web_search import (
    WEB_SEARCH_TYPES,
    allowed_domains,
    char_span,
    is_search_choice,
    search_tools,
)

#: Google's documented placeholder for function calls that carry no real thought signature.
SKIP_SIGNATURE = "skip_thought_signature_validator"

THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
THINKING_LEVELS = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}

CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
    }
)
BAD_CALL_REASONS = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})


# --------------------------------------------------------------------------- request mapping


def model_path(model: str) -> str:
    """The model id as it goes in the URL (an SDK-style ``models/`` prefix is dropped)."""
    return model.removeprefix("models/")


def is_gemini3(model: str) -> bool:
    return model_path(model).startswith("gemini-3")


def strip_schema(schema: Any) -> Any:
    """A copy of a JSON Schema without the keys Gemini refuses (``$schema``), recursively."""
    if isinstance(schema, dict):
        return {k: strip_schema(v) for k, v in schema.items() if k != "$schema"}
    if isinstance(schema, list):
        return [strip_schema(v) for v in schema]
    return schema


def image_part(part: dict[str, Any]) -> dict[str, Any]:
    """An ``input_image`` content part as a Gemini part."""
    url = image_url(part)
    if not url:
        if part.get("file_id"):
            raise UnsupportedParameter("input", "Gemini cannot resolve input_image.file_id; send image_url.")
        raise UnsupportedParameter("input", "input_image needs an image_url.")
    if url.startswith("data:"):
        data = parse_data_url(url)
        return {"inlineData": {"mimeType": data.mime or "image/jpeg", "data": data.base64()}}
    return {"fileData": {"fileUri": url, "mimeType": guess_mime(url, "image/jpeg")}}


def file_part(part: dict[str, Any]) -> dict[str, Any]:
    """An ``input_file`` content part as a Gemini part (PDFs and other documents Gemini reads)."""
    file_data = part.get("file_data")
    if file_data:
        if not file_data.startswith("data:") and not is_base64(file_data):
            raise UnsupportedParameter("input", "input_file.file_data must be base64 or a data URL.")
        data = inline_file(part)
        return {"inlineData": {"mimeType": data.mime, "data": data.base64()}}
    url = part.get("file_url")
    if url:
        return {
            "fileData": {
                "fileUri": url,
                "mimeType": guess_mime(part.get("filename") or url, "application/pdf"),
            }
        }
    if part.get("file_id"):
        raise UnsupportedParameter(
            "input", "Gemini cannot resolve input_file.file_id; send file_data or file_url."
        )
    raise UnsupportedParameter("input", "input_file needs file_data or file_url.")


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Message content (a string or a list of content parts) as Gemini parts."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content or []:
        if isinstance(part, str):
            if part:
                parts.append({"text": part})
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "refusal":
            if part.get("refusal"):
                parts.append({"text": part["refusal"]})
        elif kind == "input_image":
            parts.append(image_part(part))
        elif kind == "input_file":
            parts.append(file_part(part))
        else:
            raise UnsupportedParameter("input", f"Gemini does not take content parts of type '{kind}'.")
    return parts


def tool_output_parts(name: str, output: Any) -> list[dict[str, Any]]:
    """A ``function_call_output`` as a ``functionResponse`` part (+ any images/files after it)."""
    extra: list[dict[str, Any]] = []
    if isinstance(output, str):
        text = output
    else:
        texts = []
        for part in content_parts(output):
            if "text" in part:
                texts.append(part["text"])
            else:
                extra.append(part)
        text = "".join(texts)
    return [{"functionResponse": {"name": name, "response": {"output": text}}}, *extra]


def tools_body(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function tools as one Gemini tool with ``functionDeclarations``; web search as Google Search."""
    declarations = []
    for tool in tools:
        if tool.get("type") in WEB_SEARCH_TYPES:
            if allowed_domains(tool):
                raise UnsupportedParameter(
                    "tools",
                    "Gemini's Google Search cannot be limited to domains (web_search filters.allowed_domains).",
                )
            continue
        if tool.get("type", "function") != "function":
            raise UnsupportedParameter(
                "tools", f"Gemini adapter supports function tools only, not '{tool.get('type')}'."
            )
        declaration: dict[str, Any] = {"name": tool["name"], "description": tool.get("description") or ""}
        if tool.get("parameters"):
            declaration["parametersJsonSchema"] = strip_schema(tool["parameters"])
        declarations.append(declaration)
    out: list[dict[str, Any]] = [{"functionDeclarations": declarations}] if declarations else []
    if search_tools(tools):
        out.append({"google_search": {}})
    return out


def tool_config(tool_choice: Any) -> dict[str, Any] | None:
    """``tool_choice`` as ``toolConfig`` (forcing Google Search cannot be said: AUTO)."""
    if tool_choice is None or tool_choice == "auto" or is_search_choice(tool_choice):
        config: dict[str, Any] = {"mode": "AUTO"}
    elif tool_choice == "required":
        config = {"mode": "ANY"}
    elif tool_choice == "none":
        config = {"mode": "NONE"}
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "function" and tool_choice.get("name"):
        config = {"mode": "ANY", "allowedFunctionNames": [tool_choice["name"]]}
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        names = []
        for tool in tool_choice.get("tools") or []:
            if tool.get("type", "function") != "function" or not tool.get("name"):
                raise UnsupportedParameter(
                    "tool_choice", "Gemini adapter supports allowed function tools only."
                )
            names.append(tool["name"])
        mode = tool_choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise UnsupportedParameter("tool_choice", f"Unknown allowed_tools mode '{mode}'.")
        config = {"mode": "ANY" if mode == "required" else "VALIDATED", "allowedFunctionNames": names}
    else:
        raise UnsupportedParameter("tool_choice", "Gemini adapter cannot honour this tool_choice.")
    return {"functionCallingConfig": config}


def thinking_config(model: str, reasoning: dict[str, Any] | None) -> dict[str, Any] | None:
    """``reasoning`` as ``thinkingConfig`` (level for gemini-3, token budget before)."""
    if not reasoning:
        return None
    effort = reasoning.get("effort")
    summary = reasoning.get("summary")
    config: dict[str, Any] = {}
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise UnsupportedParameter("reasoning.effort", f"Unknown reasoning effort '{effort}'.")
        if is_gemini3(model):
            config["thinkingLevel"] = THINKING_LEVELS[effort]
        else:
            config["thinkingBudget"] = THINKING_BUDGETS[effort]
    if (summary and summary != "none") or (effort is not None and effort != "none"):
        config["includeThoughts"] = True
    return config or None


def generation_config(request: ModelRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.max_output_tokens is not None:
        config["maxOutputTokens"] = request.max_output_tokens
    fmt = request.text_format or {}
    kind = fmt.get("type", "text")
    if kind == "json_schema":
        config["responseMimeType"] = "application/json"
        if fmt.get("schema") is not None:
            config["responseJsonSchema"] = strip_schema(fmt["schema"])
    elif kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind != "text":
        raise UnsupportedParameter("text.format", f"Gemini adapter cannot honour text.format '{kind}'.")
    thinking = thinking_config(request.model, request.reasoning)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


class _Contents:
    """Builds the ``contents`` list, merging adjacent turns of one role."""

    def __init__(self) -> None:
        self.contents: list[dict[str, Any]] = []
        self.carry: str | None = None  # a reasoning item's signature waiting for the next model part

    def add(self, role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if role == "model" and self.carry:
            if "thoughtSignature" not in parts[0]:
                parts[0] = {**parts[0], "thoughtSignature": self.carry}
            self.carry = None
        elif role != "model":
            self.carry = None
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})


def build_body(request: ModelRequest, config: ProviderConfig, *, stream: bool = False) -> dict[str, Any]:
    """The generateContent body for ``request`` (the same streamed or not: the URL differs)."""

    def owns(item: dict[str, Any]) -> bool:
        return (item.get("_meta") or {}).get("provider") == config.name

    system: list[dict[str, Any]] = []
    if request.instructions:
        system.append({"text": request.instructions})
    names_by_call: dict[str, str] = {}
    built = _Contents()
    for item in request.items:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            parts = content_parts(item.get("content"))
            if role in ("system", "developer"):
                system.extend(p for p in parts if "text" in p)
            elif role == "user":
                built.add("user", parts)
            elif role == "assistant":
                signature = (item.get("_meta") or {}).get("thought_signature") if owns(item) else None
                if signature:
                    for i, part in enumerate(parts):
                        if "text" in part:
                            parts[i] = {**part, "thoughtSignature": signature}
                            break
                built.add("model", parts)
            else:
                raise UnsupportedParameter("input", f"Unknown message role '{role}'.")
        elif kind == "function_call":
            names_by_call[item.get("call_id") or ""] = item["name"]
            args = parse_arguments(item.get("arguments"))
            part: dict[str, Any] = {
                "functionCall": {"name": item["name"], "args": args if isinstance(args, dict) else {}}
            }
            signature = (item.get("_meta") or {}).get("thought_signature") if owns(item) else None
            if signature:
                part["thoughtSignature"] = signature
            built.add("model", [part])
        elif kind == "function_call_output":
            call_id = item.get("call_id") or ""
            name = names_by_call.get(call_id)
            if name is None:
                raise UnsupportedParameter(
                    "input", f"function_call_output '{call_id}' has no matching function_call in the input."
                )
            built.add("user", tool_output_parts(name, item.get("output")))
        elif kind == "reasoning":
            # Thought summaries are not sent back; only this provider's signature is, on the next model part.
            signature = (item.get("_meta") or {}).get("thought_signature") if owns(item) else None
            if signature:
                built.carry = signature
        elif kind == "web_search_call":
            continue  # Google Search grounding has nothing to send back: the answer's text stays
        else:
            raise UnsupportedParameter("input", f"Gemini adapter cannot send input items of type '{kind}'.")
    contents = built.contents
    if is_gemini3(request.model):
        for content in contents:
            if content["role"] != "model" or any("thoughtSignature" in p for p in content["parts"]):
                continue
            for i, part in enumerate(content["parts"]):
                if "functionCall" in part:
                    content["parts"][i] = {**part, "thoughtSignature": SKIP_SIGNATURE}
                    break
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        tools = tools_body(request.tools)
        if tools:
            body["tools"] = tools
        if any("functionDeclarations" in t for t in tools):
            body["toolConfig"] = tool_config(request.tool_choice)
    config = generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


# --------------------------------------------------------------------------- response parsing


def grounding_search(grounding: list[dict[str, Any]]) -> WebSearchDone | None:
    """The search that grounded an answer (None when no web search was made): every
    ``groundingMetadata`` seen, merged (a stream may repeat or extend it)."""
    queries: list[str] = []
    sources: dict[str, dict[str, str]] = {}
    for metadata in grounding:
        for query in metadata.get("webSearchQueries") or []:
            if isinstance(query, str) and query and query not in queries:
                queries.append(query)
        for chunk in metadata.get("groundingChunks") or []:
            web = chunk.get("web") if isinstance(chunk, dict) else None
            if isinstance(web, dict) and web.get("uri"):
                sources.setdefault(web["uri"], {"url": web["uri"], "title": web.get("title") or ""})
    if not queries and not sources:
        return None
    return WebSearchDone(queries=queries, sources=list(sources.values()))


def grounding_citations(
    grounding: list[dict[str, Any]], text: str, parts: dict[int, tuple[int, str]]
) -> list[Citation]:
    """``groundingSupports`` as citations of ``text`` (the answer's text so far). ``parts`` maps a
    content part's index to where its text starts in ``text`` and that text, when known (a whole
    body); otherwise a segment's offsets are taken as offsets into ``text`` itself."""
    out: list[Citation] = []
    seen: set[tuple[str, int, int]] = set()
    for metadata in grounding:
        chunks = metadata.get("groundingChunks") or []
        for support in metadata.get("groundingSupports") or []:
            span = _segment_span((support or {}).get("segment") or {}, text, parts)
            if span is None:
                continue
            for index in support.get("groundingChunkIndices") or []:
                chunk = chunks[index] if isinstance(index, int) and 0 <= index < len(chunks) else None
                web = chunk.get("web") if isinstance(chunk, dict) else None
                if not isinstance(web, dict) or not web.get("uri") or (web["uri"], *span) in seen:
                    continue
                seen.add((web["uri"], *span))
                out.append(Citation(web["uri"], web.get("title") or web["uri"], *span))
    return out


def _segment_span(
    segment: dict[str, Any], text: str, parts: dict[int, tuple[int, str]]
) -> tuple[int, int] | None:
    """A segment's character span in ``text``: its byte offsets converted, or where its quoted
    ``text`` is when the offsets do not point at it."""
    base, part = parts.get(segment.get("partIndex") or 0, (0, text)) if parts else (0, text)
    start, end = char_span(part, segment.get("startIndex") or 0, segment.get("endIndex") or 0)
    start, end = base + start, base + end
    quoted = segment.get("text")
    if isinstance(quoted, str) and quoted and text[start:end] != quoted:
        found = text.find(quoted)
        if found >= 0:
            start, end = found, found + len(quoted)
    return (start, end) if end > start else None


class StreamParser:
    """Turns GenerateContentResponse objects (whole bodies or streamed frames) into chunks.

    Feed every frame with :meth:`feed`, then call :meth:`finish` once the body ended.
    """

    __slots__ = (
        "provider",
        "done",
        "single_call",
        "open",
        "signature",
        "calls",
        "dropped_calls",
        "finish_reason",
        "blocked",
        "usage",
        "frames",
        "grounding",
        "searched",
        "text",
        "text_frames",
        "parts",
    )

    def __init__(
        self, provider: str = "gemini", request: ModelRequest | None = None, *, single_call: bool = False
    ) -> None:
        self.provider = provider
        self.done = False  # Gemini has no terminal frame: the answer ends with the body
        # parallel_tool_calls=false cannot be told to Gemini: only the first call is relayed.
        self.single_call = single_call or (
            request is not None and bool(request.tools) and not request.parallel_tool_calls
        )
        self.open: str | None = None  # "text" | "reasoning"
        self.signature: str | None = None  # pending signature of the open text/reasoning item
        self.calls = 0
        self.dropped_calls = 0
        self.finish_reason: str | None = None
        self.blocked: str | None = None
        self.usage: dict[str, Any] | None = None
        self.frames = 0
        self.grounding: list[dict[str, Any]] = []  # every groundingMetadata seen
        self.searched = False  # the grounding search was relayed
        self.text: list[str] = []  # the open answer's text (citation offsets)
        self.text_frames: set[int] = set()  # the frames it came in
        self.parts: dict[int, tuple[int, str]] = {}  # content part index -> (its start in text, its text)

    def _close(self) -> Iterator[Chunk]:
        data = {"thought_signature": self.signature} if self.signature else None
        if self.open == "reasoning":
            yield ReasoningDone(provider_data=data)
        elif self.open == "text":
            yield from self._citations()
            yield ItemEnd(provider_data=data)
        self.open = None
        self.signature = None

    def feed(self, frame: dict[str, Any]) -> Iterator[Chunk]:
        error = frame.get("error")
        if error:
            raise stream_error(error, self.provider)
        usage = frame.get("usageMetadata")
        if usage:
            self.usage = usage
        feedback = frame.get("promptFeedback") or {}
        if feedback.get("blockReason"):
            self.blocked = feedback["blockReason"]
        candidates = frame.get("candidates") or []
        if not candidates:
            return
        candidate = candidates[0]
        self.frames += 1
        metadata = candidate.get("groundingMetadata")
        if isinstance(metadata, dict):
            self.grounding.append(metadata)
            if self.open is None and not self.text_frames:
                yield from self._search()  # known before the answer: the search comes first
        for number, part in enumerate((candidate.get("content") or {}).get("parts") or ()):
            call = part.get("functionCall")
            signature = part.get("thoughtSignature")
            if call is not None:
                yield from self._close()
                if self.single_call and self.calls:
                    self.dropped_calls += 1
                    continue
                self.calls += 1
                data = {"thought_signature": signature} if signature else None
                yield ToolCallStart(call_id=new_call_id(), name=call.get("name") or "", provider_data=data)
                yield ToolCallDelta(arguments=json.dumps(call.get("args") or {}, ensure_ascii=False))
                yield ItemEnd()
                continue
            text = part.get("text")
            if text is None and not signature:
                continue  # executableCode, inlineData output… not relayed
            kind = "reasoning" if part.get("thought") else "text"
            if text:
                if self.open != kind:
                    yield from self._close()
                    self.open = kind
                    if kind == "text":
                        self.text, self.text_frames, self.parts = [], set(), {}
                if kind == "text":
                    self.parts[number] = (sum(map(len, self.text)), text)
                    self.text.append(text)
                    self.text_frames.add(self.frames)
                yield (
                    ReasoningDelta(text=text, kind="summary") if kind == "reasoning" else TextDelta(text=text)
                )
            if signature:
                if self.open is None and kind == "reasoning":
                    # A bare signature on an empty thought part: it still closes a (empty) reasoning item.
                    self.open = "reasoning"
                if self.open is not None and self.signature is None:
                    self.signature = signature
        if candidate.get("finishReason"):
            self.finish_reason = candidate["finishReason"]

    def _citations(self) -> Iterator[Chunk]:
        if self.grounding and self.text:
            # Part indices mean something only when the whole answer came in one frame.
            parts = self.parts if len(self.text_frames) == 1 else {}
            yield from grounding_citations(self.grounding, "".join(self.text), parts)
        self.text = []

    def _search(self) -> Iterator[Chunk]:
        if not self.searched:
            search = grounding_search(self.grounding)
            if search is not None:
                self.searched = True
                yield search

    def finish(self) -> Iterator[Chunk]:
        if self.finish_reason != "MAX_TOKENS":
            yield from self._close()  # a cut-off item stays open: Finish closes it as incomplete
            yield from self._search()  # streamed: the grounding came with the last frames
        elif self.open == "text":
            yield from self._citations()
        if self.usage is not None:
            yield usage_report(self.usage)
        reason = self.finish_reason
        if reason is None:
            if self.blocked:
                yield Finish("content_filter")
                return
            raise truncated(self.provider)
        yield Finish(map_finish_reason(reason, self.calls > 0, self.provider))


def map_finish_reason(reason: str, called: bool, provider: str = "gemini") -> FinishReason:
    if reason == "MAX_TOKENS":
        return "max_output_tokens"
    if reason in CONTENT_FILTER_REASONS:
        return "content_filter"
    if called:
        return "tool_calls"
    if reason in BAD_CALL_REASONS:
        raise UpstreamError(
            f"The provider '{provider}' could not produce a valid function call ({reason}).", status=502
        )
    return "stop"


def usage_report(usage: dict[str, Any]) -> UsageReport:
    thoughts = usage.get("thoughtsTokenCount") or 0
    return UsageReport(
        input_tokens=usage.get("promptTokenCount") or 0,
        output_tokens=(usage.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=usage.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


_STATUS_BY_RPC = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "DEADLINE_EXCEEDED": 504,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}


def stream_error(error: Any, provider: str) -> UpstreamError:
    """An error object found inside a 200 body (mid-stream) as an UpstreamError."""
    if not isinstance(error, dict):
        return UpstreamError(f"The provider '{provider}' failed mid-stream: {error}", status=502)
    message = str(error.get("message") or error.get("status") or "unknown error")
    status = (
        error.get("code")
        if isinstance(error.get("code"), int)
        else _STATUS_BY_RPC.get(error.get("status"), 500)
    )
    text = f"The provider '{provider}' failed mid-stream: {message}"
    if status == 429:
        return rate_limited(text)
    if status in (400, 404):
        return invalid_request(text)
    if status == 504:
        return UpstreamError(text, status=504, code="upstream_timeout")
    return UpstreamError(text, status=502, code="upstream_error")


def _retry_delay(body: Any) -> float | None:
    """``RetryInfo.retryDelay`` (e.g. ``"27s"``) from a google.rpc.Status body."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            try:
                return max(0.0, float(str(detail.get("retryDelay") or "").rstrip("s")))
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------- adapter


class GeminiAdapter(ProviderAdapter):
    """Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``."""

    family = "gemini"
    carried_meta = frozenset({"thought_signature"})
    #: OpenAI's web search tool is run as Grounding with Google Search.
    native_tool_types = WEB_SEARCH_TYPES
    build_body = staticmethod(build_body)
    parser_class = StreamParser

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        if config.options.get("web_search") is False:
            self.native_tool_types = frozenset()  # OpenAI's web search is left out, as elsewhere

    def endpoint(self, request: ModelRequest, *, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return self.url(f"models/{model_path(request.model)}:{method}")

    def request_headers(self) -> dict[str, str]:
        """The key as ``x-goog-api-key`` (never in the URL, so it cannot leak into error messages)."""
        return self.headers({"x-goog-api-key": self.config.api_key} if self.config.api_key else None)

    def error_from_response(self, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """The base mapping, unwrapping list-wrapped Status bodies and honouring RetryInfo."""
        try:
            body = json.loads(raw)
        except (ValueError, TypeError):
            body = None
        if isinstance(body, list) and body and isinstance(body[0], dict):
            body = body[0]
            raw = json.dumps(body).encode()
        error = super().error_from_response(status, raw, headers)
        if status == 429 and headers.get("retry-after") is None:
            delay = _retry_delay(body)
            if delay is not None:
                error.retry_after = delay
        return error
