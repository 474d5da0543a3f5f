"""Replay recorded provider fixtures through the running server and compare both sides.

A :class:`Case` names a fixture, the Open Responses request a client would send to get it, and
what must come back. :func:`run_case` serves the fixture from the fake upstream, calls
``POST /v1/responses`` (streamed or not, as the recording was), validates every event and the
final response against the spec, compares the event sequence, and returns the request the
adapter sent upstream so it can be compared with the recorded ``*.request.json`` through a
per-family projection of "the fields that matter" (:data:`ESSENTIALS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .api import create, stream
from .spec import assert_valid_error, assert_valid_stream
from .sse import parse_sse
from .upstream import FIXTURES, FakeUpstream, Recorded, Reply

HEAD = ["response.created", "response.in_progress"]
TEXT = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta+",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
CALL = [
    "response.output_item.added",
    "response.function_call_arguments.delta+",
    "response.function_call_arguments.done",
    "response.output_item.done",
]
SUMMARY = [
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta+",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
]
RAW_REASONING = [
    "response.output_item.added",
    "response.content_part.added",
    "response.reasoning.delta+",
    "response.reasoning.done",
    "response.content_part.done",
    "response.output_item.done",
]
EMPTY_REASONING = ["response.output_item.added", "response.output_item.done"]


def shape(events: list[dict[str, Any]]) -> list[str]:
    """Event types with runs of the same delta type collapsed to ``type+``."""
    out: list[str] = []
    for event in events:
        kind = event["type"]
        if kind.endswith(".delta"):
            if out and out[-1] == kind + "+":
                continue
            kind += "+"
        out.append(kind)
    return out


def recorded_request(fixture: str) -> dict[str, Any] | None:
    path = FIXTURES / (fixture.rsplit(".", 1)[0] + ".request.json")
    return json.loads(path.read_text()) if path.exists() else None


def all_fixtures(family: str | None = None) -> list[str]:
    """Every recorded response fixture (not the ``*.request.json`` files)."""
    names = []
    for path in sorted(FIXTURES.glob("*/*")):
        if path.name.endswith(".request.json") or path.suffix not in (".sse", ".json", ".ndjson"):
            continue
        name = f"{path.parent.name}/{path.name}"
        if family is None or path.parent.name == family:
            names.append(name)
    return names


@dataclass
class Case:
    fixture: str
    model: str
    body: dict[str, Any]
    stream: bool
    status: int | str = "completed"  # an int: the HTTP error status expected
    shape: list[str] = field(default_factory=list)
    check: Callable[[dict[str, Any]], None] | None = None
    #: Projected fields left out of the request comparison, each with the reason (documented gaps).
    differs: dict[str, str] = field(default_factory=dict)
    #: Expected projected values that differ from the recording on purpose.
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.fixture


def run_case(
    http: httpx.Client, upstream: FakeUpstream, case: Case
) -> tuple[dict[str, Any], list[dict[str, Any]], Recorded]:
    """Serve the fixture, call the server; returns (final resource or error body, events, upstream request)."""
    upstream.queue(Reply.fixture(case.fixture, status=served_status(case.fixture)))
    body = {"model": case.model, **case.body}
    if isinstance(case.status, int):
        if case.stream:
            response = http.post("/v1/responses", json={**body, "stream": True})
            assert response.status_code == case.status, response.text
            assert response.headers["content-type"].startswith("application/json")
            result = response.json()
            assert_valid_error(result)
        else:
            result = create(http, body, expect=case.status)
        events: list[dict[str, Any]] = []
    elif case.stream:
        events = stream(http, body)
        result = events[-1]["response"]
    else:
        result = create(http, body)
        events = stored_events(http, result["id"])
    assert len(upstream.requests) == 1, [r.path for r in upstream.requests]
    if events:
        if not isinstance(case.status, int):
            assert result["status"] == case.status, result.get("error")
        if case.shape:
            assert shape(events) == case.shape, shape(events)
    if case.check is not None:
        case.check(result)
    return result, events, upstream.requests[0]


def served_status(fixture: str) -> int:
    """The HTTP status the recording was served with (``error_404_…`` -> 404; else 200)."""
    match = re.search(r"error_(\d{3})_", fixture)
    return int(match.group(1)) if match else 200


def stored_events(http: httpx.Client, response_id: str) -> list[dict[str, Any]]:
    """The stored event stream of a finished response, validated like a live one."""
    with http.stream("GET", f"/v1/responses/{response_id}", params={"stream": "true"}) as response:
        raw = response.read().decode()
    events, done = parse_sse(raw)
    assert done
    assert_valid_stream(events)
    return events


# --------------------------------------------------------------------------- projections


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join((p.get("text") or "") for p in content or [] if isinstance(p, dict))


def openai_essentials(body: dict[str, Any]) -> dict[str, Any]:
    items = []
    for item in body.get("input") or []:
        kind = item.get("type", "message")
        if kind == "message":
            items.append(("message", item["role"], _text(item.get("content"))))
        elif kind == "function_call":
            items.append((kind, item["call_id"], item["name"], json.loads(item["arguments"])))
        elif kind == "function_call_output":
            items.append((kind, item["call_id"], item["output"]))
        else:
            items.append((kind,))
    reasoning = {k: v for k, v in (body.get("reasoning") or {}).items() if v is not None}
    return {
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "input": items,
        "instructions": body.get("instructions") or None,
        "tools": [(t["name"], t.get("parameters"), t.get("strict")) for t in body.get("tools") or []],
        "tool_choice": body.get("tool_choice") if body.get("tools") else None,
        "reasoning": reasoning or None,
        "service_tier": body.get("service_tier"),
        "temperature": body.get("temperature"),
        "max_output_tokens": body.get("max_output_tokens"),
        "include_encrypted_reasoning": "reasoning.encrypted_content" in (body.get("include") or [])
        or not reasoning,
    }


def chat_essentials(body: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for m in body.get("messages") or []:
        calls = [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
            for c in m.get("tool_calls") or []
        ]
        messages.append((m["role"], _text(m.get("content")), calls, m.get("tool_call_id")))
    return {
        "stream": bool(body.get("stream")),
        "messages": messages,
        "tools": [
            (
                t["function"]["name"],
                t["function"].get("description") or "",
                t["function"].get("parameters"),
                bool(t["function"].get("strict")),
            )
            for t in body.get("tools") or []
        ],
        "tool_choice": body.get("tool_choice"),
        "stream_options": body.get("stream_options"),
    }


SERVER_BLOCKS = (
    "server_tool_use",
    "web_search_tool_result",
    "tool_search_tool_result",
    "code_execution_tool_result",
    "web_fetch_tool_result",
)


def anthropic_essentials(body: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for m in body.get("messages") or []:
        blocks = []
        for b in m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]:
            kind = b["type"]
            if kind in SERVER_BLOCKS:
                continue  # the provider's own server tools: never part of the canonical history
            if kind == "text":
                blocks.append(("text", b["text"]))
            elif kind == "tool_use":
                blocks.append(("tool_use", b["id"], b["name"], b["input"]))
            elif kind == "tool_result":
                blocks.append(("tool_result", b["tool_use_id"], _text(b.get("content"))))
            elif kind in ("thinking", "redacted_thinking"):
                blocks.append((kind, b.get("signature") or b.get("data")))
            else:
                blocks.append((kind,))
        messages.append((m["role"], blocks))
    system = body.get("system")
    return {
        "model": body.get("model"),
        "max_tokens": body.get("max_tokens"),
        "stream": bool(body.get("stream")),
        "system": system if isinstance(system, str) or system is None else _text(system),
        "messages": messages,
        "tools": [
            (t["name"], t.get("description"), t.get("input_schema"))
            for t in body.get("tools") or []
            if t.get("type") in (None, "custom")
        ],
        "tool_choice": body.get("tool_choice"),
        "thinking": body.get("thinking"),
        "output_config": body.get("output_config"),
        "temperature": body.get("temperature"),
    }


def gemini_essentials(body: dict[str, Any]) -> dict[str, Any]:
    contents = []
    for c in body.get("contents") or []:
        parts = []
        for p in c["parts"]:
            if "text" in p:
                parts.append(("text", p["text"]))
            elif "functionCall" in p:
                parts.append(("functionCall", p["functionCall"]["name"], p["functionCall"].get("args")))
            elif "functionResponse" in p:
                parts.append(("functionResponse", p["functionResponse"]["name"]))
            else:
                parts.append(tuple(sorted(p)))
        contents.append((c["role"], parts))
    config = dict(body.get("generationConfig") or {})
    config.pop("responseModalities", None)  # pydantic-ai's default; TEXT is the API default anyway
    thinking = config.get("thinkingConfig")
    if thinking:  # the API takes both spellings
        config["thinkingConfig"] = {
            {"thinking_budget": "thinkingBudget", "include_thoughts": "includeThoughts"}.get(k, k): v
            for k, v in thinking.items()
        }
    return {
        "contents": contents,
        "system": "\n".join(
            p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts") or []
        ),
        "tools": [
            (d["name"], d.get("description") or "")
            for t in body.get("tools") or []
            for d in t.get("functionDeclarations") or []
        ],
        "toolConfig": body.get("toolConfig"),
        "generationConfig": config,
    }


def ollama_essentials(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "messages": [
            (m["role"], m.get("content") or "", [c["function"]["name"] for c in m.get("tool_calls") or []])
            for m in body.get("messages") or []
        ],
        "tools": [
            (t["function"]["name"], t["function"].get("description"), t["function"].get("parameters"))
            for t in body.get("tools") or []
        ],
    }


ESSENTIALS = {
    "openai": openai_essentials,
    "openai_chat": chat_essentials,
    "anthropic": anthropic_essentials,
    "gemini": gemini_essentials,
    "ollama": ollama_essentials,
}


def compare_request(case: Case, sent: Recorded) -> None:
    """The adapter's upstream request matches the recorded one in the fields that matter."""
    recorded = recorded_request(case.fixture)
    if recorded is None:
        return
    project = ESSENTIALS[case.fixture.split("/")[0]]
    ours, theirs = project(sent.json()), project(recorded)
    for key in case.differs:
        ours.pop(key, None)
        theirs.pop(key, None)
    theirs.update(case.expect)
    assert ours == theirs, {
        k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)
    }


def fixture_exists(name: str) -> bool:
    return Path(FIXTURES / name).exists()
