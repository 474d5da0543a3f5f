"""MCP tools: request tools of type ``mcp`` reached over streamable HTTP with the ``mcp`` SDK.

A tool entry is OpenAI's shape: ``server_label``, ``server_url``, optional ``headers`` (sent to
the server, never echoed or logged), ``allowed_tools`` (names, or ``{"tool_names": [...]}``) and
``require_approval`` (``"always"`` — the default, ``"never"``, or ``{"never": {"tool_names": [...]},
"always": {...}}``).

The loop lists each server's tools once per run and offers them to the model as function tools;
the client sees the items OpenAI's API emits:

* ``mcp_list_tools``: a server's (allowed) tools, once per conversation (not again while an
  earlier one is in the context);
* ``mcp_call``: a call the loop made, with its ``output`` or its ``error`` (the model reads either);
* ``mcp_approval_request``: a call that needs approval ends the turn; the next request brings an
  ``mcp_approval_response`` (``approve`` true or false) and the loop then makes the call (an
  ``mcp_call`` with its ``approval_request_id``) or tells the model it was declined, and goes on.

Every connection obeys the egress policy (``providers_app.egress``): public addresses only
unless ``MCP_ALLOWED_URLS`` trusts the URL, resolved once and pinned, no redirects. Whatever
went wrong (refused by the policy, DNS, a closed port, a timeout, not an MCP server) the client
reads one message; the reason goes to the server's log. ``headers`` are sealed before the
request is stored (:func:`responses_app.services.responses.seal_tool_headers`) and opened only by the loop that uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from providers_app.egress import EgressDenied
from providers_app.secrets import SecretError
from responses_app.services.responses import SEALED_HEADERS

logger = logging.getLogger(__name__)
LIST_TIMEOUT_SECONDS = 15.0
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_-]")
UNREACHABLE = "Could not connect to MCP server '{label}' and list its tools."


class McpError(Exception):
    """An MCP server could not be reached or listed: the response fails with this message."""


@dataclass
class McpServer:
    label: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    allowed: set[str] | None = None
    approval_always: set[str] | None = None  # None: every tool (unless in ``approval_never``)
    approval_never: set[str] = field(default_factory=set)
    approval_default: bool = True
    sealed_headers: str = ""  # opened by :meth:`open_headers`, in the loop, when connecting

    @classmethod
    def from_tool(cls, tool: dict[str, Any]) -> McpServer:
        allowed = tool.get("allowed_tools")
        if isinstance(allowed, dict):
            allowed = allowed.get("tool_names")
        server = cls(
            tool["server_label"],
            tool["server_url"],
            dict(tool.get("headers") or {}),
            set(allowed) if allowed is not None else None,
        )
        sealed = tool.get(SEALED_HEADERS)
        if isinstance(sealed, str) and not server.headers:
            server.sealed_headers = sealed
        approval = tool.get("require_approval", "always")
        if approval == "never":
            server.approval_default = False
        elif isinstance(approval, dict):
            server.approval_default = False
            never = (approval.get("never") or {}).get("tool_names")
            always = (approval.get("always") or {}).get("tool_names")
            server.approval_never = set(never or [])
            server.approval_always = set(always or [])
            if never is not None and always is None:
                server.approval_default = True  # everything else needs approval
        return server

    def open_headers(self) -> None:
        """Decrypt the stored headers (``SecretError`` when no configured key opens them)."""
        if self.sealed_headers:
            from providers_app.secrets import MCP_HEADERS, unseal_bytes

            self.headers = {
                str(k): str(v) for k, v in json.loads(unseal_bytes(self.sealed_headers, MCP_HEADERS)).items()
            }
            self.sealed_headers = ""

    def needs_approval(self, tool_name: str) -> bool:
        if tool_name in self.approval_never:
            return False
        if self.approval_always is not None and tool_name in self.approval_always:
            return True
        return self.approval_default


@dataclass
class McpTool:
    server: McpServer
    name: str  # the name on the server
    exposed: str  # the name offered to the model
    description: str
    parameters: dict[str, Any]
    # Declared idempotent or read-only by the server (its tool annotations): a call that may have
    # started before its worker was lost may run again.
    retry_safe: bool = False

    @property
    def needs_approval(self) -> bool:
        return self.server.needs_approval(self.name)

    def as_function(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.exposed,
            "description": self.description,
            "parameters": self.parameters,
            "strict": False,
        }


def allowed_urls() -> list[str]:
    from providers_app.egress import allowed_patterns
    from responses_app.conf import openresponses_settings

    return allowed_patterns(openresponses_settings.MCP_ALLOWED_URLS)


def _pinned_client(destination: Any, headers: dict[str, str]) -> Any:
    """An HTTP client for the MCP SDK whose every connection goes to ``destination.address``.

    The URL keeps the host name (``Host`` header, TLS SNI and certificate check); only the TCP
    connection is pinned to the address the egress policy checked. Nothing else is reachable
    through it: another host or port is refused, redirects are not followed, no proxy from the
    environment (a proxy would resolve the name again).
    """
    import httpcore2
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    class PinnedBackend(httpcore2.AsyncNetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore2.AnyIOBackend()

        async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> Any:
            if host.strip("[]").lower() != destination.host or port != destination.port:
                raise httpcore2.ConnectError("not the checked destination")
            return await self._inner.connect_tcp(destination.address, port, **kwargs)

        async def connect_unix_socket(self, path: str, **kwargs: Any) -> Any:
            raise httpcore2.ConnectError("no unix sockets")

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    # httpx2's transport takes no network backend: its pool (a private attribute) is replaced by
    # one built with httpcore2's public API. tests/loop/test_mcp_egress.py proves the pinning holds.
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(), network_backend=PinnedBackend()
    )
    return httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        max_redirects=0,
    )


@contextlib.asynccontextmanager
async def _connect(server: McpServer) -> Any:
    """An initialised ``ClientSession`` over streamable HTTP to a destination the policy allows."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from providers_app.egress import resolve

    destination = await resolve(server.url, allowed_urls())
    server.open_headers()
    async with (
        _pinned_client(destination, server.headers) as http,
        streamable_http_client(server.url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


def _leaf(exc: BaseException) -> str:
    """The innermost cause of a (task-group) failure, named by class: no URLs or headers in it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, EgressDenied):
        return f"refused by the egress policy ({exc}); see MCP_ALLOWED_URLS"
    if isinstance(exc, SecretError):
        return "its stored headers cannot be decrypted with the configured keys"
    return type(exc).__name__


def _result_text(result: Any) -> tuple[str | None, str | None]:
    """``(output, None)`` of a tool result, or ``(None, error)`` when the tool reported an error."""
    parts = []
    for item in getattr(result, "content", None) or []:
        if getattr(item, "type", None) == "text":
            parts.append(item.text)
        else:
            parts.append(json.dumps(item.model_dump(mode="json", exclude_none=True), default=str))
    text = "\n".join(parts)
    structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
    if not text and structured is not None:
        text = json.dumps(structured, default=str)
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", False)
    return (None, text or "The MCP tool failed.") if is_error else (text, None)


class McpToolset:
    """The MCP tools of one loop run: sessions opened on first use and closed by :meth:`close`.

    Open and close it from the same task (the SDK's transports use anyio task groups).
    """

    __slots__ = ("servers", "tools", "listed", "_stack", "_sessions")  # (one per open loop)

    def __init__(self, tools: list[dict[str, Any]]) -> None:
        self.servers = [McpServer.from_tool(t) for t in tools if t.get("type") == "mcp"]
        self.tools: dict[str, McpTool] = {}
        #: Each server's tools as an ``mcp_list_tools`` item lists them, by server label.
        self.listed: dict[str, list[dict[str, Any]]] = {}
        # (None without servers: most loops have none, and an exit stack holds a deque.)
        self._stack = contextlib.AsyncExitStack() if self.servers else None
        self._sessions: dict[str, Any] = {}

    def __bool__(self) -> bool:
        return bool(self.servers)

    async def open(self, taken: set[str]) -> list[dict[str, Any]]:
        """Connect to every server, list its tools and return them as function tools for the model."""
        for server in self.servers:
            assert self._stack is not None
            try:
                # asyncio.timeout, not wait_for: the session must be entered in this very task.
                async with asyncio.timeout(LIST_TIMEOUT_SECONDS):
                    session = await self._stack.enter_async_context(_connect(server))
                    self._sessions[server.label] = session
                    listed = await session.list_tools()
            except Exception as exc:  # noqa: BLE001 - reported as the response's error
                # One message whatever the cause: the error must not tell an open port from a
                # closed one, or an internal address from a public one. The log has the reason.
                logger.warning("MCP server %r unreachable: %s", server.label, _leaf(exc))
                raise McpError(UNREACHABLE.format(label=server.label)) from None
            self.listed[server.label] = []
            for tool in listed.tools:
                if server.allowed is not None and tool.name not in server.allowed:
                    continue
                exposed = _NAME_BAD.sub("_", tool.name)[:64]
                if exposed in taken:
                    exposed = _NAME_BAD.sub("_", f"{server.label}__{tool.name}")[:64]
                taken.add(exposed)
                schema = (
                    getattr(tool, "input_schema", None)
                    or getattr(tool, "inputSchema", None)
                    or {"type": "object", "properties": {}}
                )
                annotations = getattr(tool, "annotations", None)
                self.tools[exposed] = McpTool(
                    server,
                    tool.name,
                    exposed,
                    tool.description or tool.name,
                    dict(schema),
                    retry_safe=bool(
                        annotations
                        and (
                            getattr(annotations, "idempotentHint", None)
                            or getattr(annotations, "readOnlyHint", None)
                        )
                    ),
                )
                self.listed[server.label].append(
                    {
                        "name": tool.name,
                        "description": tool.description,
                        "input_schema": dict(schema),
                        "annotations": annotations.model_dump(mode="json", exclude_none=True)
                        if annotations is not None
                        else None,
                    }
                )
        return [tool.as_function() for tool in self.tools.values()]

    def tool_for(self, server_label: str, name: str) -> McpTool | None:
        """The listed tool ``name`` of the server labelled ``server_label``, if this run has it."""
        for tool in self.tools.values():
            if tool.server.label == server_label and tool.name == name:
                return tool
        return None

    async def call(
        self, exposed: str, arguments: str, timeout: float, idempotency_key: str | None = None
    ) -> tuple[str | None, str | None]:
        """Call a tool: ``(output, None)``, or ``(None, error)`` when it failed, timed out or was
        given bad arguments (the model reads the error like an output)."""
        tool = self.tools[exposed]
        try:
            kwargs = json.loads(arguments) if arguments else {}
            if not isinstance(kwargs, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return None, f"Invalid arguments for {tool.name}: {exc}"
        try:
            result = await asyncio.wait_for(
                self._sessions[tool.server.label].call_tool(
                    tool.name,
                    kwargs,
                    meta={"openresponses/idempotency_key": idempotency_key} if idempotency_key else None,  # type: ignore[typeddict-unknown-key]
                ),
                timeout,
            )
        except TimeoutError:
            return None, f"Tool {tool.name} timed out after {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - reported to the model, not raised
            return None, f"Tool {tool.name} failed: {type(exc).__name__}: {exc}"
        return _result_text(result)

    async def close(self) -> None:
        if self._stack is None:
            return
        try:
            await self._stack.aclose()
        except BaseException as exc:  # noqa: BLE001 - closing a broken session must not fail the loop
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.debug("closing MCP sessions failed", exc_info=True)
