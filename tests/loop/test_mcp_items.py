"""MCP tools answer with the items OpenAI's API emits: ``mcp_list_tools``, ``mcp_call``, and
``require_approval`` pausing the loop on an ``mcp_approval_request`` until the next request brings
the ``mcp_approval_response`` (a real MCP server and a scripted model on loopback)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.spec import assert_valid_event, assert_valid_response
from tests.support.sse import parse_sse
from tests.support.upstream import ScriptedUpstream

MCP_ITEMS = {"mcp_list_tools", "mcp_call", "mcp_approval_request"}


def mcp_tool(server: Any, approval: Any) -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_label": "orders",
        "server_url": server.url,
        "allowed_tools": ["lookup_order", "explode"],
        "require_approval": approval,
    }


def check(resource: dict[str, Any]) -> None:
    """Spec-valid but for OpenAI's MCP items and the ``mcp`` tool echo (outside the document)."""
    for item in resource["output"]:
        if item["type"] in MCP_ITEMS:
            assert item["id"] and item["server_label"] == "orders", item
    assert_valid_response(
        {
            **resource,
            "tools": [t for t in resource["tools"] if t["type"] != "mcp"],
            "output": [i for i in resource["output"] if i["type"] not in MCP_ITEMS],
        }
    )


def post(http: httpx.Client, body: dict[str, Any], *, streamed: bool = False) -> tuple[dict, list[dict]]:
    if not streamed:
        response = http.post("/v1/responses", json=body)
        assert response.status_code == 200, response.text
        check(response.json())
        return response.json(), []
    with http.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        events, done = parse_sse(response.read().decode())
    assert done and [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        if "response" in event:
            check(event["response"])
        elif (event.get("item") or {}).get("type") not in MCP_ITEMS:
            assert_valid_event(event)
    return events[-1]["response"], events


def kinds(resource: dict[str, Any]) -> list[str]:
    return [i["type"] for i in resource["output"]]


def test_mcp_calls_are_listed_made_and_recorded_as_openai_does(lhttp, scripted: ScriptedUpstream, mcp_server):
    mcp_server.tool_calls.clear()
    body = {
        "model": "chat-fast",
        "input": 'CALL lookup_order {"order_id": "A1"} ; explode {}',
        "tools": [mcp_tool(mcp_server, "never")],
    }
    final, events = post(lhttp, body, streamed=True)
    assert final["status"] == "completed"
    assert kinds(final) == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    listing, found, failed, _ = final["output"]
    assert sorted(t["name"] for t in listing["tools"]) == ["explode", "lookup_order"], "allowed_tools applied"
    assert all(t["input_schema"]["type"] == "object" for t in listing["tools"])
    assert (found["name"], json.loads(found["arguments"]), found["status"]) == (
        "lookup_order",
        {"order_id": "A1"},
        "completed",
    )
    assert json.loads(found["output"]) == {"order_id": "A1", "status": "shipped"} and found["error"] is None
    assert failed["name"] == "explode" and failed["status"] == "failed" and failed["output"] is None
    assert "Error executing tool explode" in json.dumps(failed["error"])
    done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
    assert done == kinds(final)
    assert not any(e.get("item", {}).get("type") == "function_call" for e in events), "no function_call items"
    tool_messages = [m for m in scripted.calls[1].body["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 2 and "shipped" in json.dumps(tool_messages), "the model read both results"
    assert "Error executing tool explode" in json.dumps(tool_messages)

    # The next turn keeps the listing from the context: no second mcp_list_tools.
    follow, _ = post(lhttp, {**body, "previous_response_id": final["id"], "input": "thanks"})
    assert kinds(follow) == ["message"]
    replayed = scripted.calls[-1].body["messages"]
    assert [m["role"] for m in replayed].count("tool") == 2, "earlier mcp_calls are history for the model"


def test_require_approval_pauses_and_resumes(lhttp, scripted: ScriptedUpstream, mcp_server):
    mcp_server.tool_calls.clear()
    tool = mcp_tool(mcp_server, "always")
    first, _ = post(
        lhttp, {"model": "chat-fast", "input": 'CALL lookup_order {"order_id": "B2"}', "tools": [tool]}
    )
    assert first["status"] == "completed" and kinds(first) == ["mcp_list_tools", "mcp_approval_request"]
    request = first["output"][1]
    assert request["id"].startswith("mcpr_") and request["name"] == "lookup_order"
    assert json.loads(request["arguments"]) == {"order_id": "B2"}
    assert mcp_server.tool_calls == [], "nothing runs before approval"

    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    second, events = post(
        lhttp,
        {"model": "chat-fast", "previous_response_id": first["id"], "input": [approval], "tools": [tool]},
        streamed=True,
    )
    assert second["status"] == "completed" and kinds(second) == ["mcp_call", "message"]
    call = second["output"][0]
    assert call["approval_request_id"] == request["id"] and call["status"] == "completed"
    assert json.loads(call["output"])["status"] == "shipped"
    assert mcp_server.tool_calls == [("lookup_order", {"order_id": "B2"})]
    assert "shipped" in second["output"][1]["content"][0]["text"], "the model read the result"


def test_declined_approval_is_told_to_the_model(lhttp, scripted: ScriptedUpstream, mcp_server):
    mcp_server.tool_calls.clear()
    tool = mcp_tool(mcp_server, {"always": {"tool_names": ["lookup_order"]}})
    first, _ = post(
        lhttp, {"model": "chat-fast", "input": 'CALL lookup_order {"order_id": "C3"}', "tools": [tool]}
    )
    request = first["output"][-1]
    assert request["type"] == "mcp_approval_request"
    declined = {
        "type": "mcp_approval_response",
        "approval_request_id": request["id"],
        "approve": False,
        "reason": "not today",
    }
    second, _ = post(
        lhttp,
        {"model": "chat-fast", "previous_response_id": first["id"], "input": [declined], "tools": [tool]},
    )
    assert kinds(second) == ["message"] and mcp_server.tool_calls == []
    assert "declined" in second["output"][0]["content"][0]["text"] and "not today" in json.dumps(second)


def test_store_false_client_sends_the_items_back(lhttp, scripted: ScriptedUpstream, mcp_server):
    """Without ``previous_response_id`` the client sends the whole history, MCP items included."""
    mcp_server.tool_calls.clear()
    tool = mcp_tool(mcp_server, "always")
    user = {"role": "user", "content": 'CALL lookup_order {"order_id": "D4"}'}
    first, _ = post(lhttp, {"model": "chat-fast", "input": [user], "tools": [tool], "store": False})
    request = first["output"][-1]
    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    second, _ = post(
        lhttp,
        {"model": "chat-fast", "input": [user, *first["output"], approval], "tools": [tool], "store": False},
    )
    assert kinds(second) == ["mcp_call", "message"], "the listing is in the history sent back"
    assert mcp_server.tool_calls == [("lookup_order", {"order_id": "D4"})]


def test_bad_approval_response_is_400(lhttp):
    body = {
        "model": "chat-fast",
        "input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1"}],
    }
    response = lhttp.post("/v1/responses", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "input[0].approve"


def test_agents_sdk_hosted_mcp_tool_with_an_approval_callback(
    loop_server, scripted: ScriptedUpstream, mcp_server
):
    """The OpenAI Agents SDK's ``HostedMCPTool``: its callback answers the approval request and the
    run goes on through the server to the model's final answer."""
    import asyncio

    from agents import Agent, HostedMCPTool, OpenAIResponsesModel, RunConfig, Runner
    from openai import AsyncOpenAI

    mcp_server.tool_calls.clear()
    asked: list[str] = []

    def approve(request: Any) -> dict[str, Any]:
        asked.append(request.data.name)
        return {"approve": True}

    async def run() -> Any:
        client = AsyncOpenAI(base_url=loop_server.url + "/v1", api_key="unused", max_retries=0)
        model = OpenAIResponsesModel(model="chat-fast", openai_client=client)
        tool = HostedMCPTool(tool_config=mcp_tool(mcp_server, "always"), on_approval_request=approve)
        agent = Agent(name="orders", instructions="Answer about orders.", model=model, tools=[tool])
        # No tracing export: there is no network here.
        config = RunConfig(tracing_disabled=True)
        return await Runner.run(agent, 'CALL lookup_order {"order_id": "E5"}', run_config=config)

    result = asyncio.run(run())
    assert asked == ["lookup_order"]
    assert mcp_server.tool_calls == [("lookup_order", {"order_id": "E5"})]
    assert "shipped" in result.final_output
