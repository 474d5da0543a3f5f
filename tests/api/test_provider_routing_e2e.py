"""Routing without code changes, through a second real server: environment, YAML config file,
database rules written by another process, per-provider timeouts and connection retries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support.api import create, output_text, stream, types_of
from tests.support.server import ROOT, ServerProcess, free_port
from tests.support.upstream import FakeUpstream, Reply
from tests.support.wire import AnthropicWire, ChatWire, GeminiWire, OllamaWire, OpenAIWire

yaml = pytest.importorskip("yaml")

ENV_KEYS = {
    "OPENAI_API_KEY": "sk-env-openai-7777",
    "ANTHROPIC_API_KEY": "sk-env-ant-7778",
    "GEMINI_API_KEY": "env-gemini-7779",
    "DB_CHAT_KEY": "sk-db-chat-secret-0006",
}


@pytest.fixture(scope="module")
def routing_server(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("routing")
    base = fake_upstream.base_url
    config = {
        "providers": [
            {
                "name": "slow",
                "adapter": "openai_chat",
                "base_url": base + "/slow/v1",
                "max_retries": 0,
                "timeouts": {"connect": 1.0, "first_byte": 0.5, "idle": 0.5},
            },
            {
                "name": "down",
                "adapter": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "max_retries": 1,
                "timeouts": {"connect": 0.5},
            },
        ],
        "routes": [
            {"pattern": "gpt-4o-mini", "provider": "ollama", "model": "llama3.2"},
            {"pattern": "slow-*", "provider": "slow"},
            {"pattern": "down-*", "provider": "down"},
        ],
    }
    path = tmp / "openresponses.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        "OPENAI_BASE_URL": base + "/envopenai/v1",
        "ANTHROPIC_BASE_URL": base + "/envanthropic/v1",
        "GEMINI_BASE_URL": base + "/envgemini/v1beta",
        "OLLAMA_BASE_URL": base + "/envollama",
        **ENV_KEYS,
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(path),
        "OPENRESPONSES_PROVIDERS_RECHECK_SECONDS": "0.2",
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_HOSTED_TOOLS": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="routing-server").start()
    yield process
    process.stop()


@pytest.fixture
def rhttp(routing_server: ServerProcess):
    import httpx

    with httpx.Client(base_url=routing_server.url, timeout=30) as client:
        yield client


def manage_shell(server: ServerProcess, code: str) -> None:
    """Run ORM code in another process against the server's database (as an admin would)."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=server.env,
        check=True,
        capture_output=True,
    )


ENV_ROUTES = [
    ("gpt-4o", OpenAIWire(), "/envopenai/v1/responses", ("authorization", "Bearer sk-env-openai-7777")),
    ("claude-sonnet-4-5", AnthropicWire(), "/envanthropic/v1/messages", ("x-api-key", "sk-env-ant-7778")),
    (
        "gemini-2.5-flash",
        GeminiWire(),
        "/envgemini/v1beta/models/gemini-2.5-flash:generateContent",
        ("x-goog-api-key", "env-gemini-7779"),
    ),
    ("llama3.2", OllamaWire(), "/envollama/api/chat", None),
]


@pytest.mark.parametrize(("model", "wire", "path", "header"), ENV_ROUTES, ids=[m for m, *_ in ENV_ROUTES])
def test_environment_base_urls_and_keys(rhttp, upstream, model, wire, path, header):
    upstream.queue(wire.text("from env", stream=False))
    assert output_text(create(rhttp, {"model": model, "input": "hi"})) == "from env"
    recorded = upstream.requests[0]
    assert recorded.path == path
    if header:
        assert recorded.headers[header[0]] == header[1]


def test_yaml_config_route_beats_defaults_and_rewrites(rhttp, upstream):
    upstream.queue(OllamaWire().text("local llama", stream=True))
    events = stream(rhttp, {"model": "gpt-4o-mini", "input": "hi"})
    assert (
        output_text(events[-1]["response"]) == "local llama"
        and events[-1]["response"]["model"] == "gpt-4o-mini"
    )
    assert (
        upstream.requests[0].path == "/envollama/api/chat"
        and upstream.requests[0].json()["model"] == "llama3.2"
    )


