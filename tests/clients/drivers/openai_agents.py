"""The OpenAI Agents SDK (``openai-agents``): Runner.run and Runner.run_streamed with a function tool."""

from __future__ import annotations

import json
from typing import Any

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from agents.items import ToolCallItem
from common import API_KEY, BASE_URL, PROMPT, Scenarios, run_matrix, shell
from openai import AsyncOpenAI

set_tracing_disabled(True)  # traces would go to OpenAI's platform
client = AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)


def calls(items: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": i.raw_item.name, "arguments": json.loads(i.raw_item.arguments)}
        for i in items
        if isinstance(i, ToolCallItem)
    ]


def scenarios(model_name: str) -> Scenarios:
    model = OpenAIResponsesModel(model=model_name, openai_client=client)
    agent = Agent(
        name="e2e", instructions="Use the shell tool when asked.", model=model, tools=[function_tool(shell)]
    )

    async def plain() -> dict[str, Any]:
        result = await Runner.run(Agent(name="plain", model=model), "Say hello.")
        return {"text": result.final_output}

    async def run() -> dict[str, Any]:
        result = await Runner.run(agent, PROMPT, max_turns=4)
        return {"text": result.final_output, "calls": calls(result.new_items)}

    async def run_streamed() -> dict[str, Any]:
        result = Runner.run_streamed(agent, PROMPT, max_turns=4)
        deltas = []
        async for event in result.stream_events():
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        return {"text": result.final_output, "streamed": "".join(deltas), "calls": calls(result.new_items)}

    return {"plain": plain, "run": run, "run_streamed": run_streamed}


run_matrix(scenarios)
