"""Real clients against the running server, the upstream being the scripted agent of ``agent.py``.

One scripted upstream and one server (daphne, embedded SQLite, in-process loops) for the whole
package; each provider family is reached through a model name routed to it. A client that is not
installed skips its tests with the reason, except under ``CI=true`` where it fails them: CI
installs every client (``.ci/run``), so a missing one there is a broken install, not a choice.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients.agent import COMMAND, QUOTE, ScriptedAgent
from tests.support.server import ROOT, ServerProcess
from tests.support.upstream import FakeUpstream

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
DRIVERS = HERE / "drivers"


@dataclass(frozen=True)
class Family:
    """A provider family and a model name the server routes to it."""

    id: str
    model: str


#: Every provider family, each behind a model name a user would type.
FAMILIES = [
    Family("openai", "gpt-4o"),
    Family("chat", "chat-qwen3"),
    Family("anthropic", "claude-sonnet-4-5"),
    Family("gemini", "gemini-2.5-flash"),
    Family("ollama", "llama3.2"),
]


def families() -> list[Any]:
    """``FAMILIES`` as pytest params with readable ids."""
    return [pytest.param(f, id=f.id) for f in FAMILIES]


def require(available: bool, what: str, how: str) -> None:
    """Skip (fail under CI) a test whose client is not installed."""
    if available:
        return
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI installs every client in .ci/run", pytrace=False)
    pytest.skip(message)


def require_python(module: str, package: str) -> None:
    require(
        importlib.util.find_spec(module) is not None,
        f"the Python package {package}",
        "pip install -e '.[test]'",
    )


def require_node(package: str) -> None:
    require(
        shutil.which("node") is not None and (NODE_DIR / "node_modules" / package / "package.json").exists(),
        f"the npm package {package}",
        "npm ci in tests/clients/node",
    )


@dataclass
class Run:
    """One family's results from a driver (scenario name to result), the token its tool answered
    with, and the driver's logs."""

    results: dict[str, Any]
    token: str
    stdout: str
    stderr: str

    def check(self, scenario: str) -> dict[str, Any]:
        result = self.results.get(scenario)
        assert result is not None, f"{scenario} did not run\n{self.stderr[-3000:]}"
        assert "error" not in result, f"{scenario}: {result['error']}\n{self.stderr[-3000:]}"
        return result


class DriverMatrix:
    """Runs each driver script once, for every family the session selected of the test using it.

    Starting a client (Node, or a Python SDK and its imports) costs seconds; its scenarios take far
    less. So one process drives every selected family in turn, printing
    ``{model: {scenario: result}}`` as its last line, and each parametrized test reads its own.
    """

    def __init__(self, session: pytest.Session, env: dict[str, str]) -> None:
        self.session = session
        self.env = env
        self._runs: dict[tuple[str, ...], dict[str, Run]] = {}

    def _families(self, node: pytest.Item) -> list[Family]:
        function = getattr(node, "function", None)
        chosen = [
            item.callspec.params["family"]
            for item in self.session.items
            if getattr(item, "function", None) is function and hasattr(item, "callspec")
        ]
        return list(dict.fromkeys(chosen))

    def run(self, command: list[str], node: pytest.Item, family: Family, *, timeout: float = 150) -> Run:
        key = tuple(command)
        if key not in self._runs or family.model not in self._runs[key]:
            wanted = self._families(node) or [family]
            token = "tok-" + secrets.token_hex(6)
            env = {
                **os.environ,
                **self.env,
                "CLIENT_MODELS": ",".join(f.model for f in wanted),
                "TOOL_TOKEN": token,
            }
            done = subprocess.run(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout * len(wanted),
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            assert lines, (
                f"driver printed no results (exit {done.returncode})\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
            printed = json.loads(lines[-1])
            self._runs[key] = {
                model: Run(results, token, done.stdout, done.stderr) for model, results in printed.items()
            }
        return self._runs[key][family.model]


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


def assert_tool_round_trip(result: dict[str, Any], token: str) -> None:
    """The client ran its tool once, with the agent's command, and got the answer quoting its output."""
    assert result["calls"] == [{"name": "shell", "arguments": {"command": COMMAND}}], result
    assert QUOTE in result["text"] and token in result["text"], result
