"""Limits per key under concurrent requests: no overshoot; tokens counted from streamed usage."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.ops.conftest import auth
from tests.support.api import create, stream
from tests.support.spec import assert_valid_error, assert_valid_response


def burst(url: str, body: dict, headers: dict, count: int) -> list[httpx.Response]:
    """``count`` requests at once, each on its own connection."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            return client.post("/v1/responses", json=body, headers=headers)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def check_429(response: httpx.Response, code: str) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert_valid_error(body)
    assert body["error"]["code"] == code and body["error"]["type"] == "too_many_requests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


def test_requests_per_minute_under_a_burst(ops_server):
    """rpm 5: of 20 concurrent first requests exactly 5 pass, the rest get 429 with Retry-After."""
    results = burst(ops_server.url, {"model": "mock-1", "input": "hi"}, auth("limited"), 20)
    passed = [r for r in results if r.status_code == 200]
    assert len(passed) == 5, [r.status_code for r in results]
    for response in passed:
        assert_valid_response(response.json())
    for response in results:
        if response.status_code != 200:
            check_429(response, "rate_limit_exceeded")
    # Other keys are not affected.
    with httpx.Client(base_url=ops_server.url, timeout=30) as client:
        create(client, {"model": "mock-1", "input": "hi"}, headers=auth("team-b"))


def test_concurrent_responses_per_key(ops_server, ops_http: httpx.Client):
    """max_concurrent 2: of 6 concurrent slow background responses 2 run; once they end, more may."""
    body = {"model": "slow-1", "input": "one two three four five six", "background": True}
    results = burst(ops_server.url, body, auth("pair"), 6)
    accepted = [r.json() for r in results if r.status_code == 200]
    assert len(accepted) == 2, [r.status_code for r in results]
    for response in results:
        if response.status_code != 200:
            check_429(response, "concurrency_limit_exceeded")
    deadline = time.monotonic() + 30
    for resource in accepted:
        while ops_http.get(f"/v1/responses/{resource['id']}", headers=auth("pair")).json()["status"] in {
            "queued",
            "in_progress",
        }:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert create(ops_http, {**body, "background": False}, headers=auth("pair"))["status"] == "completed"


def test_tokens_per_minute_from_streamed_usage(ops_http: httpx.Client):
    """tpm 40: a streamed response's real usage is charged at its end; the next request is refused."""
    events = stream(
        ops_http, {"model": "mock-1", "input": " ".join(f"w{i}" for i in range(30))}, headers=auth("tokens")
    )
    usage = events[-1]["response"]["usage"]
    assert usage["total_tokens"] >= 40, usage
    response = ops_http.post(
        "/v1/responses", json={"model": "mock-1", "input": "again"}, headers=auth("tokens")
    )
    check_429(response, "token_limit_exceeded")
    with ops_http.stream(
        "POST",
        "/v1/responses",
        json={"model": "mock-1", "input": "again", "stream": True},
        headers=auth("tokens"),
    ) as streamed:
        streamed.read()
        check_429(streamed, "token_limit_exceeded")


@pytest.mark.parametrize("rpm", [3])
def test_local_limiter_is_exact_under_threads(rpm):
    """The in-process limiter: 200 threads admitting at once never pass more than the limit."""
    from responses_app.gateway.limits import Limits, LocalLimiter

    limiter = LocalLimiter()
    now = time.time()
    with ThreadPoolExecutor(32) as pool:
        kinds = list(
            pool.map(lambda i: limiter.admit("k", f"m{i}", Limits(rpm=rpm), None, now)[0], range(200))
        )
    assert kinds.count(0) == rpm and set(kinds) == {0, 1}
    # Global cap: slots are shared by every key.
    limiter = LocalLimiter()
    kinds = [limiter.admit(f"key{i % 7}", f"m{i}", Limits(), 4, now)[0] for i in range(20)]
    assert kinds.count(0) == 4 and set(kinds) == {0, 4}
    limiter.settle("key0", "m0", 10, now)
    assert limiter.admit("key9", "again", Limits(), 4, now)[0] == 0


def usage_rows(server, key_name: str) -> list[tuple]:
    """The server's usage records of one key (read from its SQLite file)."""
    with sqlite3.connect(server.env["OPENRESPONSES_SQLITE_PATH"]) as db:
        return db.execute(
            "SELECT response_id, model, status, input_tokens, output_tokens, cost FROM responses_app_usagerecord "
            "WHERE key_name = ? ORDER BY created_at",
            [key_name],
        ).fetchall()


def test_compaction_is_admitted_limited_and_billed(ops_server, ops_http: httpx.Client):
    """rpm 2: the third compact within the minute is refused 429; the two others are in the key's usage."""
    body = {"model": "mock-1", "input": [{"role": "user", "content": "Remember the word heliotrope."}]}
    results = [ops_http.post("/v1/responses/compact", json=body, headers=auth("compactor")) for _ in range(3)]
    assert [r.status_code for r in results] == [200, 200, 429], [r.text for r in results]
    check_429(results[2], "rate_limit_exceeded")
    compacted = [r.json() for r in results[:2]]
    assert all(c["object"] == "response.compaction" for c in compacted)
    rows = usage_rows(ops_server, "compactor")
    assert [row[0] for row in rows] == [c["id"] for c in compacted]
    for row, resource in zip(rows, compacted, strict=True):
        _, model, status, input_tokens, output_tokens, cost = row
        assert (model, status) == ("mock-1", "completed")
        assert input_tokens > 0 and output_tokens > 0
        assert (input_tokens, output_tokens) == (
            resource["usage"]["input_tokens"],
            resource["usage"]["output_tokens"],
        )
        assert float(cost) > 0  # priced from the config's table (mock-*)
