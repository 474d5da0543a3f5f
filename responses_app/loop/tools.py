"""Hosted tools: plain Python callables the loop runs itself, their JSON schema derived from type hints."""

from __future__ import annotations

import asyncio
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.utils.module_loading import import_string

_JSON_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
}


def schema_for_annotation(annotation: Any) -> dict[str, Any]:
    """A JSON schema for a Python type hint (str, int, float, bool, list[X], dict, Literal, Optional)."""
    if annotation in _JSON_TYPES:
        return dict(_JSON_TYPES[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set):
        return {"type": "array", "items": schema_for_annotation(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return schema_for_annotation(options[0])
        return {"anyOf": [schema_for_annotation(a) for a in options]}
    return {}


#: The keyword argument through which a hosted tool receives its call's idempotency key.
IDEMPOTENCY_KEY_ARGUMENT = "idempotency_key"


def not_retry_safe(func: Callable[..., Any]) -> Callable[..., Any]:
    """Declare a hosted tool unsafe to run again when its worker was lost during a call.

    A response whose worker was lost while such a call may have been running then fails with
    ``tool_not_retryable`` instead of running it again. (A tool that takes an
    ``idempotency_key`` argument gets the same key on every attempt of one call, and may stay
    retry-safe by honouring it.)
    """
    func.openresponses_retry_safe = False  # type: ignore[attr-defined]
    return func


@dataclass(frozen=True)
class HostedTool:
    name: str
    func: Callable[..., Any]
    description: str
    parameters: dict[str, Any]
    retry_safe: bool = True
    takes_idempotency_key: bool = False

    async def call(self, arguments: str, timeout: float, idempotency_key: str | None = None) -> str:
        """Run the tool; errors and timeouts come back as the tool's output, for the model to read."""
        try:
            kwargs = json.loads(arguments) if arguments else {}
            if not isinstance(kwargs, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return json.dumps({"error": f"Invalid arguments for {self.name}: {exc}"})
        kwargs.pop(IDEMPOTENCY_KEY_ARGUMENT, None)  # never the model's to choose
        if self.takes_idempotency_key:
            kwargs[IDEMPOTENCY_KEY_ARGUMENT] = idempotency_key
        try:
            if inspect.iscoroutinefunction(self.func):
                result = await asyncio.wait_for(self.func(**kwargs), timeout)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(self.func, **kwargs), timeout)
        except TimeoutError:
            return json.dumps({"error": f"Tool {self.name} timed out after {timeout:g} s"})
        except Exception as exc:  # noqa: BLE001 - reported to the model, not raised
            return json.dumps({"error": f"Tool {self.name} failed: {type(exc).__name__}: {exc}"})
        return result if isinstance(result, str) else json.dumps(result, default=str)


def hosted_tool_from_callable(func: Callable[..., Any], name: str | None = None) -> HostedTool:
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    properties: dict[str, Any] = {}
    required = []
    doc = inspect.getdoc(func) or ""
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name == IDEMPOTENCY_KEY_ARGUMENT:
            continue
        properties[param.name] = schema_for_annotation(hints.get(param.name, str))
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return HostedTool(
        name or func.__name__,
        func,
        doc.split("\n\n")[0].strip() or func.__name__,
        schema,
        retry_safe=bool(getattr(func, "openresponses_retry_safe", True)),
        takes_idempotency_key=IDEMPOTENCY_KEY_ARGUMENT in signature.parameters,
    )


@lru_cache(maxsize=1)
def _hosted_tools_cached(paths: tuple[str, ...]) -> dict[str, HostedTool]:
    tools = {}
    for path in paths:
        tool = hosted_tool_from_callable(import_string(path))
        tools[tool.name] = tool
    return tools


def hosted_tool_paths() -> tuple[str, ...]:
    from providers_app.registry import config_file_value
    from responses_app.conf import openresponses_settings

    paths = list(openresponses_settings.HOSTED_TOOLS or [])
    if openresponses_settings.CONFIG_FILE:
        paths += list(config_file_value(openresponses_settings.CONFIG_FILE, "hosted_tools") or [])
    return tuple(dict.fromkeys(paths))


def hosted_tools() -> dict[str, HostedTool]:
    """Registered hosted tools by name (settings ``HOSTED_TOOLS`` and the config file)."""
    return _hosted_tools_cached(hosted_tool_paths())


@lru_cache(maxsize=8)
def _hosted_tool_names(paths: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_hosted_tools_cached(paths))


def hosted_tool_names() -> frozenset[str]:
    """The names of :func:`hosted_tools` (what a create may declare; checked per request)."""
    return _hosted_tool_names(hosted_tool_paths())
