"""The tool-type transform (pure, no server): what each provider is shown and how calls come back."""

from __future__ import annotations

import json

import pytest

from providers_app.adapters.base import Finish, ToolCallDelta, ToolCallStart, UnsupportedParameter
from providers_app.adapters.openai_responses import NATIVE_TOOL_TYPES
from responses_app.api.validation import normalize_tool_choice, normalize_tools
from responses_app.errors import ApiError
from responses_app.events.emitter import ResponseEmitter
from responses_app.loop.tool_types import (
    CUSTOM_ARGUMENT,
    NATIVE_ONLY_TYPES,
    custom_input,
    flat_name,
    plan_tools,
)
from tests.loop.test_coalescing import ListSink

SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Run a command",
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
    },
    "strict": False,
}
# The shape Codex CLI sends (codex-rs ResponsesApiNamespace: name, description, function tools).
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
        },
        {"type": "custom", "name": "patch", "description": "Apply a patch"},
    ],
}
GRAMMAR = {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files", "format": GRAMMAR}
WEB_SEARCH = {"type": "web_search", "external_web_access": False}


def tools(*raw: dict) -> list[dict]:
    return normalize_tools(list(raw), frozenset())


def test_flat_name_is_deterministic_and_fits() -> None:
    assert flat_name("crm", "get") == "crm__get"
    long = flat_name("n" * 40, "f" * 40)
    assert len(long) == 64 and long == flat_name("n" * 40, "f" * 40)
    assert long != flat_name("n" * 40, "f" * 39 + "g"), "a digest keeps long names apart"


def test_translated_for_a_provider_without_namespaces_or_custom_tools() -> None:
    plan = plan_tools(tools(SHELL, NAMESPACE, APPLY_PATCH, WEB_SEARCH), frozenset())
    names = [t["name"] for t in plan.tools]
    assert names == ["mcp__github__get_issue", "mcp__github__patch", "apply_patch"]
    assert all(t["type"] == "function" for t in plan.tools)
    assert plan.tools[0]["parameters"] == NAMESPACE["tools"][0]["parameters"]
    patch = plan.tools[2]
    assert patch["parameters"]["required"] == [CUSTOM_ARGUMENT]
    assert GRAMMAR["definition"] in patch["description"] and patch["description"].startswith("Edit files")
    assert plan.omitted == ["web_search"]
    assert plan.call_shape("mcp__github__get_issue").namespace == "mcp__github"
    assert plan.call_shape("mcp__github__patch").item_type == "custom_tool_call"
    assert plan.call_shape("apply_patch").item_type == "custom_tool_call"
    assert plan.call_shape("shell") is None, "plain functions keep their name"
    assert plan.call_shape("never_offered") is None


def test_native_provider_gets_the_tools_as_sent() -> None:
    sent = tools(SHELL, NAMESPACE, APPLY_PATCH, WEB_SEARCH)
    plan = plan_tools(sent, NATIVE_TOOL_TYPES)
    assert plan.tools == sent[1:] and plan.calls == {} and plan.omitted == []


@pytest.mark.parametrize("kind", sorted(NATIVE_ONLY_TYPES))
def test_types_only_openai_runs_are_refused_elsewhere(kind: str) -> None:
    with pytest.raises(UnsupportedParameter) as raised:
        plan_tools(tools(SHELL, {"type": kind}), frozenset())
    assert raised.value.param == "tools[1].type" and raised.value.status == 400
    assert plan_tools(tools({"type": kind}), NATIVE_TOOL_TYPES).tools == [{"type": kind}]


def test_search_tools_are_left_out_where_not_native() -> None:
    search = {"type": "tool_search", "execution": "client", "description": "Find tools", "parameters": {}}
    plan = plan_tools(tools(SHELL, WEB_SEARCH, {"type": "web_search_preview"}, search), frozenset())
    assert plan.tools == [] and plan.omitted == ["web_search", "web_search_preview", "tool_search"]
    assert plan.model_tool_choice("required", False) == "auto", "nothing to force"


def test_history_items_in_the_provider_terms() -> None:
    plan = plan_tools(tools(NAMESPACE, APPLY_PATCH), frozenset())
    items = [
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "c1",
            "name": "get_issue",
            "arguments": "{}",
            "namespace": "mcp__github",
            "status": "completed",
        },
        {
            "type": "custom_tool_call",
            "id": "ctc_1",
            "call_id": "c2",
            "name": "apply_patch",
            "input": "*** Begin",
            "status": "completed",
            "_meta": {"provider": "gemini", "thought_signature": "sig"},
        },
        {
            "type": "custom_tool_call_output",
            "id": "o2",
            "call_id": "c2",
            "output": "Done",
            "status": "completed",
        },
    ]
    call, custom, output = plan.model_items(items)
    assert call["name"] == "mcp__github__get_issue" and "namespace" not in call
    assert custom["type"] == "function_call" and custom["name"] == "apply_patch"
    assert json.loads(custom["arguments"]) == {CUSTOM_ARGUMENT: "*** Begin"}
    assert custom["_meta"]["thought_signature"] == "sig", "provider artefacts ride along"
    assert output["type"] == "function_call_output" and output["output"] == "Done"
    assert plan_tools(tools(NAMESPACE), NATIVE_TOOL_TYPES).model_items(items) == items


