"""The wire log: answers kept compressed in blocks, masked as strongly as the whole text."""

from __future__ import annotations

import contextvars
import json
from typing import Any

from providers_app.adapters import wirelog
from providers_app.adapters.wirelog import (
    BLOCK_CHARS,
    WIRE_LOG,
    WIRE_LOG_KEPT_CHARS,
    WIRE_LOG_MAX_CHARS,
    finished_wire_log,
)

SECRET = "sk-wire-secret-0123456789abcdef"


def mask(text: str) -> str:
    return text.replace(SECRET, "***")


def recorded(*pieces: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A wire log of one entry whose answer arrived as ``pieces``."""
    log: list[dict[str, Any]] = []

    def record() -> dict[str, Any]:
        WIRE_LOG.set(log)
        entry = wirelog.open_entry("p", "POST", f"http://h/v1?key={SECRET}", {"model": "m"}, mask)
        assert entry is not None
        for piece in pieces:
            wirelog.append(entry, piece)
        return entry

    return log, contextvars.copy_context().run(record)


def sse_chunk(i: int) -> str:
    delta = {"choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
    return "data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", **delta}) + "\n\n"


def test_the_answer_is_held_compressed_and_read_back_whole() -> None:
    pieces = [sse_chunk(i) for i in range(150)]
    log, entry = recorded(*pieces)

    assert len(entry["_blocks"]) >= 3 and len(entry["_tail"]) < BLOCK_CHARS
    held = sum(len(block) for block in entry["_blocks"]) + len(entry["_tail"])
    assert held < WIRE_LOG_KEPT_CHARS / 2  # what an open stream holds, not its ~17,000 characters
    (item,) = finished_wire_log(log)
    assert item["response"] == "".join(pieces)[:WIRE_LOG_KEPT_CHARS][:WIRE_LOG_MAX_CHARS]
    assert item["url"] == "http://h/v1?key=***"
    assert all(not key.startswith("_") for key in item)


def test_a_secret_across_a_block_boundary_is_masked() -> None:
    for k in (1, len(SECRET) // 2, len(SECRET) - 1):
        # the first piece completes a block with k characters of the secret; the rest follows
        head = "x" * (BLOCK_CHARS - k) + SECRET[:k]
        for pieces in ([head, SECRET[k:] + "\ndata: tail\n"], [head, SECRET[k:], "\ndata: tail\n"]):
            log, entry = recorded(*pieces)
            assert len(entry["_blocks"]) == 1 and entry["_tail"].startswith(SECRET[k:])  # straddles
            (item,) = finished_wire_log(log)
            assert item["response"] == "x" * (BLOCK_CHARS - k) + "***\ndata: tail\n"
            for cut in range(8, len(SECRET) + 1):
                assert SECRET[:cut] not in item["response"]


def test_non_ascii_text_and_many_blocks_round_trip() -> None:
    pieces = ["é€😀" * 700, "plain\n" * 900, "\udcff?" * 3]  # (a lone surrogate: decode's replacement)
    log, _ = recorded(*pieces)
    (item,) = finished_wire_log(log)
    assert item["response"] == "".join(pieces)[:WIRE_LOG_KEPT_CHARS][:WIRE_LOG_MAX_CHARS]


def test_the_kept_text_is_bounded_and_restart_forgets_it() -> None:
    log, entry = recorded(*["y" * 1000] * 40)
    assert entry["_size"] == WIRE_LOG_KEPT_CHARS
    assert len(finished_wire_log(log)[0]["response"]) == WIRE_LOG_MAX_CHARS

    wirelog.restart(entry)
    wirelog.append(entry, "retried answer")
    assert finished_wire_log(log)[0]["response"] == "retried answer"
