"""Compaction and truncation: keep a conversation inside a model's context, on any provider.

* ``POST /v1/responses/compact`` (the flow is ``services.flows.compact``) asks a model, as a
  sample like any other, for a summary of a conversation; ``compaction_resource`` returns it as a
  ``compaction`` item whose ``encrypted_content`` only this server can open (authenticated
  encryption, settings key).
* ``model_items`` is what the loop sends: every ``compaction`` item expanded into a developer
  message holding its summary, then ``truncation`` applied (``auto`` leaves out the oldest turns;
  ``disabled`` answers an over-long context with a 400 ``context_length_exceeded``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
import zlib
from functools import lru_cache
from typing import Any

from providers_app.adapters.base import UpstreamError, message_text
from responses_app.conf import openresponses_settings
from responses_app.errors import invalid
from responses_app.ids import message_id, new_id

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 800
ITEM_OVERHEAD_TOKENS = 4
DEFAULT_CONTEXT_TOKENS = 128_000
#: Context windows by model-name glob (first match wins); ``MODEL_CONTEXT_TOKENS`` goes first.
BUILTIN_CONTEXT_TOKENS: tuple[tuple[str, int], ...] = (
    ("gpt-4.1*", 1_047_576),
    ("gpt-5*", 400_000),
    ("gpt-4o*", 128_000),
    ("gpt-4-turbo*", 128_000),
    ("o1*", 200_000),
    ("o3*", 200_000),
    ("o4*", 200_000),
    ("claude-*", 200_000),
    ("gemini-*", 1_048_576),
)
PAYLOAD_KIND = "openresponses.compaction"
TOKEN_PREFIX = "orc2."
SUMMARY_PREFIX = "The earlier part of this conversation was compacted. Summary of it:\n\n"
TRUNCATION_NOTE = "[{n} earlier items of this conversation were left out to fit the model's context window.]"
SUMMARIZER_INSTRUCTIONS = (
    "You compact conversations between a user and an AI assistant. Write a concise summary of the "
    "conversation transcript you are given so that another assistant can continue it seamlessly: "
    "keep facts, names, numbers, decisions, the user's goals and preferences, tool results that "
    "still matter and open questions. Write only the summary, in plain text."
)


# --------------------------------------------------------------------------- sealing


def seal(payload: dict[str, Any]) -> str:
    """Opaque, authenticated ``encrypted_content`` for ``payload`` (readable only by this server)."""
    from providers_app.secrets import COMPACTION, seal_bytes

    raw = json.dumps({**payload, "kind": PAYLOAD_KIND}, separators=(",", ":")).encode()
    return TOKEN_PREFIX + seal_bytes(zlib.compress(raw, 6), COMPACTION)


@lru_cache(maxsize=256)
def _unseal_cached(token: str) -> str:
    from providers_app.secrets import COMPACTION, unseal_bytes

    if not token.startswith(TOKEN_PREFIX):
        raise ValueError("not a compaction made by this server")
    # Its own purpose key: no other sealed secret (a provider key, MCP headers) opens as a compaction.
    raw = zlib.decompress(unseal_bytes(token[len(TOKEN_PREFIX) :], COMPACTION))
    payload = json.loads(raw)
    if not isinstance(payload, dict) or payload.get("kind") != PAYLOAD_KIND:
        raise ValueError("not a compaction payload")
    return raw.decode()


def unseal(token: str) -> dict[str, Any]:
    """The payload of a sealed compaction; ``ValueError`` when it was not made here or was altered."""
    try:
        return json.loads(_unseal_cached(token))
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - base64/zlib/utf-8 errors all mean "not ours"
        raise ValueError(f"unreadable compaction: {type(exc).__name__}") from None


def check_compaction_items(items: list[dict[str, Any]], param: str = "input") -> None:
    """400 for a ``compaction`` item this server cannot expand (made elsewhere, altered, old key)."""
    for index, item in enumerate(items):
        if item.get("type") != "compaction":
            continue
        try:
            unseal(item.get("encrypted_content") or "")
        except ValueError:
            raise invalid(
                f"Invalid '{param}[{index}].encrypted_content': this compaction was not made by this server or was altered.",
                f"{param}[{index}].encrypted_content",
                "invalid_encrypted_content",
            ) from None


# --------------------------------------------------------------------------- expansion


def summary_message(summary: str) -> dict[str, Any]:
    """The developer message a compaction stands for in a model request."""
    return {
        "type": "message",
        "id": message_id(),
        "status": "completed",
        "role": "developer",
        "content": [{"type": "input_text", "text": SUMMARY_PREFIX + summary}],
    }


def expand_compactions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` with each ``compaction`` replaced by a developer message holding its summary."""
    if not any(i.get("type") == "compaction" for i in items):
        return items
    out = []
    for item in items:
        if item.get("type") != "compaction":
            out.append(item)
            continue
        try:
            payload = unseal(item.get("encrypted_content") or "")
        except ValueError:
            logger.warning("dropping a compaction item that cannot be opened (%s)", item.get("id"))
            continue
        message = summary_message(str(payload.get("summary") or ""))
        message["id"] = item.get("id") or message["id"]
        out.append(message)
    return out


