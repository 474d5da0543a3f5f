"""A create retried with an ``Idempotency-Key`` gets the first create's response, never a second one."""

from __future__ import annotations

import uuid

from tests.support.api import create, stream
from tests.support.spec import assert_valid_error


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}


def test_a_retried_create_returns_the_same_response(http):
    headers = key()
    first = create(http, {"model": "mock-1", "input": "only once"}, headers=headers)
    again = http.post("/v1/responses", json={"model": "mock-1", "input": "only once"}, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first
    other = create(http, {"model": "mock-1", "input": "only once"}, headers=key())
    assert other["id"] != first["id"]
    plain = create(http, {"model": "mock-1", "input": "only once"})
    assert plain["id"] not in {first["id"], other["id"]}


def test_a_retried_stream_replays_the_first_stream_whole(http):
    headers = key()
    first = stream(http, {"model": "mock-1", "input": "stream me once"}, headers=headers)
    again = stream(http, {"model": "mock-1", "input": "stream me once"}, headers=headers)
    assert again == first


def test_a_retried_background_create_returns_the_first_response(http):
    headers = key()
    first = create(
        http, {"model": "mock-1", "input": "in the background", "background": True}, headers=headers
    )
    again = create(
        http, {"model": "mock-1", "input": "in the background", "background": True}, headers=headers
    )
    assert again["id"] == first["id"]


def test_an_overlong_key_is_a_400_naming_the_header(http):
    response = http.post(
        "/v1/responses", json={"model": "mock-1", "input": "x"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert response.status_code == 400
    body = response.json()
    assert_valid_error(body)
    assert body["error"]["param"] == "Idempotency-Key"


def test_keys_are_per_owner(keyed_server):
    import httpx

    from tests.conftest import CLIENT_KEYS

    headers = key()
    ids = []
    for client_key in CLIENT_KEYS[:2]:
        with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
            auth = {**headers, "Authorization": f"Bearer {client_key}"}
            ids.append(create(http, {"model": "mock-1", "input": "mine"}, headers=auth)["id"])
            assert create(http, {"model": "mock-1", "input": "mine"}, headers=auth)["id"] == ids[-1]
    assert ids[0] != ids[1]
