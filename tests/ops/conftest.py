"""An embedded server for the multi-team tests: keys from the config file (with limits), a
provider that fails with 503 and its fallback, JSON logs and a metrics token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.upstream import FakeUpstream, Recorded, Reply

KEYS = {
    "team-a": "sk-team-a-secret-value-0001",
    "team-b": "sk-team-b-secret-value-0002",
    "limited": "sk-limited-secret-value-0003",
    "tokens": "sk-tokens-secret-value-0004",
    "narrow": "sk-narrow-secret-value-0005",
    "pair": "sk-pair-secret-value-0006",
    "compactor": "sk-compactor-secret-value-0008",
}
METRICS_TOKEN = "metrics-scrape-token-0007"
PROMPT_SECRET = "zebra-papaya-4711"


def ops_config(upstream_url: str) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "flaky",
                "adapter": "openai_chat",
                "base_url": upstream_url + "/flaky/v1",
                "max_retries": 0,
            },
            {
                "name": "backup",
                "adapter": "openai_chat",
                "base_url": upstream_url + "/backup/v1",
                "max_retries": 0,
            },
            {"name": "slowmock", "adapter": "mock", "options": {"token_delay": 0.15}},
        ],
        "routes": [
            {
                "pattern": "flaky-*",
                "provider": "flaky",
                "fallbacks": [{"provider": "backup", "model": "backup-model"}],
            },
            {"pattern": "slow-*", "provider": "slowmock"},
        ],
        "keys": [
            {"name": "team-a", "key_env": "TEAM_A_KEY"},
            {"name": "team-b", "key_env": "TEAM_B_KEY"},
            {"name": "limited", "key_env": "LIMITED_KEY", "rpm": 5},
            {"name": "tokens", "key_env": "TOKENS_KEY", "tpm": 40},
            {"name": "narrow", "key_env": "NARROW_KEY", "models": ["mock-1", "gpt-*"]},
            {"name": "pair", "key_env": "PAIR_KEY", "max_concurrent": 2},
            {"name": "compactor", "key_env": "COMPACTOR_KEY", "rpm": 2},
        ],
        "prices": {"mock-*": {"input": 1.0, "output": 2.0}},
    }


def chat_stream(text: str, model: str = "backup-model") -> Reply:
    """A Chat Completions stream answering ``text`` with usage."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    events = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
    ]
    return Reply.sse(events, named=False, done=True)


def flaky_handler(request: Recorded) -> Reply:
    """``/flaky`` is down (503); ``/backup`` answers."""
    if request.path.startswith("/flaky/"):
        return Reply.json({"error": {"message": "upstream overloaded", "type": "server_error"}}, status=503)
    body = request.json() or {}
    if body.get("stream"):
        return chat_stream("Answered by the backup.", model=body.get("model", ""))
    return Reply.json(
        {
            "id": "chatcmpl-2",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Answered by the backup."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
    )


@pytest.fixture(scope="session")
def ops_server(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ops")
    config = tmp / "openresponses.json"
    config.write_text(json.dumps(ops_config(fake_upstream.base_url)))
    env = {
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        "OPENRESPONSES_METRICS_TOKEN": METRICS_TOKEN,
        "OPENRESPONSES_LOG_FORMAT": "json",
        "OPENRESPONSES_LOG_PROMPTS": "",
        "TEAM_A_KEY": KEYS["team-a"],
        "TEAM_B_KEY": KEYS["team-b"],
        "LIMITED_KEY": KEYS["limited"],
        "TOKENS_KEY": KEYS["tokens"],
        "NARROW_KEY": KEYS["narrow"],
        "PAIR_KEY": KEYS["pair"],
        "COMPACTOR_KEY": KEYS["compactor"],
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="ops-server").start()
    yield process
    process.stop()


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


@pytest.fixture
def ops_http(ops_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ops_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def flaky_upstream(upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    upstream.handler = flaky_handler
    yield upstream
