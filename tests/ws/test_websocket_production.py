"""WebSocket mode on the production topology: loops in a Celery worker, events through Redis.

Skipped without PostgreSQL and Redis (failed under ``CI=true``), like the other topology tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.production import REDIS_HOST, REDIS_PORT, PostgresDatabase, Topology, require_services
from tests.ws.client import WsClient, assert_valid_turn, single_error

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    require_services()
    database = PostgresDatabase("or_ws")
    running = Topology(
        name="ws-production",
        database_url=database.url,
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        workdir=tmp_path_factory.mktemp("ws-production"),
        env={"OPENRESPONSES_CONFIG": ""},
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        database.drop()


def test_turns_run_in_the_worker_and_stream_over_the_socket(topology):
    with WsClient(topology.url) as client:
        first = assert_valid_turn(
            client.turn({"model": "mock-1", "input": "hello from the socket", "store": False})
        )
        second = assert_valid_turn(
            client.turn(
                {"model": "mock-1", "input": "again", "previous_response_id": first["id"], "store": False}
            )
        )
        stored = assert_valid_turn(client.turn({"model": "mock-slow", "input": "a b c d e f"}))
        assert (second["status"], stored["status"]) == ("completed", "completed")
        assert second["output"][0]["content"][0]["text"] == "(turn 2) You said: again"
    with WsClient(topology.url) as other:
        error = single_error(
            other.turn({"model": "mock-1", "input": "x", "previous_response_id": second["id"]})
        )
        assert error["error"]["code"] == "previous_response_not_found"
    resource = httpx.get(f"{topology.url}/v1/responses/{stored['id']}", timeout=30).json()
    assert resource["status"] == "completed" and resource["output"] == stored["output"]
    # The three turns ran as Celery tasks (the web process only relayed their events).
    assert topology.log().count("Task responses_app.tasks.run_response[") >= 6  # received + succeeded lines
