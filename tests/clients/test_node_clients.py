"""The official ``openai`` Node SDK and the Vercel AI SDK, unchanged, over every provider family."""

from __future__ import annotations

import pytest

from tests.clients.agent import PLAIN
from tests.clients.harness import NODE_DIR, Family, assert_tool_round_trip, families, require_node

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("family", families())
def test_openai_node_sdk(family: Family, drive) -> None:
    require_node("openai")
    run = drive(["node", str(NODE_DIR / "openai_sdk.mjs")])

    create = run.check("create")
    assert (create["status"], create["text"]) == ("completed", PLAIN)
    stream = run.check("stream")
    assert (stream["status"], stream["text"], stream["final_text"]) == ("completed", PLAIN, PLAIN)
    assert stream["last"] == "response.completed"
    helper = run.check("helper_stream")
    assert (helper["status"], helper["text"]) == ("completed", PLAIN)
    tools = run.check("tools")
    assert tools["status"] == "completed"
    assert_tool_round_trip(tools, run.token)


@pytest.mark.parametrize("family", families())
def test_vercel_ai_sdk(family: Family, drive) -> None:
    require_node("ai")
    require_node("@ai-sdk/openai")
    run = drive(["node", str(NODE_DIR / "ai_sdk.mjs")])

    assert run.check("generate")["text"] == PLAIN
    for scenario in ("generate_tool", "stream_tool"):
        result = run.check(scenario)
        assert result["steps"] == 2, result
        assert_tool_round_trip(result, run.token)
