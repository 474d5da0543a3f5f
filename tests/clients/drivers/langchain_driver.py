"""langchain-openai ``ChatOpenAI(use_responses_api=True)``: invoke, bind_tools round trip, streaming."""

from __future__ import annotations

from typing import Any

from common import API_KEY, BASE_URL, PROMPT, Scenarios, run_matrix, shell
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

shell_tool = tool(shell)


def round_trip(first: Any, messages: list[Any]) -> list[Any]:
    """The conversation so far, the model's tool calls, and what the tool answered to each."""
    results = [
        ToolMessage(content=shell_tool.invoke(c["args"]), tool_call_id=c["id"]) for c in first.tool_calls
    ]
    return [*messages, first, *results]


def calls(message: Any) -> list[dict[str, Any]]:
    return [{"name": c["name"], "arguments": c["args"]} for c in message.tool_calls]


def scenarios(model_name: str) -> Scenarios:
    llm = ChatOpenAI(
        model=model_name, base_url=BASE_URL, api_key=API_KEY, use_responses_api=True, max_retries=0
    )
    bound = llm.bind_tools([shell_tool])

    async def plain() -> dict[str, Any]:
        message = await llm.ainvoke("Say hello.")
        return {"text": message.text}

    async def tools() -> dict[str, Any]:
        messages = [HumanMessage(PROMPT)]
        first = await bound.ainvoke(messages)
        final = await bound.ainvoke(round_trip(first, messages))
        return {"text": final.text, "calls": calls(first)}

    async def streaming() -> dict[str, Any]:
        messages = [HumanMessage(PROMPT)]
        first = None
        async for chunk in bound.astream(messages):
            first = chunk if first is None else first + chunk
        deltas = [chunk.text async for chunk in bound.astream(round_trip(first, messages))]
        return {"text": "".join(deltas), "calls": calls(first)}

    return {"plain": plain, "tools": tools, "streaming": streaming}


run_matrix(scenarios)
