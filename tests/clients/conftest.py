"""Real clients against the running server, the upstream being the scripted agent of ``agent.py``.

One scripted upstream and one server (daphne, embedded SQLite, in-process loops) for the whole
package; each provider family is reached through a model name routed to it. A client that is not
installed skips its tests with the reason, except under ``CI=true`` where it fails them: CI
installs every client (``.ci/run``), so a missing one there is a broken install, not a choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.clients.agent import ScriptedAgent
from tests.clients.harness import DriverMatrix, Run
from tests.support.server import ServerProcess
from tests.support.upstream import FakeUpstream


@pytest.fixture(scope="package")
def agent_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(handler=ScriptedAgent()) as upstream:
        yield upstream


@pytest.fixture
def upstream_log(agent_upstream: FakeUpstream) -> FakeUpstream:
    """The scripted upstream, its request log emptied for this test."""
    agent_upstream.requests.clear()
    agent_upstream.replies.clear()
    return agent_upstream


@pytest.fixture(scope="package")
def clients_server(
    agent_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The embedded server with every provider family pointed at the scripted upstream."""
    tmp = tmp_path_factory.mktemp("clients-server")
    base = agent_upstream.base_url
    config = tmp / "openresponses.json"
    config.write_text(
        json.dumps(
            {
                "providers": [
                    {
                        "name": "local-chat",
                        "adapter": "openai_chat",
                        "base_url": base + "/v1",
                        "api_key_env": "LOCAL_CHAT_KEY",
                        "max_retries": 0,
                    }
                ],
                "routes": [{"pattern": "chat-*", "provider": "local-chat"}],
            }
        )
    )
    env = {
        "OPENAI_BASE_URL": base + "/v1",
        "OPENAI_API_KEY": "sk-test-openai-secret-0001",
        "ANTHROPIC_BASE_URL": base + "/v1",
        "ANTHROPIC_API_KEY": "sk-ant-test-secret-0002",
        "GEMINI_BASE_URL": base + "/v1beta",
        "GEMINI_API_KEY": "gemini-test-secret-0003",
        "OLLAMA_BASE_URL": base,
        "LOCAL_CHAT_KEY": "sk-local-chat-secret-0004",
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_HOSTED_TOOLS": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="clients-server").start()
    yield process
    process.stop()


@pytest.fixture(scope="package")
def client_env(clients_server: ServerProcess) -> dict[str, str]:
    """The environment every driver reads: where the server is and the client key."""
    return {
        "CLIENT_BASE_URL": clients_server.url + "/v1",
        "CLIENT_API_KEY": "client-test-key",
        # The clients must reach nothing but the server.
        "OPENAI_API_KEY": "client-test-key",
        "OPENAI_BASE_URL": clients_server.url + "/v1",
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


@pytest.fixture(scope="package")
def driver_matrix(request: pytest.FixtureRequest, client_env: dict[str, str]) -> DriverMatrix:
    return DriverMatrix(request.session, client_env)


@pytest.fixture
def drive(driver_matrix: DriverMatrix, request: pytest.FixtureRequest) -> Callable[[list[str]], Run]:
    """``drive(command)``: this test's family's results from that driver."""
    family = request.node.callspec.params["family"]
    return lambda command: driver_matrix.run(command, request.node, family)
