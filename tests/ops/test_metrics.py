"""The Prometheus endpoint, parsed by prometheus_client's own text parser; structured logs."""

from __future__ import annotations

import json
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import KEYS, METRICS_TOKEN, PROMPT_SECRET, auth
from tests.support.api import create, stream

SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family, **labels) -> float:
    return sum(
        s.value
        for s in family.samples
        if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_need_the_token(ops_http: httpx.Client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, auth("team-a")):
        assert ops_http.get("/metrics", headers=headers).status_code == 403


def test_metrics_parse_and_count(ops_http: httpx.Client):
    before = families(ops_http.get("/metrics", headers=SCRAPE).text)
    done_before = (
        value(before["openresponses_responses"], model="mock-reasoning", status="completed")
        if "openresponses_responses" in before
        else 0
    )
    for _ in range(2):
        create(ops_http, {"model": "mock-reasoning", "input": "count these words"}, headers=auth("team-b"))
    stream(ops_http, {"model": "mock-reasoning", "input": "streamed too"}, headers=auth("team-b"))
    response = ops_http.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = families(response.text)
    assert (
        value(found["openresponses_responses"], model="mock-reasoning", provider="mock", status="completed")
        == done_before + 3
    )
    assert value(found["openresponses_tokens"], model="mock-reasoning", kind="reasoning") >= 33
    assert value(found["openresponses_loop_iterations"], model="mock-reasoning") >= 3
    assert value(found["openresponses_cost_usd"], model="mock-reasoning") > 0  # priced by the config file
    for name in ("openresponses_time_to_first_token_seconds", "openresponses_response_duration_seconds"):
        family = found[name]
        assert family.type == "histogram"
        counts = [
            s for s in family.samples if s.name == name + "_count" and s.labels["model"] == "mock-reasoning"
        ]
        assert counts and counts[0].value >= 3
        buckets = [
            s.value
            for s in family.samples
            if s.name == name + "_bucket" and s.labels["model"] == "mock-reasoning"
        ]
        assert buckets == sorted(buckets) and buckets[-1] == counts[0].value
    assert found["openresponses_active_responses"].type == "gauge"
    assert {s.labels["status"] for s in found["openresponses_active_responses"].samples} == {
        "queued",
        "in_progress",
    }
    assert found["openresponses_queue_depth"].samples[0].labels["queue"] == "inline"
    assert "openresponses_active_streams" in found and "openresponses_upstream_errors" in found


def test_request_id_in_header_and_json_logs_without_prompts_or_keys(ops_server, ops_http: httpx.Client):
    response = ops_http.post(
        "/v1/responses",
        json={"model": "mock-1", "input": f"my secret is {PROMPT_SECRET}"},
        headers=auth("team-a"),
    )
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    assert re.fullmatch(r"req_[0-9a-f]{24}", request_id)
    # Errors carry one too; every request gets its own.
    refused = ops_http.get("/v1/responses/resp_nope", headers=auth("team-a"))
    assert refused.headers["X-Request-Id"] not in {"", request_id}
    log = ops_server.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert any(response.json()["id"] in line["message"] for line in mine), mine
    assert PROMPT_SECRET not in log
    for secret in KEYS.values():
        assert secret not in log
