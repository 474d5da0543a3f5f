"""Provider-neutral chunks: what every adapter yields, whatever the provider's wire format.

Chunk grammar (what the emitter expects, in order, for one sample):

* ``TextDelta`` / ``RefusalDelta`` append to the open assistant message (opened on demand).
* ``ReasoningDelta`` appends to the open reasoning item (opened on demand);
  ``ReasoningDone`` closes it and may carry ``encrypted_content`` (opaque, round-trips).
* ``ToolCallStart`` opens a function call; ``ToolCallDelta`` appends to its arguments.
* ``ItemEnd`` closes whatever item is open (a chunk of another kind also closes it).
* ``UsageReport`` may come several times; later non-None fields override earlier ones.
* ``Finish`` ends the sample with a reason. A message left open (no ``ItemEnd``) before
  ``Finish("max_output_tokens")`` ends ``incomplete``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class RefusalDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """Reasoning text: ``kind="summary"`` for a summary, ``"content"`` for a raw trace."""

    text: str
    kind: Literal["summary", "content"] = "summary"
    summary_index: int = 0


@dataclass(slots=True)
class ReasoningDone:
    """Closes the open reasoning item (opens an empty one first if none is open)."""

    encrypted_content: str | None = None
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCallStart:
    call_id: str
    name: str
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCallDelta:
    arguments: str


@dataclass(slots=True)
class ItemEnd:
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class UsageReport:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


FinishReason = Literal["stop", "tool_calls", "max_output_tokens", "content_filter"]


@dataclass(slots=True)
class Finish:
    reason: FinishReason = "stop"


Chunk = (
    TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ReasoningDone
    | ToolCallStart
    | ToolCallDelta
    | ItemEnd
    | UsageReport
    | Finish
)


def new_call_id() -> str:
    """A call id for providers that send none (Gemini, Ollama, some Chat Completions servers)."""
    return "call_" + secrets.token_hex(12)
