"""A real MCP server (the ``mcp`` SDK, streamable HTTP) on 127.0.0.1 for tests; records request headers."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class McpTestServer:
    """Tools: ``lookup_order`` (answers), ``explode`` (raises), ``hidden_tool`` (filtered by allowed_tools)."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.tool_calls: list[tuple[str, dict[str, Any]]] = []
        self._server: Any = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _app(self) -> Any:
        try:
            from mcp.server.mcpserver import MCPServer as Server
        except ImportError:  # mcp 1.x
            from mcp.server.fastmcp import FastMCP as Server

        server = Server("orders")
        recorded = self

        @server.tool()
        def lookup_order(order_id: str) -> dict:
            """Look up an order by id."""
            recorded.tool_calls.append(("lookup_order", {"order_id": order_id}))
            return {"order_id": order_id, "status": "shipped"}

        @server.tool()
        def explode() -> str:
            """Always fails."""
            recorded.tool_calls.append(("explode", {}))
            raise RuntimeError("the order system is down")

        @server.tool()
        def hidden_tool() -> str:
            """Not allowed by the request's allowed_tools."""
            recorded.tool_calls.append(("hidden_tool", {}))
            return "hidden"

        inner = server.streamable_http_app()

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                recorded.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            await inner(scope, receive, send)

        return app

    def __enter__(self) -> McpTestServer:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("MCP test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.should_exit = True
