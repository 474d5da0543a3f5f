"""The one emitter: neutral chunks in, spec events out, in the spec's order.

It owns item ids, ``output_index``, ``sequence_number`` and the item lifecycle, so every
provider gets event order right at once. Each event is serialised exactly once; the sink
receives ``(sequence_number, type, json)`` and decides when to persist and publish.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

from providers_app.adapters.base import (
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
    WebSearchDone,
    WebSearchStart,
)
from responses_app.events import sealing
from responses_app.ids import (
    custom_tool_call_id,
    function_call_id,
    mcp_call_id,
    message_id,
    new_id,
    reasoning_id,
    web_search_call_id,
)
from responses_app.openai_tools import custom_input

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    return _dumps(value)


class Sink(Protocol):
    def add(self, sequence_number: int, event_type: str, payload: str) -> None: ...


def empty_usage() -> dict[str, Any]:
    return {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


def add_usage(total: dict[str, Any], report: dict[str, int]) -> None:
    total["input_tokens"] += report.get("input_tokens", 0)
    total["output_tokens"] += report.get("output_tokens", 0)
    total["input_tokens_details"]["cached_tokens"] += report.get("cached_tokens", 0)
    total["output_tokens_details"]["reasoning_tokens"] += report.get("reasoning_tokens", 0)
    total["total_tokens"] = total["input_tokens"] + total["output_tokens"]


class _OpenItem:
    __slots__ = (
        "item",
        "index",
        "kind",
        "part_kind",
        "part_index",
        "buffer",
        "summary_index",
        "meta",
        "raw_input",
        "annotations",
        "call_id",
        "searched",
    )

    def __init__(self, item: dict[str, Any], index: int, kind: str) -> None:
        self.item = item
        self.index = index
        self.kind = kind
        self.part_kind: str | None = None
        self.part_index = -1
        self.buffer: list[str] = []
        self.summary_index = -1
        self.meta: dict[str, Any] = {}
        self.raw_input = False  # a custom call whose deltas are its input (not JSON arguments)
        self.annotations: list[dict[str, Any]] = []  # the open output_text part's
        self.call_id = ""  # a web search: the provider's id of the search
        self.searched = False  # a web search: its WebSearchDone came


class ToolMap(Protocol):
    def call_shape(self, model_name: str) -> Any: ...


#: An open item's text is joined into one string every this many pieces: a streamed answer's
#: deltas are a few characters each, and a ``str`` object costs ~50 bytes beside them, so an open
#: loop holds at most this many small strings of its answer, not hundreds (joining costs a copy
#: of the text so far every this many deltas).
TEXT_PIECES_JOINED = 16


def _append(buffer: list[str], text: str) -> None:
    """Collect a long text's pieces, joined every :data:`TEXT_PIECES_JOINED`."""
    buffer.append(text)
    if len(buffer) >= TEXT_PIECES_JOINED:
        buffer[:] = ["".join(buffer)]


