"""Tool types beyond ``function`` and ``mcp``: one request transform before the adapter, one
reverse map on the way back.

An adapter declares the OpenAI tool types its provider takes as they are
(``native_tool_types``, only the OpenAI Responses adapter today). For every other adapter the
request is rewritten here, so adapters only ever see ``function`` tools and
``function_call``/``function_call_output`` items:

* ``namespace``: its function (and custom) tools are offered flattened, as
  ``<namespace>__<name>`` (shortened with a digest past 64 characters); a call comes back as
  OpenAI returns it, the function's own ``name`` plus a ``namespace`` field.
* ``custom`` (free-form input, optional grammar): a function with one string argument,
  ``input``, the grammar quoted in its description; a call comes back as a ``custom_tool_call``
  item and a ``custom_tool_call_output`` in the input goes back as the function's output.
* ``web_search`` / ``web_search_preview`` (and their dated names): handed to adapters that run
  the provider's own search (they list them in ``native_tool_types``: Anthropic's web search
  server tool, Gemini's Google Search grounding), whose ``web_search_call`` items then go back to
  them in the history; left out of what the model sees elsewhere (the model answers from what it
  knows; a client offering it loses nothing else).
* ``tool_search``: left out where not native (deferred tools are offered directly).
* the OpenAI-hosted tools that need OpenAI's infrastructure or a client-side executor OpenAI
  defines (``file_search``, ``code_interpreter``, ``image_generation``, ``computer_use_preview``,
  ``computer``, ``local_shell``, ``shell``, ``apply_patch``, ``programmatic_tool_calling``):
  refused with ``400 unsupported_parameter`` naming the tool.

The table per type and provider family is in ``docs/providers.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from providers_app.adapters.base import UnsupportedParameter
from responses_app.openai_tools import (
    CALL_TYPES,
    CUSTOM_ARGUMENT,
    NATIVE_ONLY_TYPES,
    OMITTED_TYPES,
    PROVIDER_ITEM_TYPES,
    TOOL_TYPES,
    WEB_SEARCH_TYPES,
    custom_input,
)

__all__ = [
    "CALL_TYPES",
    "CUSTOM_ARGUMENT",
    "NATIVE_ONLY_TYPES",
    "OMITTED_TYPES",
    "PROVIDER_ITEM_TYPES",
    "TOOL_TYPES",
    "WEB_SEARCH_TYPES",
    "CallShape",
    "ToolPlan",
    "custom_input",
    "flat_name",
    "mcp_error",
    "mcp_model_items",
    "native_tool_types",
    "plan_tools",
]

NAMESPACE_SEPARATOR = "__"
MAX_NAME = 64


def native_tool_types(adapter: Any) -> frozenset[str]:
    """The OpenAI tool types ``adapter``'s provider takes as they are (none unless it says so)."""
    return frozenset(getattr(adapter, "native_tool_types", ()) or ())


def flat_name(namespace: str, name: str) -> str:
    """The single name a namespaced tool is offered under, where a provider has no namespaces.

    Deterministic (a later turn's history maps to the same name) and at most 64 characters.
    """
    joined = f"{namespace}{NAMESPACE_SEPARATOR}{name}"
    if len(joined) <= MAX_NAME:
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:8]
    return f"{joined[: MAX_NAME - 9]}_{digest}"


@dataclass(frozen=True)
class CallShape:
    """What a call the model made under a translated name is, for the client."""

    item_type: str  # "function_call", "custom_tool_call" or "mcp_call"
    name: str
    namespace: str | None = None  # for "mcp_call": the server label


def custom_as_function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    """A custom tool as a function taking its free-form input as one string argument."""
    description = tool.get("description") or ""
    fmt = tool.get("format") or {}
    hint = f"Put the tool's whole free-form input in the '{CUSTOM_ARGUMENT}' string."
    if fmt.get("type") == "grammar":
        hint += (
            f" The input must be valid in this {fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
        )
    return {
        "type": "function",
        "name": name,
        "description": f"{description}\n\n{hint}".strip(),
        "parameters": {
            "type": "object",
            "properties": {CUSTOM_ARGUMENT: {"type": "string", "description": "The free-form input."}},
            "required": [CUSTOM_ARGUMENT],
            "additionalProperties": False,
        },
        "strict": None,
    }


