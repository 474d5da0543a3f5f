"""WebSocket authentication on the upgrade request, against a server that requires a key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.server import ServerProcess
from tests.ws.client import WsClient, assert_valid_turn

KEY = "ws-test-client-key-0001"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ws-auth")
    env = {
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_API_KEYS": KEY,
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_CONFIG": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="ws-auth-server").start()
    yield process
    process.stop()


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
