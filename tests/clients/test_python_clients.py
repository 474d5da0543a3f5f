"""The OpenAI Agents SDK, pydantic-ai and langchain-openai, unchanged, over every provider family."""

from __future__ import annotations

import sys

import pytest

from tests.clients.agent import PLAIN
from tests.clients.harness import DRIVERS, Family, assert_tool_round_trip, families, require_python

pytestmark = pytest.mark.timeout(300)


def driver(script: str) -> list[str]:
    return [sys.executable, str(DRIVERS / script)]


@pytest.mark.parametrize("family", families())
def test_openai_agents_sdk(family: Family, drive) -> None:
    require_python("agents", "openai-agents")
    run = drive(driver("openai_agents.py"))

    assert run.check("plain")["text"] == PLAIN
    assert_tool_round_trip(run.check("run"), run.token)
    streamed = run.check("run_streamed")
    assert_tool_round_trip(streamed, run.token)
    assert run.token in streamed["streamed"], streamed


@pytest.mark.parametrize("family", families())
def test_pydantic_ai(family: Family, drive) -> None:
    require_python("pydantic_ai", "pydantic-ai-slim[openai]")
    run = drive(driver("pydantic_ai_driver.py"))

    assert run.check("plain")["text"] == PLAIN
    assert_tool_round_trip(run.check("run"), run.token)
    assert_tool_round_trip(run.check("run_stream"), run.token)


@pytest.mark.parametrize("family", families())
def test_langchain_openai(family: Family, drive) -> None:
    require_python("langchain_openai", "langchain-openai")
    run = drive(driver("langchain_driver.py"))

    assert run.check("plain")["text"] == PLAIN
    assert_tool_round_trip(run.check("tools"), run.token)
    assert_tool_round_trip(run.check("streaming"), run.token)
