"""OpenAI's ``web_search`` tool where a provider runs a search of its own: the tool type names,
the options adapters translate, and the helpers their parsers share.

Adapters that map the tool list these types in ``native_tool_types`` (Anthropic: the web search
server tool; Gemini: Google Search grounding) and turn the provider's answer into
:class:`~providers_app.adapters.chunks.WebSearchStart` / ``WebSearchDone`` / ``Citation``
chunks; the emitter makes OpenAI's ``web_search_call`` items and ``url_citation`` annotations.
"""

from __future__ import annotations

from typing import Any

#: OpenAI's web search tool types (and their dated names).
WEB_SEARCH_TYPES = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
#: The ``include`` value asking for ``action.sources`` on ``web_search_call`` items.
SEARCH_SOURCES = "web_search_call.action.sources"


def search_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's web search tools (as the client sent them)."""
    return [t for t in tools if t.get("type") in WEB_SEARCH_TYPES]


def allowed_domains(tool: dict[str, Any]) -> list[str]:
    """``filters.allowed_domains`` of a web search tool, as bare domains (no scheme)."""
    domains = (tool.get("filters") or {}).get("allowed_domains") or []
    return [d.split("://", 1)[-1].rstrip("/") for d in domains if isinstance(d, str) and d]


def user_location(tool: dict[str, Any]) -> dict[str, str] | None:
    """``user_location`` with at least one field set (``{"type": "approximate"}`` alone is none)."""
    location = tool.get("user_location") or {}
    fields = {k: location[k] for k in ("city", "region", "country", "timezone") if location.get(k)}
    return {"type": "approximate", **fields} if fields else None


def is_search_choice(choice: Any) -> bool:
    """True when ``tool_choice`` forces the web search tool."""
    return isinstance(choice, dict) and choice.get("type") in WEB_SEARCH_TYPES


def char_span(text: str, start_byte: int, end_byte: int) -> tuple[int, int]:
    """A span of UTF-8 byte offsets into ``text`` as code point offsets (a cut character counts
    as not reached)."""
    raw = text.encode()
    start = len(raw[: max(0, start_byte)].decode(errors="ignore"))
    end = len(raw[: max(0, end_byte)].decode(errors="ignore"))
    return start, end
