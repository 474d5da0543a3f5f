"""Shared fixtures: a fake upstream on loopback and the real ASGI server (daphne) talking to it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's fake provider, emptied for this test."""
    fake_upstream.replies.clear()
    fake_upstream.requests.clear()
    fake_upstream.handler = None
    yield fake_upstream
    fake_upstream.replies.clear()
    fake_upstream.handler = None


def upstream_env(base: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": base + "/v1",
        "OPENAI_API_KEY": "sk-test-openai-secret-0001",
        "ANTHROPIC_BASE_URL": base + "/v1",
        "ANTHROPIC_API_KEY": "sk-ant-test-secret-0002",
        "GEMINI_BASE_URL": base + "/v1beta",
        "GEMINI_API_KEY": "gemini-test-secret-0003",
        "OLLAMA_BASE_URL": base,
    }


#: Tokens: the context window of the models named *-tiny on the embedded server.
TINY_CONTEXT = 300


@pytest.fixture(scope="session")
def server(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The embedded default (SQLite, in-process loops) served by daphne."""
    tmp = tmp_path_factory.mktemp("server")
    config = tmp / "openresponses.json"
    config.write_text(
        json.dumps(
            {
                "providers": [
                    {
                        "name": "local-chat",
                        "adapter": "openai_chat",
                        "base_url": fake_upstream.base_url + "/v1",
                        "api_key_env": "LOCAL_CHAT_KEY",
                        "max_retries": 0,
                    },
                    {
                        "name": "zai",
                        "adapter": "anthropic",
                        "base_url": fake_upstream.base_url + "/zai/v1",
                        "api_key_env": "ZAI_API_KEY",
                        # An Anthropic-compatible endpoint without Anthropic's web search server tool.
                        "options": {"web_search": False},
                    },
                    {
                        "name": "anthropic-effort",
                        "adapter": "anthropic",
                        "base_url": fake_upstream.base_url + "/v1",
                        "api_key_env": "ANTHROPIC_API_KEY",
                        "options": {"thinking_mode": "effort"},
                    },
                    {
                        "name": "acme",
                        "adapter": "tests.support.custom_adapter.AcmeAdapter",
                        "base_url": fake_upstream.base_url + "/acme",
                    },
                ],
                "routes": [
                    {"pattern": "chat-*", "provider": "local-chat"},
                    {"pattern": "fast", "provider": "local-chat", "model": "qwen2.5-7b-instruct"},
                    {"pattern": "glm-*", "provider": "zai"},
                    {"pattern": "opus-effort", "provider": "anthropic-effort", "model": "claude-opus-4-6"},
                    {"pattern": "acme-*", "provider": "acme"},
                ],
            }
        )
    )
    env = {
        **upstream_env(fake_upstream.base_url),
        "LOCAL_CHAT_KEY": "sk-local-chat-secret-0004",
        "ZAI_API_KEY": "zai-test-secret-0005",
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_HOSTED_TOOLS": "tests.support.hosted_tools.get_weather,tests.support.hosted_tools.add_numbers,tests.support.hosted_tools.broken_tool",
        "OPENRESPONSES_DISPATCH": "inline",
        "OPENRESPONSES_API_KEYS": "",
        # Models named *-tiny have tiny context windows (the compaction and truncation tests).
        "OPENRESPONSES_MODEL_CONTEXT_TOKENS": f"mock-tiny*={TINY_CONTEXT},gpt-tiny*={TINY_CONTEXT}",
        "OPENRESPONSES_COMPACTION_MODEL": "",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    process = ServerProcess(env, name="embedded-server").start()
    yield process
    process.stop()


#: Client keys of :func:`keyed_server` (the HTTP and WebSocket authentication tests share it).
CLIENT_KEYS = ("sk-client-one", "sk-client-two", "ws-test-client-key-0001")


@pytest.fixture(scope="session")
def keyed_server(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server that requires a client key, with a small body limit and fast keep-alive comments."""
    tmp = tmp_path_factory.mktemp("keyed")
    env = {
        **upstream_env(fake_upstream.base_url),
        "OPENRESPONSES_SQLITE_PATH": str(tmp / "db.sqlite3"),
        "OPENRESPONSES_API_KEYS": ",".join(CLIENT_KEYS),
        "OPENRESPONSES_MAX_BODY_BYTES": "20000",
        "OPENRESPONSES_KEEPALIVE_SECONDS": "0.3",
        "OPENRESPONSES_DISPATCH": "inline",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "OPENRESPONSES_CONFIG": "",
    }
    process = ServerProcess(env, name="keyed-server").start()
    yield process
    process.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def openai_client(server: ServerProcess):  # noqa: ANN201 - openai.OpenAI
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0, timeout=30)


def pytest_report_header(config: pytest.Config) -> str:
    return f"CI={os.environ.get('CI', '')!r}; fixtures from {Path(__file__).resolve().parent / 'fixtures'}"


#: Fixtures that boot a server process (daphne, a Celery topology, a bench run) or a browser.
#: A test using one, directly or through another fixture, is marked ``e2e``: ``make test-fast``
#: (``-m "not e2e"``) leaves it out. Add a new server fixture's name here; a test that starts
#: processes itself carries ``@pytest.mark.e2e``.
E2E_FIXTURES = frozenset(
    {
        "server",
        "ops_server",
        "ops_production",
        "keyed_server",
        "routing_server",
        "loop_server",
        "cancelling_server",
        "console",
        "browser",
        "production",
        "private_topology",
        "topology",
        "host_url",
        "quick_report",
        "failclosed_server",
        "bounded_server",
        "nul_server",
    }
)


#: Modules whose tests start servers, clients or browsers of their own (beside the fixtures above).
E2E_MODULES = (
    "tests/clients/",
    "tests/production/",
    "tests/test_drfhost.py",
    "tests/manage/test_operator.py",
    "tests/admin/test_dashboard_browser.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parents[1]
    for item in items:
        where = Path(str(item.fspath)).resolve().relative_to(root).as_posix()
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())) or where.startswith(E2E_MODULES):
            item.add_marker(pytest.mark.e2e)
