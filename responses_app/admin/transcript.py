"""Stored items and events turned into things people read: the admin's transcript, pure functions.

Nothing here touches the database or the network, so it is tested on plain dicts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

SECRET_NAME = re.compile(
    r"(authorization|api[-_]?key|x-goog-api-key|token|secret|password|cookie)", re.IGNORECASE
)
BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
REDACTED = "[redacted]"


@dataclass
class Block:
    """One item of a conversation as the transcript shows it."""

    kind: str  # message | function_call | function_call_output | reasoning | other
    item_type: str
    role: str = ""
    texts: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    name: str = ""
    call_id: str = ""
    arguments: str = ""
    output: str = ""
    status: str = ""
    refusal: str = ""
    raw: str = ""

    @property
    def css(self) -> str:
        return f"or-{self.kind} or-role-{self.role}" if self.role else f"or-{self.kind}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def pretty_arguments(arguments: str | None) -> str:
    """Function-call arguments indented when they are JSON, as sent when they are not."""
    if not arguments:
        return "{}"
    try:
        return pretty_json(json.loads(arguments))
    except ValueError:
        return arguments


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        try:
            return pretty_json(json.loads(output)) if output.strip()[:1] in "{[" else output
        except ValueError:
            return output
    if isinstance(output, list):
        parts = []
        for part in output:
            if isinstance(part, dict):
                parts.append(part.get("text") or f"[{part.get('type', 'part')}]")
        return "\n".join(parts)
    return pretty_json(output)


def _attachment(part: dict[str, Any]) -> str:
    kind = part.get("type", "")
    if kind == "input_image":
        url = str(part.get("image_url") or part.get("file_id") or "")
        return "image: " + (url[:60] + "…" if len(url) > 60 else url)
    if kind == "input_file":
        return "file: " + str(
            part.get("filename") or part.get("file_id") or part.get("file_url") or "(inline)"
        )
    return kind


def item_block(item: dict[str, Any], call_names: dict[str, str] | None = None) -> Block:
    """A transcript block for one spec item (``_meta`` and opaque payloads left out of ``raw``)."""
    public = {k: v for k, v in item.items() if k != "_meta"}
    kind = item.get("type", "")
    block = Block(kind="other", item_type=kind, status=str(item.get("status") or ""), raw=pretty_json(public))
    if kind == "message" or ("role" in item and "content" in item and not kind):
        block.kind = "message"
        block.role = str(item.get("role") or "")
        content = item.get("content")
        if isinstance(content, str):
            block.texts.append(content)
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "refusal":
                block.refusal = str(part.get("refusal") or "")
            elif "text" in part:
                block.texts.append(str(part.get("text") or ""))
            else:
                block.attachments.append(_attachment(part))
    elif kind == "function_call":
        block.kind = "function_call"
        block.name = str(item.get("name") or "")
        block.call_id = str(item.get("call_id") or "")
        block.arguments = pretty_arguments(item.get("arguments"))
    elif kind == "function_call_output":
        block.kind = "function_call_output"
        block.call_id = str(item.get("call_id") or "")
        block.name = (call_names or {}).get(block.call_id, "")
        block.output = _output_text(item.get("output"))
    elif kind == "reasoning":
        block.kind = "reasoning"
        block.texts = [str(p.get("text") or "") for p in item.get("summary") or [] if isinstance(p, dict)]
        if not block.texts:
            block.texts = [str(p.get("text") or "") for p in item.get("content") or [] if isinstance(p, dict)]
        if item.get("encrypted_content"):
            block.attachments.append("encrypted reasoning kept for the provider")
    return block


def blocks(items: list[dict[str, Any]], call_names: dict[str, str] | None = None) -> list[Block]:
    """Blocks for ``items``; tool outputs are labelled with the name of the call they answer."""
    names = dict(call_names or {})
    out = []
    for item in items:
        if item.get("type") == "function_call":
            names[str(item.get("call_id"))] = str(item.get("name") or "")
        out.append(item_block(item, names))
    return out


def call_names(items: list[dict[str, Any]]) -> dict[str, str]:
    return {
        str(i.get("call_id")): str(i.get("name") or "") for i in items if i.get("type") == "function_call"
    }


def seconds(value: float | None) -> str:
    """A duration for people: 850 ms, 2.4 s, 3 min 5 s."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes} min {rest} s"


def timings(response: Any) -> dict[str, str]:
    """Queue wait, latency to first token and total time of a response (floats are epoch seconds)."""
    created = response.created_at

    def since(value: float | None) -> float | None:
        return None if value is None or created is None else max(0.0, value - created)

    return {
        "queued": seconds(since(response.started_at)),
        "first_token": seconds(since(response.first_token_at)),
        "total": seconds(since(response.completed_at)),
    }


def usage_rows(usage: dict[str, Any] | None) -> list[tuple[str, Any]]:
    if not usage:
        return []
    rows = [
        ("Input tokens", usage.get("input_tokens")),
        ("Output tokens", usage.get("output_tokens")),
        ("Total tokens", usage.get("total_tokens")),
    ]
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if cached:
        rows.append(("of which cached", cached))
    if reasoning:
        rows.append(("of which reasoning", reasoning))
    return [(label, value) for label, value in rows if value is not None]


def redact(value: Any, secrets: list[str] | tuple[str, ...] = ()) -> Any:
    """A copy of ``value`` with secret-looking fields and the given secret strings removed."""
    known = [s for s in secrets if s and len(s) >= 6]

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    REDACTED
                    if isinstance(k, str) and SECRET_NAME.search(k) and v not in (None, "")
                    else clean(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [clean(v) for v in node]
        if isinstance(node, str):
            text = BEARER.sub(r"\1" + REDACTED, node)
            for secret in known:
                text = text.replace(secret, REDACTED)
            return text
        return node

    return clean(value)


def event_summary(event_type: str, payload: dict[str, Any]) -> str:
    """A few words about one event for the event log (its delta, item type or final status)."""
    if "delta" in payload and isinstance(payload["delta"], str):
        return repr(payload["delta"])[:120]
    if "item" in payload and isinstance(payload["item"], dict):
        item = payload["item"]
        label = item.get("type", "")
        if item.get("name"):
            label += f" {item['name']}"
        return f"{label} ({item.get('status', '')})"
    if "response" in payload and isinstance(payload["response"], dict):
        return f"status {payload['response'].get('status')}"
    if "text" in payload and isinstance(payload["text"], str):
        return repr(payload["text"])[:120]
    if "arguments" in payload:
        return str(payload["arguments"])[:120]
    return ""
