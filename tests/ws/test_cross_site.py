"""Issue 16, finding 10: another site's page cannot drive the server (open mode included).

Browsers open WebSockets and send ``text/plain`` / form POSTs cross-site without any CORS
preflight, so the embedded default (no client keys) would run them with the developer's real
provider keys. The WebSocket ``Origin`` is checked against ``ALLOWED_HOSTS`` (or
``OPENRESPONSES["ALLOWED_ORIGINS"]``), and POST bodies must be JSON.
"""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.server import ServerProcess
from tests.support.spec import assert_valid_error
from tests.ws.client import WsClient, assert_valid_turn


def test_websocket_from_another_site_is_refused(server: ServerProcess):
    for origin in ("http://evil.example", "null", "http://localhost.evil.example"):
        with pytest.raises(InvalidStatus) as refused:
            WsClient(server.url, headers={"Origin": origin})
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [None, "http://localhost:3000", "http://127.0.0.1:8000"])
def test_websocket_from_allowed_hosts_or_without_origin(server: ServerProcess, origin: str | None):
    with WsClient(server.url, headers={"Origin": origin} if origin else {}) as ws:
        ws.create({"model": "mock-1", "input": "hello"})
        assert_valid_turn(ws.read_turn())


def scope(origin: str | None) -> dict:
    return {"type": "websocket", "headers": [(b"origin", origin.encode())] if origin else []}


def test_allowed_origins_setting(settings):
    from responses_app.api.websocket import origin_allowed

    settings.ALLOWED_HOSTS = ["*"]
    settings.OPENRESPONSES = {"ALLOWED_ORIGINS": "https://app.example.com,.corp.example"}
    assert origin_allowed(scope("https://app.example.com"))
    assert origin_allowed(scope("https://chat.corp.example"))
    assert origin_allowed(scope(None))
    assert not origin_allowed(scope("http://app.example.com"))  # scheme and port count
    assert not origin_allowed(scope("https://evil.example"))


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ],
)
def test_non_json_posts_are_refused(http: httpx.Client, content_type: str):
    body = b'{"model": "mock-1", "input": "run this with your keys"}'
    if content_type.startswith("multipart/"):
        body = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + body + b"\r\n--x--\r\n"
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/responses", "/v1/responses/compact"):
        response = http.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, response.text)
        data = response.json()
        assert_valid_error(data)
        assert data["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_json_posts_still_work(http: httpx.Client, content_type: str):
    body = b'{"model": "mock-1", "input": "hello"}'
    response = http.post("/v1/responses", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    rid = response.json()["id"]
    # A cancel carries no body at all: still fine (the SDKs send it that way).
    assert http.post(f"/v1/responses/{rid}/cancel").status_code in {200, 400, 409}
