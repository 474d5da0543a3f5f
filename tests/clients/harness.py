"""The harness of tests/clients: provider families, client checks and the driver runner."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clients.agent import COMMAND, QUOTE
from tests.support.server import ROOT

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


def assert_tool_round_trip(result: dict[str, Any], token: str) -> None:
    """The client ran its tool once, with the agent's command, and got the answer quoting its output."""
    assert result["calls"] == [{"name": "shell", "arguments": {"command": COMMAND}}], result
    assert QUOTE in result["text"] and token in result["text"], result
