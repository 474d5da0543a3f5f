"""Tool types beyond ``function`` through the running server, for every provider family.

Codex CLI's tools (function tools, a ``namespace`` of function tools, ``web_search``), ``custom``
tools with a grammar, and the OpenAI-hosted types: what each upstream is sent, and the output
items the client gets back (what OpenAI's API would return), streamed and not.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.support.api import create
from tests.support.spec import assert_valid_error, assert_valid_event, assert_valid_response
from tests.support.sse import parse_sse
from tests.support.upstream import Reply
from tests.support.wire import ALL_WIRES, OpenAIWire, Wire

SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a shell command and returns its output.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
        "required": ["command"],
        "additionalProperties": False,
    },
}
NAMESPACE = {
    "type": "namespace",
    "name": "mcp__github",
    "description": "Tools of the github MCP server.",
    "tools": [
        {
            "type": "function",
            "name": "get_issue",
            "description": "Fetch an issue",
            "strict": False,
            "parameters": {"type": "object", "properties": {"number": {"type": "integer"}}},
        }
    ],
}
WEB_SEARCH = {"type": "web_search", "external_web_access": False}
GRAMMAR = {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files", "format": GRAMMAR}
PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hello\n*** End Patch"
# What Codex CLI sends on its first request (the fields this server knows).
CODEX_BODY = {
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Issue 7?"}]}],
    "tools": [SHELL, NAMESPACE, WEB_SEARCH],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
}
OPENAI = OpenAIWire()
OTHERS = [w for w in ALL_WIRES if w.provider != "openai"]
modes = pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
wires = pytest.mark.parametrize("wire", ALL_WIRES, ids=lambda w: w.provider)


def openai_call(item: dict, *, stream: bool, delta_type: str, field: str) -> Reply:
    """An OpenAI Responses answer with one call item as OpenAI sends it (namespaced or custom)."""
    item = {
        "id": "fc_" + secrets.token_hex(8),
        "status": "completed",
        "call_id": "call_" + secrets.token_hex(8),
        **item,
    }
    if not stream:
        return Reply.json(OPENAI._response([item]))
    deltas = [{"type": delta_type, "delta": item[field][:5]}, {"type": delta_type, "delta": item[field][5:]}]
    return OPENAI._stream([(item, deltas)])


def assert_valid_beyond_the_spec(resource: dict) -> None:
    """The resource is spec-valid but for what OpenAI has and the Open Responses document lacks:
    tools other than ``function`` (echoed as sent) and ``custom_tool_call`` items."""
    assert_valid_response(
        {
            **resource,
            "tools": [t for t in resource["tools"] if t["type"] == "function"],
            "output": [i for i in resource["output"] if i["type"] != "custom_tool_call"],
        }
    )


def post(http, body: dict, streamed: bool) -> tuple[dict, list[dict]]:
    """The final resource and the events, validated against the spec as far as it reaches.

    ``custom_tool_call`` items and their ``response.custom_tool_call_input.*`` events are OpenAI's,
    outside the Open Responses document: they are checked by the tests themselves.
    """
    if not streamed:
        response = http.post("/v1/responses", json=body)
        assert response.status_code == 200, response.text
        assert_valid_beyond_the_spec(response.json())
        return response.json(), []
    with http.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        raw = response.read().decode()
    events, done = parse_sse(raw)
    assert done
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        if "response" in event:
            assert_valid_beyond_the_spec(event["response"])
        elif (event.get("item") or {}).get("type") == "custom_tool_call":
            assert event["type"] in ("response.output_item.added", "response.output_item.done")
        elif not event["type"].startswith("response.custom_tool_call_input."):
            assert_valid_event(event)
    return events[-1]["response"], events


def sent_tools(wire: Wire, body: dict) -> list:
    if wire.provider == "openai":
        return [t.get("name") or t["type"] for t in body.get("tools") or []]
    return wire.tool_names(body)


# --------------------------------------------------------------------------- namespace (Codex CLI)


@modes
@wires
def test_codex_namespace_call_comes_back_with_its_namespace(http, upstream, wire, streamed):
    if wire.provider == "openai":
        item = {
            "type": "function_call",
            "name": "get_issue",
            "namespace": "mcp__github",
            "arguments": '{"number": 7}',
        }
        upstream.queue(
            openai_call(
                item, stream=streamed, delta_type="response.function_call_arguments.delta", field="arguments"
            )
        )
    else:
        upstream.queue(wire.tool_call("mcp__github__get_issue", {"number": 7}, stream=streamed))
    body = {"model": wire.model, **CODEX_BODY}
    resource, _ = post(http, body, streamed)
    assert resource["status"] == "completed", resource["error"]
    [call] = [i for i in resource["output"] if i["type"] == "function_call"]
    assert (call["name"], call["namespace"], json.loads(call["arguments"])) == (
        "get_issue",
        "mcp__github",
        {"number": 7},
    )
    first = upstream.requests[0].json()
    if wire.provider == "openai":
        assert first["tools"][1] == NAMESPACE and first["tools"][2] == WEB_SEARCH, "passed through"
    else:
        expected = ["shell", "mcp__github__get_issue"] + (
            ["web_search"] if wire.provider == "anthropic" else []
        )
        assert sent_tools(wire, first) == expected, (
            "flattened; web_search mapped or omitted (see test_web_search)"
        )

    # Codex answers with store: false, so it sends the call back itself, namespace included.
    upstream.queue(wire.text("Issue 7 is about the login page.", stream=streamed))
    follow = {
        **body,
        "input": [*CODEX_BODY["input"], {k: v for k, v in call.items() if k not in ("id", "status")}]
        + [{"type": "function_call_output", "call_id": call["call_id"], "output": "Login page broken"}],
    }
    second, _ = post(http, follow, streamed)
    assert second["status"] == "completed", second["error"]
    resent = upstream.requests[1].json()
    assert wire.tool_results(resent) == ["Login page broken"], "the output is matched to its call"
    if wire.provider == "openai":
        assert [i.get("namespace") for i in resent["input"] if i.get("type") == "function_call"] == [
            "mcp__github"
        ]


# --------------------------------------------------------------------------- custom tools


@modes
@wires
def test_custom_tool_call_comes_back_as_custom_tool_call(http, upstream, wire, streamed):
    if wire.provider == "openai":
        item = {"type": "custom_tool_call", "name": "apply_patch", "input": PATCH}
        upstream.queue(
            openai_call(
                item, stream=streamed, delta_type="response.custom_tool_call_input.delta", field="input"
            )
        )
    else:
        upstream.queue(wire.tool_call("apply_patch", {"input": PATCH}, stream=streamed))
    body = {"model": wire.model, "input": "Add a.txt", "tools": [SHELL, APPLY_PATCH]}
    resource, events = post(http, body, streamed)
    assert resource["status"] == "completed", resource["error"]
    [call] = [i for i in resource["output"] if i["type"] == "custom_tool_call"]
    assert call["name"] == "apply_patch" and call["input"] == PATCH and call["status"] == "completed"
    assert call["id"].startswith("ctc_") and call["call_id"]
    if streamed:
        [added] = [
            e
            for e in events
            if e["type"] == "response.output_item.added" and e["item"]["type"] == "custom_tool_call"
        ]
        assert added["item"]["input"] == "" and added["item"]["status"] == "in_progress"
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta")
        [done] = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
        assert deltas == PATCH and done["input"] == PATCH
    sent = upstream.requests[0].json()
    if wire.provider == "openai":
        assert sent["tools"][1] == APPLY_PATCH, "the grammar reaches OpenAI as it is"
    else:
        assert sent_tools(wire, sent) == ["shell", "apply_patch"]
        assert json.dumps(GRAMMAR["definition"])[1:-1] in json.dumps(sent), (
            "the grammar is in the function's description"
        )

    upstream.queue(wire.text("Added.", stream=streamed))
    follow = {
        "model": wire.model,
        "previous_response_id": resource["id"],
        "input": [{"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done."}],
        "tools": [SHELL, APPLY_PATCH],
    }
    second, _ = post(http, follow, streamed)
    assert second["status"] == "completed", second["error"]
    resent = upstream.requests[1].json()
    if wire.provider == "openai":
        kinds = [
            (i["type"], i.get("input") or i.get("output")) for i in resent["input"] if "call" in i["type"]
        ]
        assert kinds == [("custom_tool_call", PATCH), ("custom_tool_call_output", "Done.")]
    else:
        assert wire.tool_results(resent) == ["Done."]


def test_custom_tool_call_output_in_input_is_validated(http):
    body = {"model": "mock-1", "input": [{"type": "custom_tool_call_output", "output": "x"}]}
    error = create(http, body, expect=400)["error"]
    assert error["param"] == "input[0].call_id"


# --------------------------------------------------------------------------- web search and hosted types


@pytest.mark.parametrize("kind", ["web_search", "web_search_preview"])
@wires
def test_web_search_is_mapped_to_the_providers_search_or_omitted(http, upstream, wire, kind):
    """OpenAI takes it as it is, Anthropic as its web search server tool, Gemini as Google Search
    grounding (``tests/api/test_web_search_e2e.py`` covers their answers); Ollama, Chat Completions
    and a provider whose ``web_search`` option is off (``zai`` here) leave it out."""
    upstream.queue(wire.text("From what I know: sunny.", stream=False))
    resource, _ = post(
        http, {"model": wire.model, "input": "Weather?", "tools": [SHELL, {"type": kind}]}, False
    )
    assert resource["status"] == "completed"
    assert resource["tools"][1] == {"type": kind}, "echoed as sent"
    sent = upstream.requests[0].json()
    if wire.provider == "openai":
        assert sent["tools"][1] == {"type": kind}
    elif wire.provider == "anthropic":
        assert sent["tools"][1] == {"type": "web_search_20250305", "name": "web_search"}
    elif wire.provider == "gemini":
        assert sent["tools"][1] == {"google_search": {}} and sent_tools(wire, sent) == ["shell"]
    else:
        assert sent_tools(wire, sent) == ["shell"]


@pytest.mark.parametrize(
    "kind", ["file_search", "code_interpreter", "local_shell", "apply_patch", "image_generation"]
)
@modes
def test_openai_only_types_are_400_elsewhere_and_forwarded_to_openai(http, upstream, kind, streamed):
    body = {"model": OTHERS[0].model, "input": "x", "tools": [SHELL, {"type": kind}]}
    response = http.post("/v1/responses", json={**body, "stream": streamed})
    assert response.status_code == 400, response.text
    assert_valid_error(response.json())
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", "tools[1].type")
    assert upstream.requests == [], "nothing was sent"
    upstream.queue(OPENAI.text("ok", stream=False))
    post(http, {**body, "model": OPENAI.model}, False)
    assert upstream.requests[0].json()["tools"][1] == {"type": kind}


@modes
def test_openai_hosted_tool_items_are_relayed_and_sent_back(http, upstream, streamed):
    """OpenAI's own tool items (a search it ran, a local shell call for the client) reach the client
    as OpenAI sent them; sent back (as Codex does with store: false) they go to OpenAI only."""
    search = {
        "id": "ws_" + secrets.token_hex(8),
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "weather Paris"},
    }
    shell = {
        "id": "lsh_" + secrets.token_hex(8),
        "type": "local_shell_call",
        "status": "completed",
        "call_id": "call_" + secrets.token_hex(8),
        "action": {"type": "exec", "command": ["ls"], "env": {}},
    }
    message = OPENAI._message("Sunny; listing files.")
    if streamed:
        text = message["content"][0]["text"]
        deltas = [{"type": "response.output_text.delta", "content_index": 0, "delta": text, "logprobs": []}]
        upstream.queue(OPENAI._stream([(search, []), (message, deltas), (shell, [])]))
    else:
        upstream.queue(Reply.json(OPENAI._response([search, message, shell])))
    body = {"model": OPENAI.model, "input": "Weather?", "tools": [WEB_SEARCH, {"type": "local_shell"}]}
    resource, events = post_openai_items(http, body, streamed)
    kinds = [i["type"] for i in resource["output"]]
    assert kinds == ["web_search_call", "message", "local_shell_call"], kinds
    assert resource["output"][0] == search and resource["output"][2] == shell, "relayed as they are"
    if streamed:
        done = [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"]
        assert done == kinds

    replay = [{k: v for k, v in i.items() if k != "id"} for i in resource["output"]]
    output = {"type": "local_shell_call_output", "call_id": shell["call_id"], "output": "a.txt"}
    upstream.queue(OPENAI.text("Done.", stream=False))
    follow = {"model": OPENAI.model, "input": ["Weather?", *replay, output], "tools": body["tools"]}
    follow["input"][0] = {"role": "user", "content": "Weather?"}
    post_openai_items(http, follow, False)
    resent = [i["type"] for i in upstream.requests[1].json()["input"]]
    assert resent == ["message", "web_search_call", "message", "local_shell_call", "local_shell_call_output"]

    anthropic = next(w for w in OTHERS if w.provider == "anthropic")
    upstream.queue(anthropic.text("Done.", stream=False))
    post(http, {**follow, "model": anthropic.model, "tools": [SHELL]}, False)
    assert anthropic.roles(upstream.requests[2].json()) == ["user", "assistant"], "OpenAI's items left out"


def post_openai_items(http, body: dict, streamed: bool) -> tuple[dict, list[dict]]:
    """Like :func:`post`, for answers holding OpenAI's own tool items (outside the document)."""
    if not streamed:
        response = http.post("/v1/responses", json=body)
        assert response.status_code == 200, response.text
        return response.json(), []
    with http.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        events, done = parse_sse(response.read().decode())
    assert done and [e["sequence_number"] for e in events] == list(range(len(events)))
    return events[-1]["response"], events
