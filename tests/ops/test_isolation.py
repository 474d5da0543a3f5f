"""Per-key isolation: a key reaches only its own responses, on every endpoint; models a key may not use."""

from __future__ import annotations

import httpx
import pytest

from tests.ops.conftest import auth
from tests.support.api import create, output_text, stream
from tests.support.spec import assert_valid_error, assert_valid_response
from tests.support.sse import parse_sse
from tests.ws.client import WsClient, assert_valid_turn, single_error


def not_found(response: httpx.Response) -> dict:
    assert response.status_code == 404, response.text
    body = response.json()
    assert_valid_error(body)
    return body["error"]


@pytest.fixture
def owned(ops_http: httpx.Client) -> dict:
    """A stored response of team-a (background, so cancel has something to say)."""
    return create(ops_http, {"model": "mock-1", "input": "private words of team a"}, headers=auth("team-a"))


def test_other_key_sees_nothing(ops_http: httpx.Client, owned: dict):
    rid = owned["id"]
    item_id = ops_http.get(f"/v1/responses/{rid}/input_items", headers=auth("team-a")).json()["data"][0]["id"]
    b = auth("team-b")
    # The owner reaches it; the other key gets the same 404 as for an id that does not exist.
    assert ops_http.get(f"/v1/responses/{rid}", headers=auth("team-a")).status_code == 200
    for path in (
        f"/v1/responses/{rid}",
        f"/v1/responses/{rid}/input_items",
        f"/v1/responses/{rid}?stream=true",
    ):
        theirs = not_found(ops_http.get(path, headers=b))
        missing = not_found(ops_http.get(path.replace(rid, "resp_doesnotexist0000000000"), headers=b))
        assert theirs["code"] == missing["code"] and theirs["message"].replace(rid, "X") == missing[
            "message"
        ].replace("resp_doesnotexist0000000000", "X")
    not_found(ops_http.post(f"/v1/responses/{rid}/cancel", headers=b))
    not_found(ops_http.delete(f"/v1/responses/{rid}", headers=b))
    # Continuing someone else's conversation, or citing one of its items, is refused the same way.
    error = create(
        ops_http, {"model": "mock-1", "input": "go on", "previous_response_id": rid}, expect=404, headers=b
    )["error"]
    assert error["param"] == "previous_response_id"
    reference = {"model": "mock-1", "input": [{"type": "item_reference", "id": item_id}]}
    create(ops_http, reference, expect=404, headers=b)
    compact = ops_http.post(
        "/v1/responses/compact", json={"model": "mock-1", "previous_response_id": rid}, headers=b
    )
    not_found(compact)
    # Still there, untouched, for its owner; and the owner may do all of the above.
    assert ops_http.get(f"/v1/responses/{rid}", headers=auth("team-a")).json()["status"] == "completed"
    chained = create(
        ops_http, {"model": "mock-1", "input": "go on", "previous_response_id": rid}, headers=auth("team-a")
    )
    assert chained["previous_response_id"] == rid
    assert create(ops_http, reference, headers=auth("team-a"))["status"] == "completed"
    with ops_http.stream("GET", f"/v1/responses/{rid}?stream=true", headers=auth("team-a")) as resumed:
        assert resumed.status_code == 200
        events, _ = parse_sse(resumed.read().decode())
    assert events[-1]["type"] == "response.completed"
    assert ops_http.delete(f"/v1/responses/{rid}", headers=auth("team-a")).json()["deleted"] is True


def test_cancel_is_owner_scoped(ops_http: httpx.Client):
    running = create(
        ops_http,
        {"model": "slow-1", "input": " ".join(["word"] * 40), "background": True},
        headers=auth("team-a"),
    )
    not_found(ops_http.post(f"/v1/responses/{running['id']}/cancel", headers=auth("team-b")))
    cancelled = ops_http.post(f"/v1/responses/{running['id']}/cancel", headers=auth("team-a"))
    assert cancelled.status_code == 200
    assert_valid_response(cancelled.json())
    assert cancelled.json()["status"] == "cancelled"


def test_streams_and_websocket_are_owner_scoped(ops_server, ops_http: httpx.Client):
    events = stream(ops_http, {"model": "mock-1", "input": "streamed secret"}, headers=auth("team-a"))
    rid = events[-1]["response"]["id"]
    with WsClient(ops_server.url, headers=auth("team-b")) as theirs:
        error = single_error(theirs.turn({"model": "mock-1", "input": "more", "previous_response_id": rid}))
        assert error["status"] == 404
    with WsClient(ops_server.url, headers=auth("team-a")) as mine:
        resource = assert_valid_turn(
            mine.turn({"model": "mock-1", "input": "more", "previous_response_id": rid})
        )
        assert resource["previous_response_id"] == rid
        # A store:false turn on this connection cannot be continued from another connection or key.
        unstored = assert_valid_turn(mine.turn({"model": "mock-1", "input": "ephemeral", "store": False}))
    with WsClient(ops_server.url, headers=auth("team-b")) as theirs:
        error = single_error(
            theirs.turn({"model": "mock-1", "input": "x", "previous_response_id": unstored["id"]})
        )
        assert error["status"] == 404
    not_found(ops_http.get(f"/v1/responses/{unstored['id']}", headers=auth("team-a")))


def test_a_model_the_key_may_not_use_is_403(ops_server, ops_http: httpx.Client):
    error = create(ops_http, {"model": "mock-2", "input": "hi"}, expect=403, headers=auth("narrow"))["error"]
    assert error["code"] == "model_not_allowed" and error["param"] == "model"
    assert output_text(create(ops_http, {"model": "mock-1", "input": "hi"}, headers=auth("narrow"))).endswith(
        "hi"
    )
    with WsClient(ops_server.url, headers=auth("narrow")) as ws:
        assert single_error(ws.turn({"model": "mock-2", "input": "hi"}))["status"] == 403


def test_config_keys_close_the_api(ops_http: httpx.Client):
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Bearer ork_abcdefgh_nope"}):
        response = ops_http.post("/v1/responses", json={"model": "mock-1", "input": "hi"}, headers=headers)
        assert response.status_code == 401
        assert_valid_error(response.json())
