"""The multi-team features in the production topology: daphne + Celery worker on PostgreSQL and Redis.

Limits are enforced by the web process from state the worker writes (tokens charged at the end of
a loop), metrics recorded in the worker are served by the web process, and the request id follows
a response into the worker's log lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import KEYS, METRICS_TOKEN, auth, flaky_handler, ops_config
from tests.support.api import create, output_text, stream
from tests.support.production import REDIS_HOST, REDIS_PORT, PostgresDatabase, Topology, require_services
from tests.support.server import ROOT
from tests.support.spec import assert_valid_error
from tests.support.upstream import FakeUpstream

SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture(scope="module")
def ops_production(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    require_services()
    tmp = tmp_path_factory.mktemp("ops-production")
    config = tmp / "openresponses.json"
    config.write_text(json.dumps(ops_config(fake_upstream.base_url)))
    database = PostgresDatabase("or_ops")
    prefix = f"ortest-ops-{uuid.uuid4().hex[:8]}"
    env = {
        "OPENRESPONSES_CONFIG": str(config),
        "OPENRESPONSES_METRICS_TOKEN": METRICS_TOKEN,
        "OPENRESPONSES_LOG_FORMAT": "json",
        "OPENRESPONSES_REDIS_PREFIX": prefix,
        **{f"{name.upper().replace('-', '_')}_KEY": secret for name, secret in KEYS.items()},
    }
    topology = Topology(
        name="ops-production", database_url=database.url, redis_url=REDIS_URL, workdir=tmp / "run", env=env
    )
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
        database.drop()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        stale = list(client.scan_iter(match=f"{prefix}:*"))
        if stale:
            client.delete(*stale)


@pytest.fixture
def prod(ops_production: Topology) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ops_production.url, timeout=60) as client:
        yield client


def test_rate_limit_without_overshoot(ops_production: Topology):
    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=ops_production.url, timeout=60) as client:
            return client.post(
                "/v1/responses", json={"model": "mock-1", "input": "hi"}, headers=auth("limited")
            )

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert sorted(r.status_code for r in results) == [200] * 5 + [429] * 15
    for response in results:
        if response.status_code == 429:
            assert_valid_error(response.json())
            assert (
                response.json()["error"]["code"] == "rate_limit_exceeded"
                and int(response.headers["Retry-After"]) >= 1
            )


def test_token_limit_from_a_worker_streamed_usage(prod: httpx.Client):
    events = stream(
        prod, {"model": "mock-1", "input": " ".join(f"w{i}" for i in range(30))}, headers=auth("tokens")
    )
    assert events[-1]["response"]["usage"]["total_tokens"] >= 40
    refused = prod.post("/v1/responses", json={"model": "mock-1", "input": "again"}, headers=auth("tokens"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "token_limit_exceeded"


def test_fallback_metrics_and_request_id_across_processes(
    ops_production: Topology, prod: httpx.Client, upstream: FakeUpstream
):
    upstream.handler = flaky_handler
    answered = prod.post("/v1/responses", json={"model": "flaky-1", "input": "hello"}, headers=auth("team-a"))
    assert answered.status_code == 200 and output_text(answered.json()) == "Answered by the backup."
    failed = prod.post("/v1/responses", json={"model": "mock-fail", "input": "hello"}, headers=auth("team-b"))
    assert failed.status_code == 502
    request_id = failed.headers["X-Request-Id"]
    # The worker ran both loops; the web process reports what it recorded.
    families = {f.name: f for f in text_string_to_metric_families(prod.get("/metrics", headers=SCRAPE).text)}
    completed = [
        s
        for s in families["openresponses_responses"].samples
        if s.labels == {"model": "flaky-1", "provider": "backup", "status": "completed"}
    ]
    assert completed and completed[0].value >= 1
    errors = {
        (s.labels["provider"], s.labels["code"]) for s in families["openresponses_upstream_errors"].samples
    }
    assert ("flaky", "upstream_error") in errors and ("mock", "upstream_error") in errors
    assert families["openresponses_queue_depth"].samples[0].labels["queue"].startswith("ortest-")
    lines = [json.loads(line) for line in ops_production.log().splitlines() if line.startswith("{")]
    worker_lines = [
        line
        for line in lines
        if line.get("request_id") == request_id and line["logger"].startswith("responses_app.loop")
    ]
    assert worker_lines, "the worker's log lines carry the request id"
    for secret in KEYS.values():
        assert secret not in ops_production.log()


def test_isolation_and_purge_on_postgresql(ops_production: Topology, prod: httpx.Client):
    mine = create(prod, {"model": "mock-1", "input": "team a only"}, headers=auth("team-a"))
    assert prod.get(f"/v1/responses/{mine['id']}", headers=auth("team-b")).status_code == 404
    assert prod.get(f"/v1/responses/{mine['id']}", headers=auth("team-a")).status_code == 200
    result = subprocess.run(
        [sys.executable, "manage.py", "openresponses_purge", "--key", "team-a"],
        cwd=ROOT,
        env=ops_production.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "of key 'team-a'" in result.stdout
    assert prod.get(f"/v1/responses/{mine['id']}", headers=auth("team-a")).status_code == 404
