"""Real recorded tool-call answers whose function names differ from the offered ones, through a client.

Real models call functions the request did not offer; so do the recorded answers of every provider
here (the client offers only ``shell``). OpenAI's own API hands such a call to the client as the
``function_call`` item it was, and clients handle unknown names themselves. The official ``openai``
Python SDK must get exactly that, in the JSON and in the stream, from every provider family; the
OpenAI Agents SDK must get to raise its own error about the unknown tool.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.clients.harness import require_python
from tests.support.server import ServerProcess
from tests.support.upstream import FakeUpstream, Reply

SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Run a shell command and return what it printed.",
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
        "additionalProperties": False,
    },
}

#: (recorded answer, a model routed to its family, whether it was streamed, the names it calls)
RECORDINGS = [
    ("openai/function_call_stream.sse", "gpt-4o", True, ["get_capital"]),
    ("openai/parallel_function_calls_nonstream.json", "gpt-4o", False, ["get_location", "get_location"]),
    ("openai_chat/tool_call_nonstream.json", "chat-qwen3", False, ["get_user_country"]),
    ("openai_chat/parallel_tool_calls_stream.sse", "chat-qwen3", True, ["get_country", "get_product_name"]),
    ("anthropic/parallel_tool_calls_nonstream.json", "claude-haiku-4-5", False, ["retrieve_entity_info"] * 4),
    ("gemini/function_call_nonstream.json", "gemini-2.5-flash", False, ["get_weather"]),
    ("ollama/tool_call_stream.ndjson", "llama3.2", True, ["get_weather"]),
]


@pytest.fixture
def openai_sdk(clients_server: ServerProcess):  # noqa: ANN201 - openai.OpenAI
    import openai

    return openai.OpenAI(
        base_url=clients_server.url + "/v1", api_key="client-test-key", max_retries=0, timeout=60
    )


@pytest.mark.parametrize(
    ("fixture", "model", "streamed", "names"), [pytest.param(*r, id=r[0].split(".")[0]) for r in RECORDINGS]
)
def test_unoffered_function_call_reaches_the_client(
    fixture: str, model: str, streamed: bool, names: list[str], openai_sdk, upstream_log: FakeUpstream
) -> None:
    upstream_log.queue(Reply.fixture(fixture))
    request = {"model": model, "input": "Use your tools.", "tools": [SHELL]}
    if streamed:
        with openai_sdk.responses.stream(**request) as stream:
            done_items = [e.item for e in stream if e.type == "response.output_item.done"]
            response = stream.get_final_response()
        streamed_calls = [i.name for i in done_items if i.type == "function_call"]
        assert streamed_calls == names
    else:
        response = openai_sdk.responses.create(**request)
    assert response.status == "completed", response.error
    calls = [i for i in response.output if i.type == "function_call"]
    assert [c.name for c in calls] == names
    assert all(isinstance(json.loads(c.arguments), dict) and c.call_id for c in calls)
    # Nothing ran server-side: the calls are the client's to handle, the upstream was asked once.
    assert len(upstream_log.requests) == 1


@pytest.mark.parametrize(
    ("fixture", "model", "streamed", "names"), [pytest.param(*r, id=r[0].split(".")[0]) for r in RECORDINGS]
)
def test_agents_sdk_handles_the_unknown_tool_itself(
    fixture: str, model: str, streamed: bool, names: list[str], clients_server: ServerProcess, upstream_log
) -> None:
    """The Agents SDK, not the server, decides about a tool it never offered: ModelBehaviorError."""
    require_python("agents", "openai-agents")
    from agents import (
        Agent,
        ModelBehaviorError,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=clients_server.url + "/v1", api_key="client-test-key", max_retries=0)

    def shell(command: str) -> str:
        """Run a shell command and return what it printed."""
        return "not run"

    agent = Agent(
        name="e2e",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        tools=[function_tool(shell)],
    )

    async def run() -> None:
        if streamed:
            result = Runner.run_streamed(agent, "Use your tools.", max_turns=2)
            async for _ in result.stream_events():
                pass
        else:
            await Runner.run(agent, "Use your tools.", max_turns=2)

    upstream_log.queue(Reply.fixture(fixture))
    with pytest.raises(ModelBehaviorError, match=f"Tool {names[0]} not found"):
        asyncio.run(run())
    assert len(upstream_log.requests) == 1
