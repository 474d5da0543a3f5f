"""An embedded server (in-process loops, SQLite) with the loop-test settings and the scripted upstream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.mcp_server import McpTestServer
from tests.support.production import REDIS_HOST, REDIS_PORT, require_services, upstream_config
from tests.support.server import ServerProcess
from tests.support.upstream import ScriptedUpstream

HOSTED = ",".join(
    ["tests.loop.support.rendezvous"]
    + [f"tests.support.hosted_tools.{name}" for name in ("get_weather", "add_numbers", "broken_tool")]
)


@pytest.fixture(scope="session")
def loop_upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def scripted(loop_upstream: ScriptedUpstream) -> ScriptedUpstream:
    loop_upstream.reset()
    return loop_upstream


def _server(name: str, upstream: ScriptedUpstream, tmp, disconnect_cancels: bool) -> ServerProcess:
    config = upstream_config(tmp / "openresponses.json", upstream.base_url)
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.loop.settings",
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_HOSTED_TOOLS": HOSTED,
        # The MCP test server listens on loopback, which the egress policy refuses unless trusted.
        "OPENRESPONSES_MCP_ALLOWED_URLS": "http://127.0.0.1:*/mcp",
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "SCRIPTED_KEY": "sk-scripted-secret-0006",
        "TEST_DISCONNECT_CANCELS": "1" if disconnect_cancels else "0",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    return ServerProcess(env, name=name).start()


@pytest.fixture(scope="session")
def loop_server(
    loop_upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = _server("loop-server", loop_upstream, tmp_path_factory.mktemp("loop"), False)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def cancelling_server(
    loop_upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = _server(
        "loop-server-disconnect-cancels", loop_upstream, tmp_path_factory.mktemp("loop-dc"), True
    )
    yield process
    process.stop()


@pytest.fixture
def lhttp(loop_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=loop_server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A client of the real Redis (the Celery tests' broker); fails under CI=true without it."""
    require_services()
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    yield client
    client.close()


@pytest.fixture
def queue(redis_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A Celery queue name of the test's own; its keys are removed afterwards."""
    name = f"ortest-{request.module.__name__.rsplit('_', 1)[-1]}-{uuid.uuid4().hex[:10]}"
    yield name
    for key in redis_client.scan_iter(f"*{name}*"):
        redis_client.delete(key)
