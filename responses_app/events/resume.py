"""Rebuild a response's emitter from its stored event log, for a loop taken over by another worker.

The stored log of a worker-run loop is a prefix of what its readers saw and never less (every
batch is stored before it is published), so the new emitter continues exactly where that log
stops: ``sequence_number`` and ``output_index`` go on, and an item the lost worker left open is
closed the way the spec allows (its open part ends with the text streamed so far, the item ends
``incomplete``); the re-issued step's output follows as new items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from responses_app.events.emitter import ResponseEmitter, Sink, _OpenItem

_PART_KINDS = {"output_text": "output_text", "refusal": "refusal", "reasoning_text": "reasoning_text"}


def stored_prefix(events: Iterable[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The contiguous run of events from sequence number 0 (what every reader can have seen)."""
    prefix = []
    for expected, event in enumerate(sorted(events)):
        if event[0] != expected:
            break
        prefix.append(event)
    return prefix


def resume_emitter(
    resource: dict[str, Any],
    sink: Sink,
    events: list[tuple[int, str, str]],
    *,
    provider: str = "",
    item_meta: dict[str, dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
) -> ResponseEmitter:
    """An emitter whose state is the one ``events`` (a stored prefix) leave behind.

    ``resource["output"]`` is replaced by the items completed in ``events``; an item left open is
    closed ``incomplete`` at once (its closing events go to ``sink``).
    """
    resource["output"] = []
    if usage is not None:
        resource["usage"] = usage
    emitter = ResponseEmitter(
        resource, sink, sequence_start=events[-1][0] + 1 if events else 0, provider=provider
    )
    emitter.item_meta.update(item_meta or {})
    opened: _OpenItem | None = None
    for _seq, event_type, payload in events:
        event = json.loads(payload)
        if event_type == "response.output_item.added":
            opened = _OpenItem(event["item"], event["output_index"], _kind(event["item"]))
            if opened.kind == "message":
                opened.item.setdefault("content", [])
        elif event_type == "response.output_item.done":
            emitter.output.append(event["item"])
            opened = None
        elif opened is None:
            continue
        elif event_type == "response.content_part.added":
            opened.part_kind = _PART_KINDS.get(event["part"]["type"], "output_text")
            opened.part_index = event["content_index"]
            opened.buffer = []
        elif event_type == "response.content_part.done":
            if opened.kind == "reasoning":
                opened.item.setdefault("content", []).append(event["part"])
            else:
                opened.item["content"].append(event["part"])
            opened.part_kind = None
            opened.buffer = []
        elif event_type == "response.reasoning_summary_part.added":
            opened.part_kind = "summary_text"
            opened.summary_index = event["summary_index"]
            opened.buffer = []
        elif event_type == "response.reasoning_summary_part.done":
            opened.item["summary"].append(event["part"])
            opened.part_kind = None
            opened.buffer = []
        elif event_type == "response.output_text.annotation.added":
            opened.annotations.append(event["annotation"])
        elif event_type in {
            "response.output_text.delta",
            "response.refusal.delta",
            "response.reasoning.delta",
            "response.reasoning_summary_text.delta",
            "response.function_call_arguments.delta",
        }:
            opened.buffer.append(event["delta"])
    if opened is not None:
        emitter.open = opened
        emitter.close_item(status="incomplete")
    return emitter


def _kind(item: dict[str, Any]) -> str:
    kind = item.get("type")
    return kind if kind in {"message", "function_call", "reasoning", "web_search_call"} else "message"
