"""An operator scripts the whole setup with curl, exactly as docs/management.md shows it, against a
server of its own and a fake upstream: provider -> route -> key with limits -> first response -> usage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import upstream_env
from tests.support.server import ROOT, ServerProcess
from tests.support.upstream import Reply
from tests.test_docs import ERROR_BODY, blocks_of

UPSTREAM_KEY = "sk-team-upstream-secret-4321"
DOC = ROOT / "docs" / "management.md"
CHAT_COMPLETION = {
    "id": "chatcmpl-operator-1",
    "object": "chat.completion",
    "created": 1754688908,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21},
}


@pytest.fixture(scope="module")
def operated(fake_upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose store starts empty (no keys, no staff): the operator sets everything up."""
    tmp = tmp_path_factory.mktemp("operator")
    env = {
        **upstream_env(fake_upstream.base_url),
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": "",
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="operator-server").start()
    yield process
    process.stop()


def documented_session() -> str:
    name = "tests/manage/test_operator.py::test_the_documented_operator_session"
    blocks = [b for b in blocks_of(DOC) if b.action == "covered" and b.arg == name]
    assert len(blocks) == 2, "docs/management.md: the staff-token block and the curl session"
    return "\n".join(b.code for b in blocks)


def test_the_documented_operator_session(operated: ServerProcess, upstream: Any, tmp_path: Any) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("curl and jq are needed to run the documented session")
    upstream.queue(Reply.json(CHAT_COMPLETION))
    port = operated.url.rsplit(":", 1)[1]
    script = documented_session().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    # Print what the script's variables ended up holding, for the checks below.
    script += '\necho\necho "STAFF_TOKEN=$STAFF_TOKEN"\necho "KEY=$KEY"\n'
    shutil.copy(ROOT / "manage.py", tmp_path / "manage.py")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env={
            **operated.env,
            "PYTHONPATH": str(ROOT),
            "PATH": f"{sys.executable.rsplit('/', 1)[0]}:{operated.env.get('PATH', '')}",
            "UPSTREAM_URL": upstream.base_url + "/v1",
            "UPSTREAM_KEY": UPSTREAM_KEY,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not ERROR_BODY.search(result.stdout) and UPSTREAM_KEY not in output
    said = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if line.startswith(("STAFF_TOKEN=", "KEY="))
    )
    # The first response reached the provider through the route, with the provider's key.
    assert "\nThe capital of France is Paris.\n" in result.stdout, output
    (sent,) = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert sent.json()["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # What the operator's API says afterwards.
    with httpx.Client(
        base_url=operated.url, headers={"Authorization": f"Token {said['STAFF_TOKEN']}"}
    ) as ops:
        (key,) = ops.get("/manage/v1/keys/", params={"name": "team-a"}).json()["results"]
        assert key["active"] is False and key["rpm"] == 60 and key["allowed_models"] == ["team-*"]
        (row,) = ops.get("/manage/v1/usage/", params={"group_by": "key,model,provider"}).json()["results"]
        assert (row["key_name"], row["model"], row["provider"], row["responses"]) == (
            "team-a",
            "team-chat",
            "team-openai",
            1,
        )
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0
        (stored,) = ops.get("/manage/v1/responses/", params={"key": "team-a"}).json()["results"]
        assert stored["owner"] == key["owner"] and stored["status"] == "completed"
        csv = (tmp_path / "usage.csv").read_text().splitlines()
        assert csv[0].startswith("key_name,owner,day,responses") and "team-a" in csv[1]
    # The rotated-then-revoked key no longer works; the limits were the key's own.
    refused = httpx.post(
        operated.url + "/v1/responses",
        headers={"Authorization": f"Bearer {said['KEY']}"},
        json={"model": "team-chat", "input": "again"},
    )
    assert refused.status_code == 401


def test_a_client_key_made_through_the_api_is_held_to_its_limits(operated: ServerProcess) -> None:
    """rpm and the model allow-list set through the API are what /v1/responses enforces."""
    for command in (
        ["createsuperuser", "--noinput", "--username", "limits-ops", "--email", "l@example.com"],
        ["drf_create_token", "limits-ops"],
    ):
        made = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=operated.env,
            check=True,
            capture_output=True,
            text=True,
        )
    token = made.stdout.split()[2]
    with httpx.Client(base_url=operated.url, headers={"Authorization": f"Token {token}"}) as ops:
        tiny = ops.post("/manage/v1/keys/", json={"name": "tiny", "rpm": 2}).json()["key"]
        narrow = ops.post("/manage/v1/keys/", json={"name": "narrow", "allowed_models": ["mock-*"]}).json()[
            "key"
        ]
    with httpx.Client(base_url=operated.url, headers={"Authorization": f"Bearer {narrow}"}) as client:
        refused = client.post("/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert refused.status_code == 403 and refused.json()["error"]["param"] == "model"
        assert client.post("/v1/responses", json={"model": "mock-1", "input": "x"}).status_code == 200
    with httpx.Client(base_url=operated.url, headers={"Authorization": f"Bearer {tiny}"}) as client:
        answers = [client.post("/v1/responses", json={"model": "mock-1", "input": "x"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