def test_tool_choice_in_the_provider_terms() -> None:
    sent = tools(SHELL, NAMESPACE, APPLY_PATCH, WEB_SEARCH)
    plan = plan_tools(sent, frozenset())
    choice = normalize_tool_choice({"type": "custom", "name": "apply_patch"}, sent)
    assert plan.model_tool_choice(choice, True) == {"type": "function", "name": "apply_patch"}
    choice = normalize_tool_choice({"type": "function", "name": "get_issue"}, sent)
    assert plan.model_tool_choice(choice, True) == {"type": "function", "name": "mcp__github__get_issue"}
    choice = normalize_tool_choice({"type": "web_search"}, sent)
    assert plan.model_tool_choice(choice, True) == "auto", "an omitted tool cannot be forced"
    allowed = normalize_tool_choice(
        {
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "custom", "name": "apply_patch"}, {"type": "web_search"}],
        },
        sent,
    )
    assert plan.model_tool_choice(allowed, True) == {
        "type": "allowed_tools",
        "tools": [{"type": "function", "name": "apply_patch"}],
        "mode": "required",
    }
    assert plan_tools(sent, NATIVE_TOOL_TYPES).model_tool_choice(allowed, True) == allowed


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"type": "namespace", "name": "n", "tools": []}, "tools[0].tools"),
        ({"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}, "tools[0].tools[0].type"),
        ({"type": "namespace", "name": "bad name", "tools": [SHELL]}, "tools[0].name"),
        (
            {
                "type": "custom",
                "name": "c",
                "format": {"type": "grammar", "syntax": "ebnf", "definition": "x"},
            },
            "tools[0].format.syntax",
        ),
        ({"type": "custom"}, "tools[0].name"),
        ({"type": "teleport"}, "tools[0].type"),
    ],
)
def test_bad_tools_are_400_naming_the_param(raw: dict, param: str) -> None:
    with pytest.raises(ApiError) as raised:
        tools(raw)
    assert raised.value.param == param


def test_custom_input_reads_our_argument_or_keeps_the_raw_text() -> None:
    assert custom_input(json.dumps({CUSTOM_ARGUMENT: "a\nb"})) == "a\nb"
    assert custom_input("not json") == "not json"
    assert custom_input('{"other": 1}') == '{"other": 1}'


def _emit(*chunks, tool_map=None) -> tuple[list[dict], list[dict]]:
    sink = ListSink()
    emitter = ResponseEmitter({"id": "resp_x", "output": [], "usage": None}, sink)
    emitter.tool_map = tool_map
    for chunk in chunks:
        emitter.feed(chunk)
    return sink.events, emitter.output


def test_emitter_maps_a_translated_custom_call_back() -> None:
    plan = plan_tools(tools(APPLY_PATCH), frozenset())
    arguments = json.dumps({CUSTOM_ARGUMENT: "*** Begin Patch\n*** End Patch"})
    events, output = _emit(
        ToolCallStart("call_1", "apply_patch"),
        ToolCallDelta(arguments[:9]),
        ToolCallDelta(arguments[9:]),
        Finish("tool_calls"),
        tool_map=plan,
    )
    [item] = output
    assert item["type"] == "custom_tool_call" and item["id"].startswith("ctc_")
    assert item["input"] == "*** Begin Patch\n*** End Patch" and item["status"] == "completed"
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert events[0]["item"]["input"] == "" and events[2]["input"] == item["input"]


def test_emitter_maps_a_flattened_call_back_to_its_namespace() -> None:
    plan = plan_tools(tools(NAMESPACE), frozenset())
    _events, output = _emit(
        ToolCallStart("call_1", "mcp__github__get_issue"),
        ToolCallDelta('{"number": 7}'),
        Finish("tool_calls"),
        tool_map=plan,
    )
    [item] = output
    assert (item["type"], item["name"], item["namespace"]) == ("function_call", "get_issue", "mcp__github")


def test_emitter_takes_native_custom_and_namespaced_calls_as_they_are() -> None:
    events, output = _emit(
        ToolCallStart("call_1", "apply_patch", custom=True),
        ToolCallDelta("*** Begin"),
        ToolCallDelta(" Patch"),
        ToolCallStart("call_2", "get_issue", namespace="mcp__github"),
        ToolCallDelta("{}"),
        Finish("tool_calls"),
    )
    assert output[0]["type"] == "custom_tool_call" and output[0]["input"] == "*** Begin Patch"
    assert [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"] == [
        "*** Begin",
        " Patch",
    ]
    assert output[1]["namespace"] == "mcp__github" and output[1]["name"] == "get_issue"