def _function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


@dataclass(slots=True)  # (one per open loop: no instance dict)
class ToolPlan:
    """The tools one provider is shown, and how to read its calls back.

    ``tools``: the request's tools other than ``function`` and ``mcp`` (the loop offers those), as
    the provider takes them. ``calls``: model-facing name -> what the call is, for translated names.
    """

    native: frozenset[str] = frozenset()
    tools: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, CallShape] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)
    #: A namespaced tool's own name -> the flattened names it is offered under (for ``tool_choice``).
    flattened: dict[str, list[str]] = field(default_factory=dict)
    #: Names of the request's top-level function tools.
    plain: set[str] = field(default_factory=set)
    #: MCP tools: the name the model knows -> (server label, the tool's name on the server).
    mcp: dict[str, tuple[str, str]] = field(default_factory=dict)

    # ---- requests

    def model_name(self, name: str, namespace: str | None = None) -> str:
        """The name the provider knows a client tool by."""
        if namespace and "namespace" not in self.native:
            return flat_name(namespace, name)
        return name

    def model_tool_choice(self, choice: Any, has_tools: bool) -> Any:
        """``tool_choice`` in the provider's terms (omitted tools cannot be forced: ``auto``)."""
        if isinstance(choice, str):
            return choice if has_tools or choice == "none" else "auto"
        if not isinstance(choice, dict):
            return choice
        kind = choice.get("type")
        if kind in self.native:
            return choice
        if kind in ("function", "custom"):
            names = self._choice_names(choice["name"])
            if len(names) == 1:
                return {"type": "function", "name": names[0]}
            return {
                "type": "allowed_tools",
                "tools": [{"type": "function", "name": n} for n in names],
                "mode": "required",
            }
        if kind == "allowed_tools":
            if "custom" in self.native:
                return choice
            names = [
                {"type": "function", "name": name}
                for t in choice.get("tools") or []
                if t.get("type") in ("function", "custom") and t.get("name")
                for name in self._choice_names(t["name"])
            ]
            if not names:
                return "auto" if choice.get("mode") != "none" else "none"
            return {"type": "allowed_tools", "tools": names, "mode": choice.get("mode") or "auto"}
        if kind in OMITTED_TYPES:
            return "auto"
        return choice

    def _choice_names(self, name: str) -> list[str]:
        """The model-facing names a ``tool_choice`` naming ``name`` means (a top-level tool wins)."""
        if name in self.flattened and name not in self._top_level:
            return self.flattened[name]
        return [name]

    @property
    def _top_level(self) -> set[str]:
        return {n for n, shape in self.calls.items() if shape.namespace is None} | self.plain

    def model_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """History items in the provider's terms (custom calls as function calls, names flattened,
        MCP items as the function calls and outputs the model made and read)."""
        if any(str(i.get("type", "")).startswith("mcp_") for i in items):
            items = mcp_model_items(items, self.mcp_model_name)
        if {"namespace", "custom"} <= self.native:
            return items
        out = []
        for item in items:
            kind = item.get("type")
            if kind in PROVIDER_ITEM_TYPES and not (
                kind == "web_search_call" and self.native & WEB_SEARCH_TYPES
            ):
                continue  # another provider's own tool items mean nothing here (searches: the adapter decides)
            if kind == "function_call" and item.get("namespace") and "namespace" not in self.native:
                flat = flat_name(item["namespace"], item["name"])
                item = {k: v for k, v in item.items() if k != "namespace"}
                item["name"] = flat
            elif kind == "custom_tool_call" and "custom" not in self.native:
                converted = {
                    "type": "function_call",
                    "id": item.get("id"),
                    "call_id": item.get("call_id"),
                    "name": self.model_name(item.get("name") or "", item.get("namespace")),
                    "arguments": json.dumps({CUSTOM_ARGUMENT: item.get("input") or ""}),
                    "status": item.get("status") or "completed",
                }
                if "_meta" in item:
                    converted["_meta"] = item["_meta"]
                item = converted
            elif kind == "custom_tool_call_output" and "custom" not in self.native:
                item = {**item, "type": "function_call_output"}
            out.append(item)
        return out

    # ---- answers

    def call_shape(self, model_name: str) -> CallShape | None:
        """What a call under ``model_name`` is for the client (None: a plain function call)."""
        if model_name in self.mcp:
            label, name = self.mcp[model_name]
            return CallShape("mcp_call", name, label)
        return self.calls.get(model_name)

    def mcp_model_name(self, server_label: str, name: str) -> str:
        """The name the model knows an MCP tool by (one no longer offered: a stable made-up name)."""
        for model_name, key in self.mcp.items():
            if key == (server_label, name):
                return model_name
        return flat_name(server_label, name)


