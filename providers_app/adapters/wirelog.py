"""The wire log: what was sent to and received from providers, for the admin's transcript.

Whoever wants a record of the upstream calls made in a context (the loop) sets :data:`WIRE_LOG`
to a list; the adapter template appends one entry per call and the answer as it arrives (cut
at :data:`WIRE_LOG_KEPT_CHARS`). :func:`finished_wire_log` turns the entries into what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

#: Set to a list by whoever wants a record of the upstream calls made in this context (the loop).
WIRE_LOG: ContextVar[list[dict[str, Any]] | None] = ContextVar("openresponses_wire_log", default=None)
WIRE_LOG_MAX_CHARS = 16_384
#: Collected before masking: a little more than is kept, so that a key across the cut is still found.
WIRE_LOG_KEPT_CHARS = WIRE_LOG_MAX_CHARS + 1024
_LONG_STRING = 2_000


def abbreviate(value: Any) -> Any:
    """``value`` with long strings (base64 images, files) shortened, for logs people read."""
    if isinstance(value, str):
        return value if len(value) <= _LONG_STRING else value[:200] + f"… ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: abbreviate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [abbreviate(v) for v in value]
    return value


def open_entry(
    provider: str, method: str, url: str, body: Any, mask: Callable[[str], str]
) -> dict[str, Any] | None:
    """A new entry in this context's wire log (None when nobody is recording)."""
    log = WIRE_LOG.get()
    if log is None:
        return None
    entry = {
        "provider": provider,
        "method": method,
        "url": mask(url),
        "request": abbreviate(body),
        "status": None,
        "attempts": 0,
        "response": [],
        "_size": 0,
        "_mask": mask,  # applied once, to the whole answer (see finished_wire_log)
    }
    log.append(entry)
    return entry


def append(entry: dict[str, Any], text: str) -> None:
    """Add answer text to ``entry`` (up to :data:`WIRE_LOG_KEPT_CHARS`)."""
    room = WIRE_LOG_KEPT_CHARS - entry["_size"]
    if room > 0:
        parts = entry["response"]
        parts.append(text[:room])
        entry["_size"] += min(room, len(text))
        if len(parts) >= 64:  # one string, not hundreds of small ones, per open stream
            parts[:] = ["".join(parts)]


def finished_wire_log(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The wire log as stored: each answer as one string, the provider key masked, cut at
    :data:`WIRE_LOG_MAX_CHARS` (after masking, so no key is ever cut in two and left readable)."""
    finished = []
    for entry in log:
        item = {k: v for k, v in entry.items() if not k.startswith("_")}
        mask = entry.get("_mask") or (lambda text: text)
        item["response"] = mask("".join(entry["response"]))[:WIRE_LOG_MAX_CHARS]
        finished.append(item)
    return finished
