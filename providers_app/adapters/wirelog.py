"""The wire log: what was sent to and received from providers, for the admin's transcript.

Whoever wants a record of the upstream calls made in a context (the loop) sets :data:`WIRE_LOG`
to a list; the adapter template appends one entry per call and the answer as it arrives (cut
at :data:`WIRE_LOG_KEPT_CHARS`). :func:`finished_wire_log` turns the entries into what is stored.

A worker holds one log per open stream for the whole stream: the answer is kept zlib-compressed
in blocks of about :data:`BLOCK_CHARS` characters (only the last, unfinished block as text) and
decompressed only when the log is finished. Every block after the first is compressed with the
first block's text as its preset dictionary (an answer's events repeat their framing), so blocks
this small still compress well and the text held uncompressed stays short. Masking is unchanged: it applies to the whole answer,
decompressed and joined, so a key across a block boundary is found as anywhere else.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

#: Set to a list by whoever wants a record of the upstream calls made in this context (the loop).
WIRE_LOG: ContextVar[list[dict[str, Any]] | None] = ContextVar("openresponses_wire_log", default=None)
WIRE_LOG_MAX_CHARS = 16_384
#: Collected before masking: a little more than is kept, so that a key across the cut is still found.
WIRE_LOG_KEPT_CHARS = WIRE_LOG_MAX_CHARS + 1024
_LONG_STRING = 2_000
#: The answer text kept as one string until it reaches this size, then compressed as a block.
BLOCK_CHARS = 1_024
#: The later blocks' compression window (2 KiB: their dictionary and themselves) and memory level:
#: a small compressor, made for each block.
_BLOCK_WBITS = 11
_BLOCK_MEMLEVEL = 4
_ENCODING = ("utf-8", "surrogatepass")


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
        "_blocks": [],  # zlib-compressed UTF-8 blocks of the answer, in order
        "_tail": "",  # the answer after the last block, not yet compressed
        "_size": 0,
        "_mask": mask,  # applied once, to the whole answer (see finished_wire_log)
    }
    log.append(entry)
    return entry


def append(entry: dict[str, Any], text: str) -> None:
    """Add answer text to ``entry`` (up to :data:`WIRE_LOG_KEPT_CHARS`)."""
    room = WIRE_LOG_KEPT_CHARS - entry["_size"]
    if room > 0:
        text = text[:room]
        entry["_size"] += len(text)
        tail = entry["_tail"] + text
        if len(tail) >= BLOCK_CHARS:
            entry["_blocks"].append(_compressed(entry["_blocks"], tail.encode(*_ENCODING)))
            tail = ""
        entry["_tail"] = tail


def _compressed(blocks: list[bytes], data: bytes) -> bytes:
    """``data`` as the next block after ``blocks``: the first plainly, later ones with the first
    block's text as their dictionary."""
    if not blocks:
        return zlib.compress(data)
    compressor = zlib.compressobj(
        6, zlib.DEFLATED, _BLOCK_WBITS, _BLOCK_MEMLEVEL, zdict=zlib.decompress(blocks[0])
    )
    return compressor.compress(data) + compressor.flush()


def restart(entry: dict[str, Any]) -> None:
    """Forget the answer recorded in ``entry`` so far (a retried call records its new answer)."""
    entry["_blocks"], entry["_tail"], entry["_size"] = [], "", 0


def answer_text(entry: dict[str, Any]) -> str:
    """The answer recorded in ``entry`` so far, decompressed, unmasked."""
    blocks = entry["_blocks"]
    if not blocks:
        return entry["_tail"]
    first = zlib.decompress(blocks[0])
    parts = [first]
    for block in blocks[1:]:
        decompressor = zlib.decompressobj(zdict=first)
        parts.append(decompressor.decompress(block) + decompressor.flush())
    return b"".join(parts).decode(*_ENCODING) + entry["_tail"]


def finished_wire_log(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The wire log as stored: each answer as one string, the provider key masked, cut at
    :data:`WIRE_LOG_MAX_CHARS` (after masking, so no key is ever cut in two and left readable)."""
    finished = []
    for entry in log:
        item = {k: v for k, v in entry.items() if not k.startswith("_")}
        mask = entry.get("_mask") or (lambda text: text)
        item["response"] = mask(answer_text(entry))[:WIRE_LOG_MAX_CHARS]
        finished.append(item)
    return finished
