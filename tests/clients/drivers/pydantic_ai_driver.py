"""pydantic-ai with ``OpenAIResponsesModel``: run and run_stream with a tool."""

from __future__ import annotations

from typing import Any

from common import API_KEY, BASE_URL, PROMPT, Scenarios, run_matrix, shell
from pydantic_ai import Agent
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

provider = OpenAIProvider(base_url=BASE_URL, api_key=API_KEY)


def calls(messages: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": part.tool_name, "arguments": part.args_as_dict()}
        for message in messages
        for part in message.parts
        if isinstance(part, ToolCallPart)
    ]


def scenarios(model_name: str) -> Scenarios:
    model = OpenAIResponsesModel(model_name, provider=provider)
    agent = Agent(model, instructions="Use the shell tool when asked.", tools=[shell])

    async def plain() -> dict[str, Any]:
        result = await Agent(model).run("Say hello.")
        return {"text": result.output}

    async def run() -> dict[str, Any]:
        result = await agent.run(PROMPT)
        return {"text": result.output, "calls": calls(result.all_messages())}

    async def run_stream() -> dict[str, Any]:
        async with agent.run_stream(PROMPT) as result:
            deltas = [delta async for delta in result.stream_text(delta=True)]
            messages = result.all_messages()
        return {"text": "".join(deltas), "calls": calls(messages)}

    return {"plain": plain, "run": run, "run_stream": run_stream}


run_matrix(scenarios)
