"""Identifiers shaped like the spec's: ``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``, ``call_…``, ``conv_…``."""

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def response_id() -> str:
    return new_id("resp")


def message_id() -> str:
    return new_id("msg")


def function_call_id() -> str:
    return new_id("fc")


def custom_tool_call_id() -> str:
    return new_id("ctc")


def mcp_call_id() -> str:
    return new_id("mcp")


def mcp_list_tools_id() -> str:
    return new_id("mcpl")


def mcp_approval_request_id() -> str:
    return new_id("mcpr")


def function_call_output_id() -> str:
    return new_id("fco")


def web_search_call_id() -> str:
    return new_id("ws")


def reasoning_id() -> str:
    return new_id("rs")


def call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def conversation_id() -> str:
    return new_id("conv")
