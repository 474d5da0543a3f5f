"""Client keys, body size limit and keep-alive comments, on a server configured for them."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.spec import assert_valid_error
from tests.support.sse import parse_sse
from tests.support.upstream import Reply


@pytest.fixture
def client(keyed_server):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_missing_and_wrong_keys(client):
    for headers in ({}, auth("sk-wrong"), {"Authorization": "Basic abc"}):
        response = client.post("/v1/responses", json={"model": "mock-1", "input": "x"}, headers=headers)
        assert response.status_code == 401
        assert_valid_error(response.json())
        assert response.json()["error"]["type"] == "authentication_error"
    assert client.get("/v1/responses/resp_x", headers=auth("sk-wrong")).status_code == 401


def test_valid_key_and_isolation(client):
    created = client.post(
        "/v1/responses", json={"model": "mock-1", "input": "mine"}, headers=auth("sk-client-one")
    )
    assert created.status_code == 200
    rid = created.json()["id"]
    assert client.get(f"/v1/responses/{rid}", headers=auth("sk-client-one")).status_code == 200
    other = client.get(f"/v1/responses/{rid}", headers=auth("sk-client-two"))
    assert other.status_code == 404, "another key's response looks like it does not exist"
    chained = client.post(
        "/v1/responses",
        json={"model": "mock-1", "input": "x", "previous_response_id": rid},
        headers=auth("sk-client-two"),
    )
    assert chained.status_code == 404 and chained.json()["error"]["code"] == "previous_response_not_found"
    assert client.delete(f"/v1/responses/{rid}", headers=auth("sk-client-two")).status_code == 404
    assert client.post(f"/v1/responses/{rid}/cancel", headers=auth("sk-client-two")).status_code == 404


def test_oversized_body_is_413(client):
    body = json.dumps({"model": "mock-1", "input": "x" * 30000})
    response = client.post(
        "/v1/responses", content=body, headers={**auth("sk-client-one"), "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert_valid_error(response.json())
    assert response.json()["error"]["code"] == "request_too_large"


def test_keepalive_while_upstream_is_silent(client, upstream):
    reply = Reply.fixture("openai/text_stream.sse", delay=0.0)
    reply.chunks = reply.chunks[:3] + [b": upstream thinking\n\n"] + reply.chunks[3:]
    reply.delay = 0.4
    upstream.queue(reply)
    with client.stream(
        "POST",
        "/v1/responses",
        json={"model": "gpt-4o", "input": "x", "stream": True},
        headers=auth("sk-client-one"),
    ) as response:
        raw = response.read().decode()
    assert ": keep-alive\n\n" in raw
    events, done = parse_sse(raw)
    assert done and events[-1]["type"] == "response.completed"
