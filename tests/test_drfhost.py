"""A Django site with DRF token authentication serves the Responses API to its own users with one
setting (tests/drfhost: ``OPENRESPONSES["DRF_AUTHENTICATION_CLASSES"]``), served by daphne."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import ARTIFACTS, ROOT, free_port, wait_for_http
from tests.support.spec import assert_valid_error, assert_valid_response, assert_valid_stream
from tests.support.sse import parse_sse


@pytest.fixture(scope="module")
def drfhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``migrate``, three users with DRF tokens, then daphne serving ``tests.drfhost.asgi``."""
    tmp = tmp_path_factory.mktemp("drfhost")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENRESPONSES_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.drfhost.settings",
            "DRFHOST_DB": str(tmp / "host.sqlite3"),
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": "",
            "DATABASE_URL": "",
        }
    )
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    made = subprocess.run(
        [sys.executable, "-m", "tests.drfhost.users"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    tokens = json.loads(made.stdout)
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "drfhost.log", "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "tests.drfhost.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", process=process)
            yield {"url": f"http://127.0.0.1:{port}", **tokens}
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def as_user(host: dict[str, Any], name: str | None, scheme: str = "Token") -> httpx.Client:
    headers = {"Authorization": f"{scheme} {host[name] if name in host else name}"} if name else {}
    return httpx.Client(base_url=host["url"], headers=headers, timeout=30)


def test_a_host_token_creates_a_response_owned_by_that_user(drfhost: dict[str, Any]) -> None:
    with as_user(drfhost, "alice") as alice:
        created = alice.post("/llm/v1/responses", json={"model": "mock-1", "input": "Hello from alice"})
        assert created.status_code == 200, created.text
        body = created.json()
        assert_valid_response(body)
        assert body["status"] == "completed"
        assert alice.get(f"/llm/v1/responses/{body['id']}").status_code == 200
    with as_user(drfhost, "ops") as ops:
        stored = ops.get(f"/ops/responses/{body['id']}/")
        assert stored.status_code == 200, stored.text
        assert stored.json()["owner"] == f"user:{drfhost['alice_pk']}"
        mine = ops.get("/ops/responses/", params={"owner": f"user:{drfhost['alice_pk']}"}).json()
        assert body["id"] in [r["id"] for r in mine["results"]]


def test_another_user_cannot_read_or_cancel_it(drfhost: dict[str, Any]) -> None:
    with as_user(drfhost, "alice") as alice:
        body = alice.post("/llm/v1/responses", json={"model": "mock-1", "input": "private"}).json()
    with as_user(drfhost, "bob") as bob:
        for answer in (
            bob.get(f"/llm/v1/responses/{body['id']}"),
            bob.get(f"/llm/v1/responses/{body['id']}/input_items"),
            bob.delete(f"/llm/v1/responses/{body['id']}"),
        ):
            assert answer.status_code == 404, answer.text
            assert_valid_error(answer.json())
        # Continuing alice's conversation is refused as well.
        follow = bob.post(
            "/llm/v1/responses", json={"model": "mock-1", "input": "hi", "previous_response_id": body["id"]}
        )
        assert follow.status_code == 404 and follow.json()["error"]["param"] == "previous_response_id"
    with as_user(drfhost, "alice") as alice:
        assert alice.get(f"/llm/v1/responses/{body['id']}").status_code == 200


def test_streaming_with_a_host_token(drfhost: dict[str, Any]) -> None:
    with as_user(drfhost, "bob") as bob:
        answer = bob.post("/llm/v1/responses", json={"model": "mock-1", "input": "one two", "stream": True})
        assert answer.status_code == 200
        events, _ = parse_sse(answer.text)
        assert_valid_stream(events)
        assert events[-1]["type"] == "response.completed"


@pytest.mark.parametrize(
    ("credential", "scheme"), [(None, "Token"), ("not-a-real-token", "Token"), ("not-a-real-token", "Bearer")]
)
def test_no_or_bad_credentials_get_a_401_in_the_spec_shape(
    drfhost: dict[str, Any], credential: str | None, scheme: str
) -> None:
    """The host configured authentication: nobody is let in anonymously (no open mode)."""
    with as_user(drfhost, credential, scheme) as nobody:
        answer = nobody.post("/llm/v1/responses", json={"model": "mock-1", "input": "x"})
        assert answer.status_code == 401, answer.text
        assert_valid_error(answer.json())
        assert answer.json()["error"]["type"] == "authentication_error"


def test_client_keys_keep_working_beside_host_tokens(drfhost: dict[str, Any]) -> None:
    with as_user(drfhost, "ops") as ops:
        key = ops.post("/ops/keys/", json={"name": "batch-job", "allowed_models": ["mock-*"]})
        assert key.status_code == 201, key.text
    with as_user(drfhost, key.json()["key"], "Bearer") as job:
        created = job.post("/llm/v1/responses", json={"model": "mock-1", "input": "from a key"})
        assert created.status_code == 200, created.text
        refused = job.post("/llm/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert refused.status_code == 403 and refused.json()["error"]["param"] == "model"
    with as_user(drfhost, "ops") as ops:
        assert ops.get(f"/ops/responses/{created.json()['id']}/").json()["owner"] == key.json()["owner"]


def test_the_host_manages_the_gateway_with_its_staff_tokens_only(drfhost: dict[str, Any]) -> None:
    with as_user(drfhost, "alice") as alice:
        assert alice.get("/ops/keys/").status_code in {401, 403}
    with as_user(drfhost, "ops") as ops:
        assert ops.get("/ops/keys/").status_code == 200
        route = ops.get("/ops/routes/resolve/", params={"model": "mock-1"}).json()["route"]
        assert route["provider"] == "mock"
