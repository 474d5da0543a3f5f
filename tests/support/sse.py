"""A strict SSE reader for tests: checks framing rules as it parses."""

from __future__ import annotations

import json
from typing import Any


def parse_sse(raw: str) -> tuple[list[dict[str, Any]], bool]:
    """Events of an SSE body and whether it ended with ``data: [DONE]``.

    Asserts the spec's framing: ``event:`` equals the JSON ``type``, one ``data:`` line of JSON
    per event, no ``id:`` field.
    """
    events: list[dict[str, Any]] = []
    done = False
    for block in raw.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(": ")
            fields.setdefault(name, []).append(value)
        assert "id" not in fields, "servers should not send id:"
        data = fields.get("data", [])
        assert len(data) == 1, f"expected one data line, got {block!r}"
        if data[0] == "[DONE]":
            done = True
            continue
        assert not done, "event after [DONE]"
        event = json.loads(data[0])
        assert fields.get("event") == [event["type"]], f"event: {fields.get('event')} != type {event['type']}"
        events.append(event)
    return events, done