class ResponseEmitter:
    """Builds the event stream of one response. ``resource`` is its live ResponseResource dict."""

    def __init__(
        self, resource: dict[str, Any], sink: Sink, *, sequence_start: int = 0, provider: str = ""
    ) -> None:
        self.resource = resource
        self.output: list[dict[str, Any]] = resource["output"]
        self.sink = sink
        self.seq = sequence_start
        self.provider = provider
        # Set by the loop when ``include`` asks for ``reasoning.encrypted_content`` (see events.sealing).
        self.seal_reasoning = False
        self.family = ""
        self.carried_meta: frozenset[str] = frozenset()  # the adapter's ``carried_meta``
        self.sealed_reasoning = True  # the adapter's ``sealed_reasoning``
        # Set by the loop when ``include`` asks for ``web_search_call.action.sources``.
        self.search_sources = False
        self.open: _OpenItem | None = None
        self.item_meta: dict[str, dict[str, Any]] = {}
        self.usage = resource.get("usage") or empty_usage()
        self.sample_usage: dict[str, int] = {}
        self.finish_reason: str | None = None
        self.first_output_at: float | None = None
        self.sample_items: list[dict[str, Any]] = []
        # The reverse map of tools offered under another name or type (see loop.tool_types).
        self.tool_map: ToolMap | None = None
        # Deltas that arrived together (one network read) wait here and leave as one event.
        self._pending: list[str] = []
        self._pending_kind = ""
        self._pending_item: _OpenItem | None = None

    # ---- low level

    def _add(self, event_type: str, payload: str) -> None:
        self.sink.add(self.seq, event_type, payload)
        self.seq += 1

    def emit(self, event_type: str, body: dict[str, Any]) -> None:
        if self._pending:
            self.flush_deltas()
        event = {"type": event_type, "sequence_number": self.seq}
        event.update(body)
        self._add(event_type, _dumps(event))

    def emit_lifecycle(self, event_type: str) -> None:
        self.emit(event_type, {"response": self.resource})

    # ---- chunks

    def start_sample(self) -> None:
        self.sample_usage = {}
        self.finish_reason = None
        self.sample_items = []

    def feed(self, chunk: Chunk) -> None:
        kind = type(chunk)
        if kind is TextDelta:
            self._delta("output_text", chunk.text)
        elif kind is ToolCallDelta:
            self._arguments_delta(chunk.arguments)
        elif kind is ReasoningDelta:
            self._reasoning_delta(chunk)
        elif kind is RefusalDelta:
            self._delta("refusal", chunk.text)
        elif kind is ToolCallStart:
            self.close_item()
            self._open_function_call(chunk)
        elif kind is ReasoningDone:
            if self.open is None or self.open.kind != "reasoning":
                self.close_item()
                self._open_reasoning()
            assert self.open is not None
            if chunk.encrypted_content is not None:
                self.open.item["encrypted_content"] = chunk.encrypted_content
            if chunk.provider_data:
                self.open.meta.update(chunk.provider_data)
            self.close_item()
        elif kind is ItemEnd:
            if self.open is not None and chunk.provider_data:
                self.open.meta.update(chunk.provider_data)
            self.close_item()
        elif kind is ProviderItem:
            self._provider_item(chunk.item)
        elif kind is Citation:
            self._citation(chunk)
        elif kind is WebSearchStart:
            self.close_item()
            self._open_search(chunk.call_id)
        elif kind is WebSearchDone:
            self._search_done(chunk)
        elif kind is UsageReport:
            for field in ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"):
                value = getattr(chunk, field)
                if value is not None:
                    self.sample_usage[field] = value
        elif kind is Finish:
            self.finish_reason = chunk.reason
            self.close_item(status="incomplete" if chunk.reason == "max_output_tokens" else "completed")

    def end_sample(self) -> None:
        """Close anything left open and add this sample's usage to the total."""
        self.close_item()
        if self._sealing() and self.finish_reason is not None:
            self._seal_item_data()
        add_usage(self.usage, self.sample_usage)
        self.sample_usage = {}

    def _sealing(self) -> bool:
        return self.seal_reasoning and self.sealed_reasoning and bool(self.provider)

    def _seal_item_data(self) -> None:
        """Opaque provider data on this sample's other items (Gemini's thought signatures on a
        function call or an answer) rides, sealed, on one empty reasoning item after them: a
        ``store: false`` client sends it back with them and ``sealing.open_items`` puts it back."""
        carried: dict[str, dict[str, Any]] = {}
        for item in self.sample_items:
            meta = self.item_meta.get(item.get("id") or "") or {}
            if item.get("type") == "reasoning" or item not in self.output:
                continue
            data = {k: v for k, v in meta.items() if k in self.carried_meta}
            if data:
                carried[sealing.item_key(item)] = data
        if not carried:
            return
        sealed = sealing.seal(self.provider, self.family, None, {"provider": self.provider}, items=carried)
        self.add_item({"id": reasoning_id(), "type": "reasoning", "summary": [], "encrypted_content": sealed})

    # ---- messages

    def _mark_output(self) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.time()

    def _delta(self, part_kind: str, text: str) -> None:
        if not text:
            return
        item = self.open
        if item is None or item.kind != "message":
            self.close_item()
            item = self._open_message()
        if item.part_kind != part_kind:
            self._close_part(item)
            self._open_part(item, part_kind)
        _append(item.buffer, text)
        self._mark_output()
        if part_kind == "output_text":
            self._queue_delta("text", item, text)
        else:
            self.emit(
                "response.refusal.delta",
                {
                    "item_id": item.item["id"],
                    "output_index": item.index,
                    "content_index": item.part_index,
                    "delta": text,
                },
            )

    def _open_message(self) -> _OpenItem:
        item = {
            "id": message_id(),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        return self._open(item, "message")

    def _open(self, item: dict[str, Any], kind: str) -> _OpenItem:
        opened = _OpenItem(item, len(self.output), kind)
        self.open = opened
        self.emit("response.output_item.added", {"output_index": opened.index, "item": item})
        return opened

    def _open_part(self, item: _OpenItem, part_kind: str) -> None:
        item.part_kind = part_kind
        item.part_index += 1
        item.buffer = []
        if part_kind == "reasoning_text":
            part: dict[str, Any] = {"type": "reasoning_text", "text": ""}
        elif part_kind == "refusal":
            part = {"type": "refusal", "refusal": ""}
        else:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self.emit(
            "response.content_part.added",
            {
                "item_id": item.item["id"],
                "output_index": item.index,
                "content_index": item.part_index,
                "part": part,
            },
        )

    def _close_part(self, item: _OpenItem) -> None:
        kind = item.part_kind
        if kind is None:
            return
        text = "".join(item.buffer)
        base = {"item_id": item.item["id"], "output_index": item.index}
        if kind == "summary_text":
            self.emit(
                "response.reasoning_summary_text.done",
                {**base, "summary_index": item.summary_index, "text": text},
            )
            part = {"type": "summary_text", "text": text}
            self.emit(
                "response.reasoning_summary_part.done",
                {**base, "summary_index": item.summary_index, "part": part},
            )
            item.item["summary"].append(part)
        elif kind == "reasoning_text":
            self.emit("response.reasoning.done", {**base, "content_index": item.part_index, "text": text})
            part = {"type": "reasoning_text", "text": text}
            self.emit("response.content_part.done", {**base, "content_index": item.part_index, "part": part})
            item.item.setdefault("content", []).append(part)
        elif kind == "refusal":
            self.emit("response.refusal.done", {**base, "content_index": item.part_index, "refusal": text})
            part = {"type": "refusal", "refusal": text}
            self.emit("response.content_part.done", {**base, "content_index": item.part_index, "part": part})
            item.item["content"].append(part)
        else:
            self.emit(
                "response.output_text.done",
                {**base, "content_index": item.part_index, "text": text, "logprobs": []},
            )
            part = {"type": "output_text", "text": text, "annotations": item.annotations, "logprobs": []}
            item.annotations = []
            self.emit("response.content_part.done", {**base, "content_index": item.part_index, "part": part})
            item.item["content"].append(part)
        item.part_kind = None
        item.buffer = []

    # ---- reasoning

    def _open_reasoning(self) -> _OpenItem:
        return self._open({"id": reasoning_id(), "type": "reasoning", "summary": []}, "reasoning")

    def _reasoning_delta(self, chunk: ReasoningDelta) -> None:
        if not chunk.text:
            return
        item = self.open
        if item is None or item.kind != "reasoning":
            self.close_item()
            item = self._open_reasoning()
        base = {"item_id": item.item["id"], "output_index": item.index}
        if chunk.kind == "summary":
            if item.part_kind != "summary_text" or chunk.summary_index > item.summary_index:
                self._close_part(item)
                item.part_kind = "summary_text"
                item.summary_index += 1
                item.buffer = []
                self.emit(
                    "response.reasoning_summary_part.added",
                    {
                        **base,
                        "summary_index": item.summary_index,
                        "part": {"type": "summary_text", "text": ""},
                    },
                )
            _append(item.buffer, chunk.text)
            self.emit(
                "response.reasoning_summary_text.delta",
                {**base, "summary_index": item.summary_index, "delta": chunk.text},
            )
        else:
            if item.part_kind != "reasoning_text":
                self._close_part(item)
                self._open_part(item, "reasoning_text")
            _append(item.buffer, chunk.text)
            self.emit(
                "response.reasoning.delta", {**base, "content_index": item.part_index, "delta": chunk.text}
            )

    # ---- web search (run by the provider) and citations

    def _open_search(self, call_id: str) -> _OpenItem:
        """A ``web_search_call`` item as OpenAI streams one: added, in progress, searching."""
        item = {
            "id": web_search_call_id(),
            "type": "web_search_call",
            "status": "in_progress",
            "action": {"type": "search"},
        }
        opened = self._open(item, "web_search_call")
        opened.call_id = call_id
        base = {"item_id": item["id"], "output_index": opened.index}
        self.emit("response.web_search_call.in_progress", base)
        self.emit("response.web_search_call.searching", base)
        self._mark_output()
        return opened

    def _search_done(self, chunk: WebSearchDone) -> None:
        item = self.open
        if item is None or item.kind != "web_search_call" or item.call_id != chunk.call_id:
            self.close_item()
            item = self._open_search(chunk.call_id)
        action: dict[str, Any] = {"type": "search", "query": chunk.queries[0] if chunk.queries else ""}
        if len(chunk.queries) > 1:
            action["queries"] = list(chunk.queries)
        if self.search_sources:
            action["sources"] = [{"type": "url", "url": s["url"]} for s in chunk.sources if s.get("url")]
        item.item["action"] = action
        item.searched = True
        if chunk.provider_data:
            item.meta.update(chunk.provider_data)
        if not chunk.failed:
            self.emit(
                "response.web_search_call.completed", {"item_id": item.item["id"], "output_index": item.index}
            )
        self.close_item(status="failed" if chunk.failed else "completed")

    def _citation(self, chunk: Citation) -> None:
        """A ``url_citation`` on the open output text (none open: the citation has nothing to mark)."""
        item = self.open
        if item is None or item.kind != "message" or item.part_kind != "output_text":
            return
        length = sum(map(len, item.buffer))
        start, end = max(0, min(chunk.start, length)), max(0, min(chunk.end, length))
        if end <= start:
            return
        annotation = {
            "type": "url_citation",
            "url": chunk.url,
            "title": chunk.title or chunk.url,
            "start_index": start,
            "end_index": end,
        }
        item.annotations.append(annotation)
        self.emit(
            "response.output_text.annotation.added",
            {
                "item_id": item.item["id"],
                "output_index": item.index,
                "content_index": item.part_index,
                "annotation_index": len(item.annotations) - 1,
                "annotation": annotation,
            },
        )

    # ---- function calls

    def _open_function_call(self, chunk: ToolCallStart) -> None:
        """Open the item a tool call is for the client: a ``function_call`` (with its
        ``namespace``, if any) or a ``custom_tool_call``, whatever name the provider knew it by."""
        name, namespace, custom = chunk.name, chunk.namespace, chunk.custom
        shape = None if custom or namespace else self.tool_map and self.tool_map.call_shape(name)
        if shape is not None and shape.item_type == "mcp_call":
            self._open_mcp_call(chunk, shape)
            return
        if shape is not None:
            name, namespace = shape.name, shape.namespace
        if custom or (shape is not None and shape.item_type == "custom_tool_call"):
            item = {
                "id": custom_tool_call_id(),
                "type": "custom_tool_call",
                "status": "in_progress",
                "call_id": chunk.call_id,
                "name": name,
                "input": "",
            }
            kind = "custom_tool_call"
        else:
            item = {
                "id": function_call_id(),
                "type": "function_call",
                "status": "in_progress",
                "call_id": chunk.call_id,
                "name": name,
                "arguments": "",
            }
            kind = "function_call"
        if namespace:
            item["namespace"] = namespace
        opened = self._open(item, kind)
        opened.raw_input = custom
        if chunk.provider_data:
            opened.meta.update(chunk.provider_data)
        self._mark_output()

    def _open_mcp_call(self, chunk: ToolCallStart, shape: Any) -> None:
        """A call of an MCP tool the loop runs: held back (no events) until the loop knows whether
        it runs it (an ``mcp_call`` item) or asks for approval (an ``mcp_approval_request``)."""
        item = {
            "id": mcp_call_id(),
            "type": "mcp_call",
            "status": "in_progress",
            "server_label": shape.namespace,
            "name": shape.name,
            "arguments": "",
        }
        opened = _OpenItem(item, -1, "mcp_call")
        if chunk.provider_data:
            opened.meta.update(chunk.provider_data)
        self.open = opened
        self._mark_output()

    def _arguments_delta(self, delta: str) -> None:
        item = self.open
        if item is None or not delta:
            return
        if item.kind == "mcp_call":
            _append(item.buffer, delta)
        elif item.kind == "function_call":
            _append(item.buffer, delta)
            self._queue_delta("arguments", item, delta)
        elif item.kind == "custom_tool_call":
            _append(item.buffer, delta)
            if item.raw_input:  # else JSON arguments: the input is known once they are complete
                self._custom_input_delta(item, delta)

    def _custom_input_delta(self, item: _OpenItem, delta: str) -> None:
        self.emit(
            "response.custom_tool_call_input.delta",
            {"item_id": item.item["id"], "output_index": item.index, "delta": delta},
        )

    # ---- coalescing

    def _queue_delta(self, kind: str, item: _OpenItem, text: str) -> None:
        """Hold a text or arguments delta until the current network read is processed.

        Chunks parsed from one read are fed without yielding to the event loop, so a flush
        scheduled with ``call_soon`` runs once they are all in: an idle stream sends each delta
        at once (same loop turn), a busy one sends several tokens per event — never reordered,
        since any other event flushes what is held first.
        """
        if self._pending and (kind != self._pending_kind or item is not self._pending_item):
            self.flush_deltas()
        if not self._pending:
            self._pending_kind = kind
            self._pending_item = item
            try:
                asyncio.get_running_loop().call_soon(self.flush_deltas)
            except RuntimeError:  # no event loop (synchronous use): nothing to wait for
                self._pending.append(text)
                self.flush_deltas()
                return
        self._pending.append(text)

    def flush_deltas(self) -> None:
        """Emit the held deltas as one event."""
        pending = self._pending
        if not pending:
            return
        item = self._pending_item
        assert item is not None
        text = pending[0] if len(pending) == 1 else "".join(pending)
        self._pending = []
        if self._pending_kind == "text":
            self._add(
                "response.output_text.delta",
                '{"type":"response.output_text.delta","sequence_number":%d,"item_id":"%s","output_index":%d,"content_index":%d,"delta":%s,"logprobs":[]}'
                % (self.seq, item.item["id"], item.index, item.part_index, _dumps(text)),
            )
        else:
            self._add(
                "response.function_call_arguments.delta",
                '{"type":"response.function_call_arguments.delta","sequence_number":%d,"item_id":"%s","output_index":%d,"delta":%s}'
                % (self.seq, item.item["id"], item.index, _dumps(text)),
            )

    # ---- closing

    def close_item(self, status: str = "completed") -> None:
        item = self.open
        if item is None:
            return
        self.open = None
        data = item.item
        if item.kind == "mcp_call":
            data["arguments"] = "".join(item.buffer)
            self.sample_items.append(data)  # not output yet: the loop emits what it becomes
            if self.provider:
                item.meta["provider"] = self.provider
            if item.meta:
                self.item_meta[data["id"]] = item.meta
            return
        if item.kind == "function_call":
            data["arguments"] = "".join(item.buffer)
            self.emit(
                "response.function_call_arguments.done",
                {"item_id": data["id"], "output_index": item.index, "arguments": data["arguments"]},
            )
        elif item.kind == "custom_tool_call":
            text = "".join(item.buffer)
            if not item.raw_input:
                text = custom_input(text)
                if text:
                    self._custom_input_delta(item, text)
            data["input"] = text
            self.emit(
                "response.custom_tool_call_input.done",
                {"item_id": data["id"], "output_index": item.index, "input": text},
            )
        else:
            self._close_part(item)
        if item.kind == "web_search_call" and not item.searched and status == "completed":
            status = "incomplete"  # closed before its results came (the answer went on without them)
        if item.kind != "reasoning":
            data["status"] = status
        elif self._sealing():
            opaque = {k: v for k, v in item.meta.items() if k != "provider"}
            if data.get("encrypted_content") is not None or opaque:
                data["encrypted_content"] = sealing.seal(
                    self.provider,
                    self.family,
                    data.get("encrypted_content"),
                    {**item.meta, "provider": self.provider},
                )
        self.emit("response.output_item.done", {"output_index": item.index, "item": data})
        self.output.append(data)
        self.sample_items.append(data)
        if self.provider:
            item.meta["provider"] = self.provider
        if item.meta:
            self.item_meta[data["id"]] = item.meta

    def _provider_item(self, item: dict[str, Any]) -> None:
        """A whole item in OpenAI's shape from a provider that runs that tool type natively: relayed
        as it is (its id kept), and sent back only to that provider."""
        item = {**item, "status": item.get("status") or "completed"}
        if not item.get("id"):
            item["id"] = new_id(item["type"].split("_")[0][:4] or "item")
        self._mark_output()
        if item["type"] == "web_search_call":
            self._relayed_search(item)
        else:
            self.add_item(item)
        self.sample_items.append(item)
        if self.provider:
            self.item_meta[item["id"]] = {"provider": self.provider}

    def _relayed_search(self, item: dict[str, Any]) -> None:
        """A search the provider relays whole (OpenAI), with the events OpenAI streams for one."""
        self.close_item()
        index = len(self.output)
        self.emit(
            "response.output_item.added", {"output_index": index, "item": {**item, "status": "in_progress"}}
        )
        base = {"item_id": item["id"], "output_index": index}
        self.emit("response.web_search_call.in_progress", base)
        self.emit("response.web_search_call.searching", base)
        if item["status"] == "completed":
            self.emit("response.web_search_call.completed", base)
        self.emit("response.output_item.done", {"output_index": index, "item": item})
        self.output.append(item)

    def add_item(self, item: dict[str, Any]) -> None:
        """Emit a complete item the loop made itself (e.g. a hosted tool's output)."""
        self.close_item()
        index = len(self.output)
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        self.emit("response.output_item.done", {"output_index": index, "item": item})
        self.output.append(item)

    def stored_item(self, item: dict[str, Any]) -> dict[str, Any]:
        """The item as stored: the spec item plus its private provider ``_meta``."""
        meta = self.item_meta.get(item["id"])
        return {**item, "_meta": meta} if meta else item

    # ---- terminal

    def rewind(self, sequence_number: int) -> None:
        """Number events from ``sequence_number`` again (the sink discarded those after it)."""
        self._pending = []
        self.seq = sequence_number

    def finish(
        self, status: str, *, error: dict[str, Any] | None = None, incomplete_reason: str | None = None
    ) -> str:
        """Emit the terminal events; returns the terminal event type."""
        self.close_item(status="incomplete" if status == "incomplete" else "completed")
        resource = self.resource
        resource["status"] = status
        resource["usage"] = self.usage
        resource["completed_at"] = int(time.time()) if status == "completed" else None
        resource["incomplete_details"] = {"reason": incomplete_reason} if incomplete_reason else None
        resource["error"] = None
        if error is not None:
            resource["error"] = {
                "code": error.get("code") or "server_error",
                "message": error.get("message") or "",
            }
            self.emit(
                "error",
                {
                    "error": {
                        "type": error.get("type") or "server_error",
                        "code": error.get("code"),
                        "message": error.get("message") or "",
                        "param": error.get("param"),
                    }
                },
            )
        event_type = {
            "completed": "response.completed",
            "incomplete": "response.incomplete",
            "failed": "response.failed",
            "cancelled": "openresponses:response.cancelled",
        }[status]
        self.emit_lifecycle(event_type)
        return event_type
