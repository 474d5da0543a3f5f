"""A scripted upstream that acts like a small agent, in each provider's own wire format.

Served by :class:`tests.support.upstream.FakeUpstream` as its handler. Every request is answered
from what it carries, so the same agent serves every client and every provider family:

* first turn: if a shell-like function tool is offered (Codex's ``exec_command``/``shell``, or a
  test's own ``shell``), call it once with :data:`COMMAND`, its arguments filled in from the tool's
  JSON schema;
* a turn that carries a tool result: answer with text that quotes it (:data:`QUOTE` + output);
* anything else: a plain text answer (:data:`PLAIN`).

The wire formats themselves come from :mod:`tests.support.wire`, the scripted replies the rest of
the suite uses.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.support.upstream import Recorded, Reply
from tests.support.wire import AnthropicWire, ChatWire, GeminiWire, OllamaWire, OpenAIWire, Wire

#: What the agent runs. Its output (``clients-42``) never appears in any request before the tool ran.
COMMAND = "echo clients-$((6*7))"
QUOTE = "The tool printed: "
PLAIN = "Hello from the scripted agent."

#: Tool names the agent prefers, in order; failing those, the first name with one of the hints.
PREFERRED = ("exec_command", "shell_command", "shell", "local_shell", "run_shell_command")
HINTS = ("shell", "exec", "command", "run")


class _AnthropicAgentWire(AnthropicWire):
    """Anthropic tool calls without the text block the suite's wire data puts before them.

    The agent acts alike in every family: a turn is a tool call or text, never both. (pydantic-ai's
    ``run_stream`` takes the first text of a turn as the final answer and stops there, whichever
    provider it talks to.)
    """

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        block = {"type": "tool_use", "id": "toolu_01" + secrets.token_hex(11), "name": name}
        if not stream:
            return Reply.json(self._message([{**block, "input": args}], "tool_use"))
        arguments = json.dumps(args)
        deltas = [
            {"type": "input_json_delta", "partial_json": arguments[i : i + 7]}
            for i in range(0, len(arguments), 7)
        ]
        return self._stream([({**block, "input": {}}, deltas)], "tool_use")


OPENAI, CHAT, ANTHROPIC, GEMINI, OLLAMA = (
    OpenAIWire(),
    ChatWire(),
    _AnthropicAgentWire(),
    GeminiWire(),
    OllamaWire(),
)


def wire_for(path: str) -> Wire | None:
    """The provider family a request path belongs to."""
    path = path.split("?", 1)[0]
    if path.endswith("/responses"):
        return OPENAI
    if path.endswith("/chat/completions"):
        return CHAT
    if path.endswith("/messages"):
        return ANTHROPIC
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return GEMINI
    if path.endswith("/api/chat"):
        return OLLAMA
    return None


def offered_tools(wire: Wire, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, JSON schema)`` of every function tool the request offers the model."""
    tools = body.get("tools") or []
    out: list[tuple[str, dict[str, Any]]] = []
    if wire is OPENAI:
        for tool in tools:
            if tool.get("type") == "function":
                out.append((tool["name"], tool.get("parameters") or {}))
            elif tool.get("type") == "namespace":
                out += [(t["name"], t.get("parameters") or {}) for t in tool.get("tools") or []]
    elif wire in (CHAT, OLLAMA):
        out = [
            (t["function"]["name"], t["function"].get("parameters") or {}) for t in tools if "function" in t
        ]
    elif wire is ANTHROPIC:
        out = [(t["name"], t.get("input_schema") or {}) for t in tools if "input_schema" in t]
    elif wire is GEMINI:
        out = [
            (d["name"], d.get("parametersJsonSchema") or d.get("parameters") or {})
            for t in tools
            for d in t.get("functionDeclarations") or []
        ]
    return out


def pick_tool(tools: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    by_name = dict(tools)
    for name in PREFERRED:
        if name in by_name:
            return name, by_name[name]
    for name, schema in tools:
        if any(hint in name.lower() for hint in HINTS):
            return name, schema
    return None


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a shell-like tool: the command where a command goes, plain values elsewhere."""
    props: dict[str, Any] = schema.get("properties") or {}
    wanted = list(schema.get("required") or []) + [p for p in ("command", "cmd") if p in props]
    args: dict[str, Any] = {}
    for name in dict.fromkeys(wanted):
        kind = (props.get(name) or {}).get("type", "string")
        kind = kind[0] if isinstance(kind, list) else kind
        kind = str(kind).lower()  # Gemini's OpenAPI schemas spell types in capitals
        if kind == "array":
            args[name] = ["bash", "-lc", COMMAND]
        elif kind in ("number", "integer"):
            args[name] = 10000
        elif kind == "boolean":
            args[name] = False
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = COMMAND
    return args


def _as_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in output)
    return json.dumps(output)


class ScriptedAgent:
    """The handler: one reply per request, decided from the request alone."""

    def __call__(self, recorded: Recorded) -> Reply:
        wire = wire_for(recorded.path)
        if wire is None:
            return Reply.json({"error": {"message": f"no such endpoint {recorded.path}"}}, status=404)
        body = recorded.json() or {}
        stream = wire.is_stream(recorded)
        results = wire.tool_results(body)
        if results:
            return wire.text(QUOTE + _as_text(results[-1])[:2000], stream=stream)
        tool = pick_tool(offered_tools(wire, body))
        if tool is None:
            return wire.text(PLAIN, stream=stream)
        name, schema = tool
        return wire.tool_call(name, arguments_for(schema), stream=stream)