def mcp_model_items(items: list[dict[str, Any]], model_name: Any) -> list[dict[str, Any]]:
    """MCP items as the model made and read them: an ``mcp_call`` is its function call and output,
    a declined ``mcp_approval_request`` a call answered with the refusal; a listing, a pending
    request and the approvals themselves are not the model's."""
    made = {i.get("approval_request_id") for i in items if i.get("type") == "mcp_call"}
    answers = {i.get("approval_request_id"): i for i in items if i.get("type") == "mcp_approval_response"}
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind in ("mcp_list_tools", "mcp_approval_response"):
            continue
        if kind == "mcp_approval_request":
            answer = answers.get(item["id"])
            if item["id"] in made or answer is None or answer.get("approve"):
                continue  # made (its mcp_call stands for it), or still pending
            reason = answer.get("reason")
            output = "The user declined this tool call." + (f" Reason: {reason}" if reason else "")
            out += _call_pair(item, model_name, item["id"], output)
        elif kind == "mcp_call":
            error = item.get("error")
            if error is not None:
                output = json.dumps({"error": mcp_error_text(error)})
            else:
                output = item.get("output") or ""
            out += _call_pair(item, model_name, item["id"], output)
        else:
            out.append(item)
    return out


def _call_pair(item: dict[str, Any], model_name: Any, call_id: str, output: str) -> list[dict[str, Any]]:
    call = {
        "type": "function_call",
        "id": item["id"],
        "call_id": call_id,
        "name": model_name(item.get("server_label") or "", item.get("name") or ""),
        "arguments": item.get("arguments") or "{}",
        "status": "completed",
    }
    if "_meta" in item:
        call["_meta"] = item["_meta"]
    result = {
        "type": "function_call_output",
        "id": item["id"] + "_output",
        "call_id": call_id,
        "output": output,
    }
    return [call, {**result, "status": "completed"}]


def mcp_error(message: str) -> dict[str, Any]:
    """An ``mcp_call`` item's ``error`` (OpenAI's ``mcp_tool_execution_error`` shape)."""
    return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": message}]}


def mcp_error_text(error: Any) -> str:
    if isinstance(error, dict):
        texts = [c.get("text") or "" for c in error.get("content") or [] if isinstance(c, dict)]
        return " ".join(t for t in texts if t) or str(error.get("message") or "The MCP tool failed.")
    return str(error)


def plan_tools(tools: list[dict[str, Any]], native: frozenset[str] | set[str]) -> ToolPlan:
    """The plan for a request's ``tools`` (as validated) and a provider taking ``native`` types."""
    plan = ToolPlan(native=frozenset(native))
    for index, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "function":
            plan.plain.add(tool["name"])
            continue
        if kind == "mcp":
            continue
        if kind in plan.native:
            plan.tools.append(tool)
            continue
        if kind == "namespace":
            for inner in tool.get("tools") or []:
                name = flat_name(tool["name"], inner["name"])
                plan.flattened.setdefault(inner["name"], []).append(name)
                if inner.get("type") == "custom":
                    plan.tools.append(custom_as_function(inner, name))
                    plan.calls[name] = CallShape("custom_tool_call", inner["name"], tool["name"])
                else:
                    plan.tools.append(_function(inner, name))
                    plan.calls[name] = CallShape("function_call", inner["name"], tool["name"])
        elif kind == "custom":
            plan.tools.append(custom_as_function(tool, tool["name"]))
            plan.calls[tool["name"]] = CallShape("custom_tool_call", tool["name"])
        elif kind in OMITTED_TYPES:
            plan.omitted.append(kind)
        else:
            raise UnsupportedParameter(
                f"tools[{index}].type",
                f"Tool type '{kind}' needs a provider that runs it itself (OpenAI's Responses API); "
                "this model's provider cannot honour it.",
            )
    return plan
