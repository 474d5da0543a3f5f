"""A small WebSocket client for tests (the ``websockets`` package) that validates every message."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.support.spec import assert_valid_event, assert_valid_response, assert_valid_ws_error

TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/v1/responses"


class WsClient:
    """One connection to ``/v1/responses``; ``turn()`` sends a ``response.create`` and reads its events."""

    def __init__(self, http_url: str, headers: dict[str, str] | None = None) -> None:
        # Entered at once (and left in close()): tests hold connections across several statements.
        self.connection: ClientConnection = connect(
            ws_url(http_url), additional_headers=headers or {}, open_timeout=10, close_timeout=2
        ).__enter__()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.connection.__exit__(None, None, None)

    def send(self, message: dict[str, Any] | str) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def create(self, body: dict[str, Any]) -> None:
        self.send({"type": "response.create", **body})

    def recv(self, timeout: float = 20.0) -> dict[str, Any]:
        raw = self.connection.recv(timeout=timeout)
        assert isinstance(raw, str), "the server sends text messages"
        message = json.loads(raw)
        assert isinstance(message, dict)
        if message.get("type") == "error":
            assert_valid_ws_error(message)
        else:
            assert_valid_event(message)
        return message

    def read_turn(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Messages up to the terminal event or the first error (as the compliance client reads a turn)."""
        messages = []
        while True:
            message = self.recv(timeout)
            messages.append(message)
            if message["type"] in TERMINAL or message["type"] == "error":
                return messages

    def turn(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.create(body)
        return self.read_turn()


def assert_valid_turn(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A complete turn: sequence numbers 0, 1, 2…, created first, a valid terminal response; returns it."""
    assert events[0]["type"] == "response.created", events[0]
    for index, event in enumerate(events):
        assert event["sequence_number"] == index, (
            f"sequence_number {event['sequence_number']} at position {index}"
        )
    assert events[-1]["type"] in TERMINAL, events[-1]
    resource = events[-1]["response"]
    assert_valid_response(resource)
    return resource


def single_error(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn was refused before it started: exactly one error message."""
    assert len(events) == 1 and events[0]["type"] == "error", events
    return events[0]