def _wait_routed(rhttp, upstream, model: str, path: str, reply_for) -> dict:
    """Poll until the server routes ``model`` to ``path`` (rows written by another process)."""
    deadline = time.monotonic() + 10
    while True:
        upstream.requests.clear()
        upstream.replies.clear()
        upstream.handler = lambda recorded: reply_for(recorded.path)
        response = rhttp.post("/v1/responses", json={"model": model, "input": "hi"})
        if upstream.requests and upstream.requests[-1].path == path:
            assert response.status_code == 200, response.text
            return upstream.requests[-1]
        assert time.monotonic() < deadline, (
            f"{model} never routed to {path}; last {[r.path for r in upstream.requests]}"
        )
        time.sleep(0.2)


def test_database_rules_come_first_and_changes_apply_without_restart(rhttp, upstream, routing_server):
    base = upstream.base_url
    replies = {
        "/db/v1/chat/completions": lambda: ChatWire().text("from the database provider", stream=False),
        "/envollama/api/chat": lambda: OllamaWire().text("from the config file route", stream=False),
    }

    def reply_for(path):
        return (
            replies[path]()
            if path in replies
            else Reply.json({"error": {"message": f"unexpected {path}"}}, status=500)
        )

    _wait_routed(rhttp, upstream, "gpt-4o-mini", "/envollama/api/chat", reply_for)
    manage_shell(
        routing_server,
        (
            "from providers_app.models import Provider, RoutingRule\n"
            f"p = Provider(name='db-chat', adapter='openai_chat', base_url='{base}/db/v1', max_retries=0)\n"
            "p.set_api_key('sk-db-chat-secret-0006') if hasattr(p, 'set_api_key') else setattr(p, 'api_key_env', 'DB_CHAT_KEY')\n"
            "p.save()\n"
            "RoutingRule.objects.create(pattern='gpt-4o-mini', provider=p, upstream_model='db-model-x', order=1)\n"
        ),
    )
    recorded = _wait_routed(rhttp, upstream, "gpt-4o-mini", "/db/v1/chat/completions", reply_for)
    assert recorded.json()["model"] == "db-model-x"
    assert recorded.headers["authorization"] == "Bearer sk-db-chat-secret-0006"
    manage_shell(
        routing_server,
        "from providers_app.models import RoutingRule\nRoutingRule.objects.filter(pattern='gpt-4o-mini').update(enabled=False)",
    )
    _wait_routed(rhttp, upstream, "gpt-4o-mini", "/envollama/api/chat", reply_for)
    manage_shell(
        routing_server,
        "from providers_app.models import Provider\nProvider.objects.filter(name='db-chat').delete()",
    )


def test_first_byte_timeout_per_provider(rhttp, upstream):
    def late(recorded):
        time.sleep(1.2)  # longer than the provider's first_byte timeout (0.5 s)
        return ChatWire().text("too late", stream=True)

    upstream.handler = late
    started = time.monotonic()
    response = rhttp.post("/v1/responses", json={"model": "slow-1", "input": "hi", "stream": True})
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5
    assert len(upstream.requests) == 1


def test_idle_timeout_per_provider(rhttp, upstream):
    full = ChatWire().text("one two three four five six", stream=True)
    upstream.queue(
        Reply(
            content_type=full.content_type,
            chunks=[b"".join(full.chunks[:3]), b"".join(full.chunks[3:])],
            delay=1.5,
        )
    )
    events = stream(rhttp, {"model": "slow-1", "input": "hi"})
    assert types_of(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["error"]["code"] == "upstream_timeout" and "silent" in events[-2]["error"]["message"]
    assert output_text(events[-1]["response"]) == "one two three "


def test_unreachable_provider_is_retried_then_502(rhttp, upstream):
    response = rhttp.post("/v1/responses", json={"model": "down-1", "input": "hi"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable" and "'down'" in error["message"]


def test_system_checks_pass_for_this_configuration(routing_server):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=routing_server.env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "openresponses." not in result.stdout + result.stderr


def test_keys_never_in_routing_server_log(routing_server):
    log = routing_server.log_path.read_text()
    for key in ENV_KEYS.values():
        assert key not in log
    assert json.dumps(log)  # the log exists and was read
