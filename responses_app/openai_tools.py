"""OpenAI's tool and item type names, and how a custom tool's input travels as a function
argument: the vocabulary request validation and the loop share (``loop.tool_types`` decides what
each provider gets)."""

from __future__ import annotations

import json

from providers_app.adapters.openai_responses import PROVIDER_ITEM_TYPES  # noqa: F401 - re-exported: items relayed from OpenAI
from providers_app.adapters.web_search import SEARCH_SOURCES, WEB_SEARCH_TYPES  # noqa: F401 - re-exported

#: Types only a provider that runs them natively can honour (everything else would change the answer).
NATIVE_ONLY_TYPES = frozenset(
    {
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer_use_preview",
        "computer",
        "local_shell",
        "shell",
        "apply_patch",
        "programmatic_tool_calling",
    }
)
#: Left out where not native: tool search finds deferred tools (``defer_loading``), and every
#: tool is offered directly there.
OMITTED_TYPES = WEB_SEARCH_TYPES | {"tool_search"}
#: Every tool type a request may carry (``function`` and ``mcp`` are handled by the loop itself).
TOOL_TYPES = frozenset({"function", "mcp", "namespace", "custom"}) | OMITTED_TYPES | NATIVE_ONLY_TYPES
CUSTOM_ARGUMENT = "input"
#: Output items that are a call the client (or the loop) answers.
CALL_TYPES = frozenset({"function_call", "custom_tool_call"})


MCP_ITEM_TYPES = frozenset({"mcp_list_tools", "mcp_call", "mcp_approval_request", "mcp_approval_response"})


def custom_input(arguments: str) -> str:
    """The free-form input of a translated custom call (its raw arguments if they are not ours)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_ARGUMENT), str):
        return value[CUSTOM_ARGUMENT]
    return arguments
