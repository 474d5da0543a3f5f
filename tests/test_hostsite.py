"""The apps inside someone else's Django site: tests/hostsite served by daphne, driven by the openai SDK.

The host has its own settings module, the API under ``/llm/``, its own auth hook (host API tokens),
and its own adapter, hosted tool and loop middleware named by dotted paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.api import output_text, types_of
from tests.support.server import ARTIFACTS, ROOT, free_port, wait_for_http
from tests.support.spec import (
    assert_valid_error,
    assert_valid_event,
    assert_valid_response,
    assert_valid_stream,
)
from tests.support.sse import parse_sse

ALICE = "host-token-alice"
BOB = "host-token-bob"


@pytest.fixture(scope="module")
def host_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``migrate`` then daphne serving ``tests.hostsite.asgi:application`` (no openresponses_site at all)."""
    tmp = tmp_path_factory.mktemp("hostsite")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENRESPONSES_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.hostsite.settings",
            "HOSTSITE_DB": str(tmp / "host.sqlite3"),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": "",
            "DATABASE_URL": "",
        }
    )
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "hostsite.log", "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "tests.hostsite.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", process=process)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def client(host_url: str, token: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(base_url=host_url + "/llm/v1", api_key=token, max_retries=0, timeout=30)


def test_create_with_the_sdk(host_url):
    raw = client(host_url).responses.with_raw_response.create(model="mock-1", input="Hello from the host")
    assert raw.http_request.url.path == "/llm/v1/responses"
    assert_valid_response(raw.http_response.json())
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == "You said: Hello from the host"


def test_stream_with_the_sdk(host_url):
    with client(host_url).responses.create(model="mock-1", input="one two three", stream=True) as stream:
        events = [event.to_dict() for event in stream]
    assert_valid_stream(events)
    assert types_of(events)[0] == "response.created" and types_of(events)[-1] == "response.completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "You said: one two three" == output_text(events[-1]["response"])


def test_retrieve_resume_and_delete(host_url):
    sdk = client(host_url)
    created = sdk.responses.create(model="mock-1", input="keep me")
    raw = sdk.responses.with_raw_response.retrieve(created.id)
    assert_valid_response(raw.http_response.json())
    assert raw.parse().output_text == "You said: keep me"

    # Resume the stored stream after sequence number 2, under the host's prefix.
    replay = httpx.get(
        f"{host_url}/llm/v1/responses/{created.id}",
        params={"stream": "true", "starting_after": 2},
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=30,
    )
    events, done = parse_sse(replay.text)
    assert done and events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(3, 3 + len(events)))
    for event in events:
        assert_valid_event(event)

    # Another host user does not see it; its owner deletes it.
    with pytest.raises(openai.NotFoundError):
        client(host_url, BOB).responses.retrieve(created.id)
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)


def test_host_auth_hook_decides(host_url):
    for headers in ({}, {"Authorization": "Bearer not-a-host-token"}):
        answer = httpx.post(
            f"{host_url}/llm/v1/responses",
            json={"model": "mock-1", "input": "x"},
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 401
        assert_valid_error(answer.json())
    with pytest.raises(openai.AuthenticationError):
        client(host_url, "wrong").responses.create(model="mock-1", input="x")
    # The hook limits bob to the mock models.
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(host_url, BOB).responses.create(model="shout-1", input="x")
    assert_valid_error(denied.value.response.json())
    assert denied.value.response.json()["error"]["code"] == "model_not_allowed"


def test_host_adapter_tool_and_middleware(host_url):
    sdk = client(host_url)
    raw = sdk.responses.with_raw_response.create(model="shout-1", input="hello there")
    assert_valid_response(raw.http_response.json())
    assert raw.parse().output_text == "HELLO THERE"

    with_tool = sdk.responses.with_raw_response.create(
        model="mock-1", input="Where is order 7?", tools=[{"type": "function", "name": "order_status"}]
    )
    assert_valid_response(with_tool.http_response.json())
    output = with_tool.parse().output
    assert [item.type for item in output] == ["function_call", "function_call_output", "message"]
    assert '"status": "shipped"' in output[1].output

    refused = httpx.post(
        f"{host_url}/llm/v1/responses",
        json={"model": "mock-1", "input": "my TOP-SECRET plan"},
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=30,
    )
    assert_valid_error(refused.json())
    assert refused.json()["error"]["code"] == "secret_detected"


def test_host_pages_and_paths_are_the_hosts(host_url):
    assert httpx.get(host_url + "/").text == "the host site"
    # The API lives under /llm/ only; the host's root is not taken over.
    assert httpx.post(host_url + "/v1/responses", json={"model": "mock-1", "input": "x"}).status_code == 404
    unknown = httpx.get(host_url + "/llm/v1/nothing-here", headers={"Authorization": f"Bearer {ALICE}"})
    assert unknown.status_code == 404
    assert_valid_error(unknown.json())
