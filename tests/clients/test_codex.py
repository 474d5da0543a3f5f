"""Codex CLI (``codex exec``) against the server, over HTTP and over WebSocket, on every provider family.

Codex is configured the way a user points it at a Responses gateway: a custom model provider with
``wire_api = "responses"``, read-only sandbox, approvals off. Plugins, apps, analytics and update
checks are off (there is no network), and ``CODEX_HOME`` is a throwaway folder outside ``/tmp``
(Codex refuses to set up its helpers there). The scripted agent asks for its shell tool once; Codex
runs ``echo`` in its sandbox and the final answer must quote what the command printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from tests.clients.agent import COMMAND, QUOTE
from tests.clients.harness import NODE_DIR, Family, families, require_node
from tests.support.server import ARTIFACTS, ServerProcess
from tests.support.upstream import FakeUpstream, Reply

pytestmark = pytest.mark.timeout(180)

CODEX = NODE_DIR / "node_modules" / ".bin" / "codex"
#: What ``COMMAND`` prints; it appears in no request until Codex has run the command.
PRINTED = "clients-42"


def _under_tmp(path: Path) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(t) for t in {Path("/tmp"), Path(tempfile.gettempdir()).resolve()})


def work_root(tmp_path: Path) -> Path:
    """A fresh folder outside the temporary directory: the test's own if pytest's lives elsewhere,
    else under the checkout's artifacts/, else under the user's cache."""
    if not _under_tmp(tmp_path):
        return tmp_path
    base = ARTIFACTS if not _under_tmp(ARTIFACTS.parent) else Path.home() / ".cache" / "openresponses-tests"
    root = base / "codex" / tmp_path.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


def codex_config(model: str, base_url: str, *, websockets: bool) -> str:
    return "\n".join(
        [
            f'model = "{model}"',
            'model_provider = "openresponses"',
            'approval_policy = "never"',
            'sandbox_mode = "read-only"',
            "check_for_update_on_startup = false",
            "",
            "[analytics]",
            "enabled = false",
            "",
            "[features]",
            "plugins = false",
            "remote_plugin = false",
            "plugin_sharing = false",
            "apps = false",
            "in_app_updates = false",
            "",
            "[model_providers.openresponses]",
            'name = "OpenResponses"',
            f'base_url = "{base_url}"',
            'env_key = "CLIENT_API_KEY"',
            'wire_api = "responses"',
            "request_max_retries = 0",
            "stream_max_retries = 0",
            f"supports_websockets = {'true' if websockets else 'false'}",
            "",
        ]
    )


def run_codex(
    root: Path, model: str, base_url: str, *, websockets: bool, prompt: str
) -> subprocess.CompletedProcess:
    home, work = root / "codex-home", root / "work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(codex_config(model, base_url, websockets=websockets))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "CODEX_")) and key not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    }
    env.update(CODEX_HOME=str(home), CLIENT_API_KEY="client-test-key", NO_PROXY="127.0.0.1,localhost")
    return subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "--json", "-C", str(work), prompt],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
    )


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def item_texts(events: list[dict], kind: str) -> list[dict]:
    return [e["item"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == kind]


def codex_cases() -> list:
    return [
        pytest.param(family, websockets, id=f"{'ws' if websockets else 'http'}-{family.id}")
        for websockets in (False, True)
        for family in [p.values[0] for p in families()]
    ]


@pytest.mark.parametrize(("family", "websockets"), codex_cases())
def test_codex_exec_runs_its_shell_tool(
    family: Family, websockets: bool, clients_server: ServerProcess, upstream_log, tmp_path: Path
) -> None:
    require_node("@openai/codex")
    log_start = clients_server.log_path.stat().st_size
    done = run_codex(
        work_root(tmp_path),
        family.model,
        clients_server.url + "/v1",
        websockets=websockets,
        prompt="Run the shell command the task needs, then tell me what it printed.",
    )
    detail = f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    events = events_of(done.stdout)
    assert done.returncode == 0, detail
    commands = item_texts(events, "command_execution")
    assert [c["command"] for c in commands] and COMMAND in commands[0]["command"], detail
    assert PRINTED in commands[0].get("aggregated_output", ""), detail
    answer = item_texts(events, "agent_message")
    assert answer and QUOTE in answer[-1]["text"] and PRINTED in answer[-1]["text"], detail
    # The transport asked for is the one used (Codex falls back to HTTP when a socket fails).
    with clients_server.log_path.open("rb") as log:
        log.seek(log_start)
        access = log.read().decode(errors="replace")
    posts, sockets = access.count('"POST /v1/responses"'), access.count('"WSCONNECT /v1/responses"')
    assert (sockets > 0 and posts == 0) if websockets else (posts > 0 and sockets == 0), access[-3000:]
    # Every sampling request reached the provider family the model is routed to.
    paths = {r.path.split("?")[0] for r in upstream_log.requests}
    assert paths and all(_family_of(p) == family.id for p in paths), paths


def _family_of(path: str) -> str:
    for marker, family in (
        ("/chat/completions", "chat"),
        ("/responses", "openai"),
        ("/messages", "anthropic"),
        ("/models/", "gemini"),
        ("/api/chat", "ollama"),
    ):
        if marker in path:
            return family
    return "?"


# --------------------------------------------------------------------------- what Codex sends

#: The top-level fields of Codex's first ``POST /responses`` (0.171, issue 15).
FIRST_REQUEST_FIELDS = {
    "model",
    "input",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "stream",
    "include",
    "prompt_cache_key",
    "client_metadata",
}


def _answer(output_text: str | None) -> list[dict]:
    """A minimal Responses event stream: created, then completed with one message (or none)."""
    output = []
    if output_text is not None:
        output = [
            {
                "id": "msg_stub",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": output_text, "annotations": []}],
            }
        ]
    response = {
        "id": "resp_stub_" + secrets.token_hex(4),
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-4o",
        "output": output,
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }
    return [
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {**response, "status": "in_progress", "output": []},
        },
        *[
            {"type": "response.output_item.done", "sequence_number": 1, "output_index": 0, "item": i}
            for i in output
        ],
        {"type": "response.completed", "sequence_number": 2, "response": response},
    ]


def _summary(body: dict) -> dict:
    """The shape of a request: its fields (long ones elided), input roles and tool types."""
    return {
        "fields": {k: v for k, v in body.items() if k not in ("input", "tools", "client_metadata")},
        "client_metadata_keys": sorted(body.get("client_metadata") or {}),
        "input": [
            {"type": i.get("type"), "role": i.get("role"), "has_id": "id" in i}
            for i in body.get("input") or []
        ],
        "tools": [
            {
                "type": t.get("type"),
                "name": t.get("name"),
                "tools": [s.get("name") for s in t.get("tools") or []],
            }
            for t in body.get("tools") or []
        ],
    }


def _record(name: str, bodies: list[dict]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps([_summary(b) for b in bodies], indent=1))


def _assert_codex_shape(body: dict) -> None:
    assert FIRST_REQUEST_FIELDS <= set(body), sorted(body)
    assert body["stream"] is True and body["store"] is False and body["tool_choice"] == "auto"
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["reasoning"] == {"summary": "auto"}
    assert isinstance(body["client_metadata"], dict) and body["prompt_cache_key"]
    developer = [i for i in body["input"] if i.get("role") == "developer"]
    assert developer and all(i.get("id") for i in developer)
    kinds = {t["type"] for t in body["tools"]}
    assert {"function", "namespace", "web_search"} <= kinds, kinds
    shell = [t for t in body["tools"] if t.get("name") in ("exec_command", "shell", "shell_command")]
    assert shell and shell[0]["type"] == "function"
    search = next(t for t in body["tools"] if t["type"] == "web_search")
    assert search.get("external_web_access") is False


def test_codex_first_requests_over_http_and_websocket(tmp_path: Path) -> None:
    """What Codex sends, recorded by stubs (no server): the fields the server must accept.

    Over HTTP, one streamed ``POST /responses``. Over WebSocket, a ``response.create`` prewarm with
    ``generate: false`` (and ``stream: true``), then the turn chained on it by
    ``previous_response_id`` with only the new input. Summaries go to
    ``artifacts/codex-first-request-{http,ws}.json``.
    """
    require_node("@openai/codex")
    from websockets.sync.server import serve

    def http_answer(recorded):
        return Reply.sse(_answer("stub answer"))

    root = work_root(tmp_path)
    with FakeUpstream(handler=http_answer) as stub:
        done = run_codex(root / "http", "gpt-4o", stub.base_url + "/v1", websockets=False, prompt="Say hi.")
        bodies = [r.json() for r in stub.requests if r.path.endswith("/responses")]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(bodies) == 1
    _record("codex-first-request-http.json", bodies)
    _assert_codex_shape(bodies[0])
    assert "generate" not in bodies[0] and "previous_response_id" not in bodies[0]

    messages: list[dict] = []
    paths: list[str] = []

    def ws_handler(connection) -> None:
        paths.append(connection.request.path)
        for raw in connection:
            message = json.loads(raw)
            messages.append(message)
            for event in _answer(None if message.get("generate") is False else "stub answer"):
                connection.send(json.dumps(event))

    with serve(ws_handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.socket.getsockname()[1]}/v1"
        done = run_codex(root / "ws", "gpt-4o", base, websockets=True, prompt="Say hi.")
        server.shutdown()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _record("codex-first-request-ws.json", messages)
    assert paths and all(p == "/v1/responses" for p in paths)
    prewarm, turn = messages[0], messages[1]
    assert prewarm["type"] == "response.create" and prewarm["generate"] is False and prewarm["stream"] is True
    _assert_codex_shape(prewarm)
    assert turn["type"] == "response.create" and turn["previous_response_id"].startswith("resp_stub_")
    assert "generate" not in turn and turn["stream"] is True
