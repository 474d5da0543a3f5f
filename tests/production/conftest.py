"""Session fixtures for the production topology: own database, own Redis prefix and Celery queue."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.mcp_server import McpTestServer
from tests.support.production import (
    REDIS_HOST,
    REDIS_PORT,
    PostgresDatabase,
    Topology,
    require_services,
    upstream_config,
)
from tests.support.upstream import ScriptedUpstream

HOSTED = ",".join(
    f"tests.support.hosted_tools.{name}" for name in ("get_weather", "add_numbers", "broken_tool")
)


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream_calls(scripted: ScriptedUpstream) -> Iterator[ScriptedUpstream]:
    scripted.reset()
    yield scripted


@pytest.fixture(scope="session")
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


def topology_env(config: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.production.settings",
        "OPENRESPONSES_CONFIG": config,
        "OPENRESPONSES_HOSTED_TOOLS": HOSTED,
        "OPENRESPONSES_MIDDLEWARE": "responses_app.loop.redaction.RedactEmails",
        # The test MCP server listens on loopback, which the egress policy refuses unless trusted.
        "OPENRESPONSES_MCP_ALLOWED_URLS": "http://127.0.0.1:*",
    }


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabase]:
    require_services()
    database = PostgresDatabase("or_prod")
    yield database
    database.drop()


@pytest.fixture(scope="session")
def production(
    postgres: PostgresDatabase, scripted: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    """daphne + one Celery worker (+ beat) under the ``make run`` supervisor, on PostgreSQL and Redis."""
    tmp = tmp_path_factory.mktemp("production")
    config = upstream_config(tmp / "openresponses.json", scripted.base_url)
    topology = Topology(
        name="production",
        database_url=postgres.url,
        redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        workdir=tmp / "run",
        env=topology_env(str(config)),
    )
    try:
        topology.start()
    except Exception:
        topology.stop()
        raise
    yield topology
    topology.stop()


@pytest.fixture
def phttp(production: Topology) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=production.url, timeout=60) as client:
        yield client


@pytest.fixture
def client(production: Topology):  # noqa: ANN201 - openai.OpenAI
    import openai

    return openai.OpenAI(base_url=production.url + "/v1", api_key="test-key", max_retries=0, timeout=60)
