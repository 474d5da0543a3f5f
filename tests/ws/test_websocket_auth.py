"""WebSocket authentication on the upgrade request, against a server that requires a key."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from tests.ws.client import WsClient, assert_valid_turn

KEY = "ws-test-client-key-0001"  # one of tests.conftest.CLIENT_KEYS (the shared keyed_server)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}]
)
def test_a_bad_or_missing_key_is_refused(keyed_server, headers):
    client = WsClient(keyed_server.url, headers=headers)
    try:
        error = client.recv()
        assert error["type"] == "error" and error["status"] == 401
        assert error["error"]["code"] in {"missing_api_key", "invalid_api_key"}
        with pytest.raises(ConnectionClosed) as closed:
            client.connection.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    finally:
        client.close()


def test_the_key_on_the_upgrade_request_authenticates_every_turn(keyed_server):
    with WsClient(keyed_server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        first = assert_valid_turn(client.turn({"model": "mock-1", "input": "hi"}))
        second = assert_valid_turn(
            client.turn({"model": "mock-1", "input": "again", "previous_response_id": first["id"]})
        )
        assert second["status"] == "completed"
