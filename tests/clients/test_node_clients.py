"""The official ``openai`` Node SDK and the Vercel AI SDK, unchanged, over every provider family."""

from __future__ import annotations

import secrets

import pytest

from tests.clients.agent import COMMAND, PLAIN, QUOTE
from tests.clients.conftest import NODE_DIR, Family, families, require_node, run_driver

pytestmark = pytest.mark.timeout(180)


def drive(script: str, family: Family, client_env: dict[str, str]) -> tuple[object, str]:
    token = "tok-" + secrets.token_hex(6)
    env = {**client_env, "CLIENT_MODEL": family.model, "TOOL_TOKEN": token}
    return run_driver(["node", str(NODE_DIR / script)], env), token


def assert_tool_round_trip(result: dict, token: str) -> None:
    """The client ran its tool once with the agent's command and got the answer quoting its output."""
    assert result["calls"] == [{"name": "shell", "arguments": {"command": COMMAND}}], result
    assert QUOTE in result["text"] and token in result["text"], result


@pytest.mark.parametrize("family", families())
def test_openai_node_sdk(family: Family, client_env: dict[str, str], upstream_log) -> None:
    require_node("openai")
    run, token = drive("openai_sdk.mjs", family, client_env)

    create = run.check("create")
    assert (create["status"], create["text"]) == ("completed", PLAIN)
    stream = run.check("stream")
    assert (stream["status"], stream["text"], stream["final_text"]) == ("completed", PLAIN, PLAIN)
    assert stream["last"] == "response.completed"
    helper = run.check("helper_stream")
    assert (helper["status"], helper["text"]) == ("completed", PLAIN)
    tools = run.check("tools")
    assert tools["status"] == "completed"
    assert_tool_round_trip(tools, token)


@pytest.mark.parametrize("family", families())
def test_vercel_ai_sdk(family: Family, client_env: dict[str, str], upstream_log) -> None:
    require_node("ai")
    require_node("@ai-sdk/openai")
    run, token = drive("ai_sdk.mjs", family, client_env)

    generate = run.check("generate")
    assert generate["text"] == PLAIN
    for scenario in ("generate_tool", "stream_tool"):
        result = run.check(scenario)
        assert result["steps"] == 2, result
        assert_tool_round_trip(result, token)