# --------------------------------------------------------------------------- token budget


def _content_chars(content: Any) -> tuple[int, int]:
    """(characters, fixed tokens) of a content list or string."""
    if isinstance(content, str):
        return len(content), 0
    chars = tokens = 0
    for part in content or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "input_image":
            tokens += IMAGE_TOKENS
        elif kind == "input_file":
            # base64 file data: about 3/4 of it are bytes; text extraction makes it smaller still.
            chars += len(part.get("file_data") or "") * 3 // 4 + len(part.get("filename") or "")
            if part.get("file_url"):
                tokens += IMAGE_TOKENS
        else:
            chars += len(part.get("text") or part.get("refusal") or "")
    return chars, tokens


def estimate_item_tokens(item: dict[str, Any]) -> int:
    """A rough token count of one item (~4 characters a token)."""
    kind = item.get("type")
    fixed = 0
    if kind == "message":
        chars, fixed = _content_chars(item.get("content"))
    elif kind == "function_call":
        chars = len(item.get("name") or "") + len(item.get("arguments") or "")
    elif kind == "function_call_output":
        chars, fixed = _content_chars(item.get("output"))
    elif kind == "reasoning":
        chars = sum(
            len(p.get("text") or "")
            for p in (item.get("summary") or []) + (item.get("content") or [])
            if isinstance(p, dict)
        )
    else:
        chars = len(json.dumps({k: v for k, v in item.items() if k != "_meta"}))
        if kind == "web_search_call":
            # The results of a provider's own search go back with it (Anthropic reads them as input).
            chars += len(json.dumps((item.get("_meta") or {}).get("server_blocks") or []))
    return ITEM_OVERHEAD_TOKENS + fixed + -(-chars // CHARS_PER_TOKEN)


def estimate_tokens(
    items: list[dict[str, Any]], *, instructions: str | None = None, tools: list[dict[str, Any]] | None = None
) -> int:
    fixed = len(instructions or "") + (len(json.dumps(tools)) if tools else 0)
    return -(-fixed // CHARS_PER_TOKEN) + sum(estimate_item_tokens(i) for i in items)


def _configured_windows() -> list[tuple[str, int]]:
    raw = openresponses_settings.MODEL_CONTEXT_TOKENS
    if not raw:
        return []
    if isinstance(raw, dict):
        return [(str(k), int(v)) for k, v in raw.items()]
    pairs = []
    for entry in str(raw).split(","):
        pattern, _, size = entry.strip().partition("=")
        if pattern and size.strip().isdigit():
            pairs.append((pattern.strip(), int(size)))
    return pairs


def context_window(*models: str | None) -> int:
    """The context size in tokens of a model (settings first, then built-in defaults)."""
    for pattern, size in [*_configured_windows(), *BUILTIN_CONTEXT_TOKENS]:
        if any(m and fnmatch.fnmatchcase(m, pattern) for m in models):
            return size
    return DEFAULT_CONTEXT_TOKENS


def context_too_long(tokens: int, limit: int) -> UpstreamError:
    return UpstreamError(
        f"The input is too long for the model's context window: about {tokens} tokens, the limit is {limit}. "
        "Shorten the input, compact the conversation (POST /v1/responses/compact) or set 'truncation' to 'auto'.",
        status=400,
        code="context_length_exceeded",
        error_type="invalid_request_error",
        param="input",
    )


def _pinned(item: dict[str, Any]) -> bool:
    return item.get("type") == "message" and item.get("role") in ("system", "developer")


def truncate(
    items: list[dict[str, Any]],
    *,
    window: int,
    truncation: str,
    instructions: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    max_output_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """Fit ``items`` into ``window`` tokens, or raise ``context_length_exceeded`` (status 400).

    ``disabled`` never drops anything. ``auto`` keeps system/developer messages and the most recent
    turn (from the last user message on) and leaves out whole older turns, oldest first, so a tool
    call never loses its output.
    """
    fixed = estimate_tokens([], instructions=instructions, tools=tools)
    sizes = [estimate_item_tokens(i) for i in items]
    total = fixed + sum(sizes)
    if truncation != "auto":
        limit = window - (max_output_tokens or 0)
        if total > limit:
            raise context_too_long(total, limit)
        return items
    limit = window - (max_output_tokens or min(4096, window // 8))
    if total <= limit:
        return items
    users = [
        i for i, item in enumerate(items) if item.get("type") == "message" and item.get("role") == "user"
    ]
    last_turn = users[-1] if users else max(0, len(items) - 1)
    # Turns before the last one: each starts at a user message (the items before the first one form a turn).
    starts = sorted({0, *[i for i in users if i < last_turn]})
    turns = [(start, end) for start, end in zip(starts, [*starts[1:], last_turn], strict=True) if start < end]
    dropped: set[int] = set()
    for start, end in turns:
        if total <= limit:
            break
        for index in range(start, end):
            if not _pinned(items[index]):
                dropped.add(index)
                total -= sizes[index]
    if total > limit:
        raise context_too_long(total, limit)
    note = {
        "type": "message",
        "id": message_id(),
        "status": "completed",
        "role": "developer",
        "content": [{"type": "input_text", "text": TRUNCATION_NOTE.format(n=len(dropped))}],
    }
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if index in dropped:
            if note is not None:
                out.append(note)
                note = None
            continue
        out.append(item)
    return out


def model_items(
    items: list[dict[str, Any]],
    *,
    model: str,
    upstream_model: str | None,
    params: dict[str, Any],
    tools: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The items a model request carries: compactions expanded, then ``truncation`` applied."""
    return truncate(
        expand_compactions(items),
        window=context_window(model, upstream_model),
        truncation=params.get("truncation") or "disabled",
        instructions=params.get("instructions"),
        tools=tools,
        max_output_tokens=params.get("max_output_tokens"),
    )


# --------------------------------------------------------------------------- compaction


def transcript_text(items: list[dict[str, Any]]) -> str:
    """A plain-text transcript of ``items`` (works for every provider: no tool items to declare)."""
    lines = []
    for item in expand_compactions(items):
        kind = item.get("type")
        if kind == "message":
            text = message_text(item)
            attachments = [
                p.get("type")
                for p in item.get("content") or []
                if isinstance(p, dict) and p.get("type") in ("input_image", "input_file")
            ]
            if attachments:
                text += " " + " ".join(f"[{a.removeprefix('input_')} attached]" for a in attachments)
            lines.append(f"{item.get('role', 'user')}: {text}")
        elif kind == "function_call":
            lines.append(
                f"assistant called the tool {item.get('name')} (call {item.get('call_id')}) with arguments {item.get('arguments')}"
            )
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = " ".join(
                    p.get("text") or f"[{p.get('type')}]" for p in output or [] if isinstance(p, dict)
                )
            lines.append(f"tool result (call {item.get('call_id')}): {output}")
    return "\n\n".join(lines)


def summary_model() -> str | None:
    """The configured compaction model (None: the request's own model)."""
    return openresponses_settings.COMPACTION_MODEL or None


def summary_input(
    items: list[dict[str, Any]], *, instructions: str | None, window: int
) -> list[dict[str, Any]]:
    """The input of the summarizing sample: one user message holding the conversation's transcript
    (cut from the oldest end to fit ``window`` tokens with room for the answer)."""
    transcript = transcript_text(items)
    if instructions:
        transcript = f"(The assistant followed these instructions: {instructions})\n\n{transcript}"
    budget = max(1000, (window - 4096) * CHARS_PER_TOKEN * 9 // 10)
    if len(transcript) > budget:
        transcript = "[…the oldest part of the transcript was cut…]\n" + transcript[-budget:]
    return [
        {
            "type": "message",
            "id": message_id(),
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "Conversation transcript:\n\n" + transcript}],
        }
    ]


def summary_usage(
    usage: dict[str, Any] | None, *, sent: list[dict[str, Any]], summary: str
) -> dict[str, Any]:
    """The compaction's ``usage``: the provider's figures, estimated where it reported none."""
    usage = usage or {}
    reported_input = usage.get("input_tokens") or 0
    reported_output = usage.get("output_tokens") or 0
    input_tokens = reported_input or estimate_tokens(sent, instructions=SUMMARIZER_INSTRUCTIONS)
    output_tokens = reported_output or -(-len(summary) // CHARS_PER_TOKEN)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
        },
        "total_tokens": input_tokens + output_tokens,
    }


def kept_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recent items kept verbatim next to the summary: the last user message."""
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return [{k: v for k, v in item.items() if k != "_meta"}]
    return []


def compaction_resource(
    *,
    resource_id: str,
    items: list[dict[str, Any]],
    summary: str,
    writer: str,
    usage: dict[str, Any],
    source_response_id: str | None = None,
) -> dict[str, Any]:
    """The ``CompactResource`` for a conversation: kept recent items, then the sealed compaction item."""
    now = time.time()
    sealed = seal(
        {
            "v": 1,
            "summary": summary,
            "model": writer,
            "items": len(items),
            "source_response_id": source_response_id,
            "created_at": int(now),
        }
    )
    compaction = {"type": "compaction", "id": new_id("cmp"), "encrypted_content": sealed}
    return {
        "id": resource_id,
        "object": "response.compaction",
        "created_at": int(now),
        "output": [*kept_items(items), compaction],
        "usage": usage,
    }


def conversation_items(
    *,
    previous_response_id: str | None,
    input_items: list[dict[str, Any]],
    references: list[tuple[int, str]],
    owner: str | None,
) -> list[dict[str, Any]]:
    """The conversation a compact request names: the previous response's whole context, then ``input``."""
    from responses_app.selectors import input_with_references, previous_response_get, response_context_items

    context: list[dict[str, Any]] = []
    if previous_response_id:
        previous = previous_response_get(response_id=previous_response_id, owner=owner)
        context = response_context_items(response=previous)
    items = input_with_references(items=input_items, references=references, owner=owner)
    return context + items
