"""MCP connections obey the egress policy (issue 16, finding 2), against a real MCP server on loopback.

No SSRF: a loopback or internal URL is refused unless ``MCP_ALLOWED_URLS`` trusts it; one error
message whatever the target's state; the connection goes to the checked address (no second DNS
answer can move it) and follows no redirect; ``headers`` are stored sealed and opened by the loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers_app.egress import Destination
from providers_app.registry import Route
from responses_app.api.validation import validate_create
from responses_app.errors import ApiError
from responses_app.loop import mcp
from responses_app.loop.mcp import McpError, McpToolset
from tests.support.mcp_server import McpTestServer

pytest.importorskip("mcp")


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


@pytest.fixture
def allow(settings):
    def set_allowed(*patterns: str) -> None:
        settings.OPENRESPONSES = {**settings.OPENRESPONSES, "MCP_ALLOWED_URLS": list(patterns)}

    set_allowed()
    return set_allowed


def tool(url: str, **extra) -> dict:
    return {"type": "mcp", "server_label": "orders", "server_url": url, "require_approval": "never", **extra}


def open_tools(tools: list[dict]) -> list[dict]:
    async def run() -> list[dict]:
        toolset = McpToolset(tools)
        try:
            return await toolset.open(set())
        finally:
            await toolset.close()

    return asyncio.run(run())


def error_of(tools: list[dict]) -> str:
    with pytest.raises(McpError) as caught:
        open_tools(tools)
    return str(caught.value)


def test_loopback_is_refused_by_default_and_nothing_is_sent(mcp_server, allow):
    mcp_server.headers.clear()
    message = error_of([tool(mcp_server.url, headers={"Authorization": "Bearer x"})])
    assert message == mcp.UNREACHABLE.format(label="orders")
    assert mcp_server.headers == []  # not one byte reached it


def test_an_allowed_url_works_and_gets_its_headers(mcp_server, allow):
    allow("http://127.0.0.1:*")
    mcp_server.headers.clear()
    functions = open_tools([tool(mcp_server.url, headers={"Authorization": "Bearer mcp-secret-1"})])
    assert sorted(f["name"] for f in functions) == ["explode", "hidden_tool", "lookup_order"]
    assert any(h.get("authorization") == "Bearer mcp-secret-1" for h in mcp_server.headers)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def not_mcp_port() -> Iterator[int]:
    """An open port with a plain HTTP server (not MCP) that redirects everything elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_one_message_whatever_the_target_state(mcp_server, allow, monkeypatch, silent_port, not_mcp_port):
    monkeypatch.setattr(mcp, "LIST_TIMEOUT_SECONDS", 1.0)
    expected = mcp.UNREACHABLE.format(label="orders")
    denied = error_of([tool(mcp_server.url)])  # the policy
    unresolvable = error_of([tool("http://no-such-host.invalid/mcp")])
    allow("http://127.0.0.1:*")
    closed = error_of([tool(f"http://127.0.0.1:{_closed_port()}/mcp")])
    silent = error_of([tool(f"http://127.0.0.1:{silent_port}/mcp")])
    not_mcp = error_of([tool(f"http://127.0.0.1:{not_mcp_port}/mcp")])
    assert denied == unresolvable == closed == silent == not_mcp == expected


def test_the_connection_goes_to_the_checked_address_keeping_the_name(mcp_server):
    """A name that now resolves elsewhere cannot move the connection: the pinned address is used."""
    destination = Destination(
        url=f"http://rebind.example:{mcp_server.port}/mcp",
        scheme="http",
        host="rebind.example",  # resolves nowhere: any second DNS look-up would fail
        port=mcp_server.port,
        address="127.0.0.1",
    )

    async def run() -> tuple[int, int]:
        async with mcp._pinned_client(destination, {"X-Probe": "1"}) as http:
            mcp_server.headers.clear()
            answered = await http.get(destination.url)
            host = mcp_server.headers[-1]["host"]
            assert host == f"rebind.example:{mcp_server.port}"
            try:
                await http.get(f"http://other.example:{mcp_server.port}/mcp")
            except Exception:  # noqa: BLE001 - any refusal will do
                other = -1
            else:
                other = 0
            return answered.status_code, other

    status, other = asyncio.run(run())
    assert status < 500 and other == -1


def test_redirects_are_not_followed(not_mcp_port):
    destination = Destination(
        f"http://127.0.0.1:{not_mcp_port}/", "http", "127.0.0.1", not_mcp_port, "127.0.0.1"
    )

    async def run() -> int:
        async with mcp._pinned_client(destination, {}) as http:
            return (await http.get(destination.url)).status_code

    assert asyncio.run(run()) == 307


# ------------------------------------------------------------------ headers at rest


@pytest.mark.django_db
def test_headers_are_stored_sealed_and_opened_by_the_loop():
    from responses_app.models import Response
    from responses_app.services.responses import response_create

    request = validate_create(
        {
            "model": "mock-1",
            "input": "hi",
            "background": True,
            "tools": [
                tool("https://mcp.example.com/mcp", headers={"Authorization": "Bearer sk-mcp-secret-42"})
            ],
        }
    )
    created = response_create(request=request, owner=None, route=Route("mock", "mock-1", "mock-*", "default"))
    stored = Response.objects.get(id=created.id)
    assert "sk-mcp-secret-42" not in json.dumps(stored.params)
    assert "headers" not in stored.params["tools"][0]
    # A worker (Celery or in-process) rebuilds the toolset from the stored row and gets them back.
    server = McpToolset(stored.params["tools"]).servers[0]
    server.open_headers()
    assert server.headers == {"Authorization": "Bearer sk-mcp-secret-42"}
    # The resource echo shows neither form.
    from responses_app.resource import build_resource

    assert set(build_resource(stored)["tools"][0]) & {"headers", "headers_sealed"} == set()


# ------------------------------------------------------------------ URLs refused at validation


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "FILE:///etc/shadow", "gopher://x/", "ftp://x/y.pdf", "/etc/passwd"]
)
def test_input_file_urls_other_than_http_or_data_are_refused(url):
    body = {
        "model": "mock-1",
        "input": [{"role": "user", "content": [{"type": "input_file", "file_url": url}]}],
    }
    with pytest.raises(ApiError) as caught:
        validate_create(body)
    assert caught.value.status == 400
    assert caught.value.param == "input[0].content[0].file_url"


def test_input_file_http_and_data_urls_pass():
    for url in ("https://example.com/a.pdf", "data:application/pdf;base64,JVBERi0="):
        validate_create(
            {
                "model": "mock-1",
                "input": [{"role": "user", "content": [{"type": "input_file", "file_url": url}]}],
            }
        )


def test_mcp_server_url_must_be_http():
    with pytest.raises(ApiError) as caught:
        validate_create({"model": "mock-1", "input": "x", "tools": [tool("file:///etc/passwd")]})
    assert caught.value.param == "tools[0].server_url"
