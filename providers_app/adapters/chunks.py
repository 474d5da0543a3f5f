"""Provider-neutral chunks: what every adapter yields, whatever the provider's wire format.

Chunk grammar (what the emitter expects, in order, for one sample):

* ``TextDelta`` / ``RefusalDelta`` append to the open assistant message (opened on demand).
* ``ReasoningDelta`` appends to the open reasoning item (opened on demand);
  ``ReasoningDone`` closes it and may carry ``encrypted_content`` (opaque, round-trips).
* ``ToolCallStart`` opens a function call; ``ToolCallDelta`` appends to its arguments.
* ``ItemEnd`` closes whatever item is open (a chunk of another kind also closes it).
* ``ProviderItem`` is a whole item in OpenAI's own shape (hosted and client-executed tool calls).
* ``WebSearchStart`` opens a search the provider runs itself (a ``web_search_call`` item);
  ``WebSearchDone`` closes it (opening one first if none is open) with its queries and sources.
* ``Citation`` adds a ``url_citation`` annotation to the open message's output text.
* ``UsageReport`` may come several times; later non-None fields override earlier ones.
* ``Finish`` ends the sample with a reason. A message left open (no ``ItemEnd``) before
  ``Finish("max_output_tokens")`` ends ``incomplete``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
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
    """Opens a tool call. ``namespace`` and ``custom`` (free-form input: ``ToolCallDelta`` carries
    the raw input, not JSON) are for providers that take those tool types natively."""

    call_id: str
    name: str
    provider_data: dict[str, Any] | None = None
    namespace: str | None = None
    custom: bool = False


@dataclass(slots=True)
class ToolCallDelta:
    arguments: str


@dataclass(slots=True)
class ItemEnd:
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class ProviderItem:
    """A whole output item the provider made in OpenAI's own shape (``web_search_call``,
    ``local_shell_call``…): relayed as it is, for providers that take those tool types natively."""

    item: dict[str, Any]


@dataclass(slots=True)
class WebSearchStart:
    """The provider began a web search it runs itself (Anthropic's web search server tool)."""

    call_id: str = ""


@dataclass(slots=True)
class WebSearchDone:
    """A web search the provider ran: its queries, the sources it found (``{"url", "title"}``),
    whether it failed, and what the provider needs back to continue (private item metadata)."""

    call_id: str = ""
    queries: list[str] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)
    failed: bool = False
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class Citation:
    """A source cited by the open message's output text: ``start``/``end`` are character offsets
    (code points) into the text of that message's output text part (end exclusive)."""

    url: str
    title: str
    start: int
    end: int


@dataclass(slots=True)
class UsageReport:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


#: ``pause_turn``: the provider paused a long turn of its own (a server-side search) and finishes
#: it when sent the answer so far (Anthropic): the loop samples again.
FinishReason = Literal["stop", "tool_calls", "max_output_tokens", "content_filter", "pause_turn"]


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
    | ProviderItem
    | WebSearchStart
    | WebSearchDone
    | Citation
    | UsageReport
    | Finish
)


def new_call_id() -> str:
    """A call id for providers that send none (Gemini, Ollama, some Chat Completions servers)."""
    return "call_" + secrets.token_hex(12)


class OpenItem:
    """Stream-parser bookkeeping for wire formats that interleave text and reasoning deltas
    without item boundaries (Chat Completions, Ollama): which item is open, closed as soon as a
    delta of another kind arrives."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: str | None = None  # "message" | "reasoning" | a subclass's own kind

    def close_open(self, out: list[Chunk]) -> None:
        """Append what closes the open item, if any."""
        if self.open == "reasoning":
            out.append(ReasoningDone())
        elif self.open == "message":
            out.append(ItemEnd())
        self.open = None

    def switch(self, kind: str, out: list[Chunk]) -> None:
        """Make ``kind`` the open item (closing another one first)."""
        if self.open != kind:
            self.close_open(out)
            self.open = kind

    def deltas(self, out: list[Chunk], reasoning: Any, text: Any, refusal: Any = None) -> None:
        """Append one frame's raw reasoning, text and refusal deltas (empty or non-text values skipped)."""
        if reasoning and isinstance(reasoning, str):
            self.switch("reasoning", out)
            out.append(ReasoningDelta(reasoning, kind="content"))
        if text and isinstance(text, str):
            self.switch("message", out)
            out.append(TextDelta(text))
        if refusal and isinstance(refusal, str):
            self.switch("message", out)
            out.append(RefusalDelta(refusal))
