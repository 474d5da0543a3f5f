"""Small helpers for calling the API in tests, validating everything against the spec."""

from __future__ import annotations

from typing import Any

import httpx

from .spec import assert_valid_error, assert_valid_response, assert_valid_stream
from .sse import parse_sse


def create(
    http: httpx.Client, body: dict[str, Any], *, expect: int = 200, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = http.post("/v1/responses", json=body, headers=headers or {})
    assert response.status_code == expect, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    if expect == 200:
        assert_valid_response(data)
    else:
        assert_valid_error(data)
    return data


def stream(
    http: httpx.Client, body: dict[str, Any], *, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    with http.stream(
        "POST", "/v1/responses", json={**body, "stream": True}, headers=headers or {}
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events, done = parse_sse(raw)
    assert done, "stream did not end with data: [DONE]"
    assert_valid_stream(events)
    return events


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def output_text(resource: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in resource["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )
