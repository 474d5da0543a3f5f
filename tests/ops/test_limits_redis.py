"""The Redis limiter (production topology): exact under concurrent admissions from several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.production import REDIS_HOST, REDIS_PORT, require_services
from tests.support.server import ROOT

REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

ADMIT_SCRIPT = """
import asyncio, django
django.setup()
from responses_app.gateway import limits
from responses_app.errors import ApiError

async def one(i):
    try:
        await limits.admit(owner="key:shared", limits=limits.Limits(rpm=RPM), ticket=f"t-{TAG}-{i}")
        return 1
    except ApiError as exc:
        assert exc.status == 429 and exc.code == "rate_limit_exceeded", exc.code
        return 0

async def main():
    return sum(await asyncio.gather(*(one(i) for i in range(25))))

print("passed", asyncio.run(main()))
"""


@pytest.fixture
def redis_prefix(settings):
    require_services()
    import redis

    prefix = f"ortest-limits-{uuid.uuid4().hex[:8]}"
    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.mark.e2e
def test_no_overshoot_across_processes(redis_prefix):
    """Four processes, 25 concurrent admissions each, rpm 10: exactly 10 pass in total."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "openresponses_site.settings",
        "REDIS_URL": REDIS_URL,
        "DJANGO_SECRET_KEY": "tests-limits-redis-secret-key-not-for-production",
        "OPENRESPONSES_REDIS_PREFIX": redis_prefix,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ADMIT_SCRIPT.replace("RPM", "10").replace("TAG", str(n))],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    passed = 0
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        passed += int(out.split("passed")[-1])
    assert passed == 10


@pytest.mark.django_db(transaction=True)
def test_tokens_and_slots_in_redis(redis_prefix):
    """Tokens charged at the end close the window; a slot is freed at the end or reclaimed when stale."""
    import asyncio

    from responses_app.errors import ApiError
    from responses_app.gateway import limits

    async def admit(owner: str, ticket: str, **kw: int) -> str:
        try:
            await limits.admit(owner=owner, limits=limits.Limits(**kw), ticket=ticket)
            return "ok"
        except ApiError as exc:
            return f"{exc.code} {exc.headers['Retry-After']}"

    assert asyncio.run(admit("key:t", "a", tpm=100)) == "ok"
    limits.settle(owner="key:t", ticket="a", tokens=150)
    refused = asyncio.run(admit("key:t", "b", tpm=100))
    assert refused.startswith("token_limit_exceeded ") and 58 <= int(refused.split()[1]) <= 60
    # Concurrency: two slots, the third waits; settling one frees it.
    assert [asyncio.run(admit("key:c", t, max_concurrent=2)) for t in ("s1", "s2")] == ["ok", "ok"]
    assert asyncio.run(admit("key:c", "s3", max_concurrent=2)).startswith("concurrency_limit_exceeded")
    limits.settle(owner="key:c", ticket="s1", tokens=0)
    assert asyncio.run(admit("key:c", "s3", max_concurrent=2)) == "ok"
    # A slot whose response is gone (a dead worker, never settled) is reclaimed once it is old enough.
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    slots = f"{redis_prefix}:limits:key:c:slots"
    client.zadd(slots, {"s2": time.time() - 120, "s3": time.time() - 120})
    assert asyncio.run(admit("key:c", "s4", max_concurrent=2)) == "ok"
    assert {m.decode() for m in client.zrange(slots, 0, -1)} == {"s4"}
    assert limits.active_slots()["key:c"] == 1


def _finished(owner: str, ticket: str) -> object:
    """A response as it stands at its terminal state (only what the finish bookkeeping reads)."""
    from responses_app.models import Response

    now = time.time()
    return Response(
        id=f"resp_{ticket}",
        status="completed",
        model="mock-1",
        provider="mock",
        owner=owner,
        request_id=ticket,
        created_at=now - 1,
        first_token_at=now - 0.5,
        completed_at=now,
        usage={"input_tokens": 60, "output_tokens": 50},
        iterations=1,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("side", ["sync", "async"])
def test_the_finish_settles_limits_and_counts_metrics_in_one_round_trip(redis_prefix, monkeypatch, side):
    """At a terminal state the limiter's settle and the metrics go to Redis in one pipeline."""
    import asyncio

    import redis
    import redis.asyncio

    from responses_app.gateway import limits, metrics, usage

    async def admit(ticket: str) -> str:
        try:
            await limits.admit(
                owner="key:fin", limits=limits.Limits(tpm=100, max_concurrent=1), ticket=ticket
            )
            return "ok"
        except Exception as exc:  # noqa: BLE001 - the refusal's code is the answer
            return str(getattr(exc, "code", exc))

    assert asyncio.run(admit("f1")) == "ok"
    assert asyncio.run(admit("f2")) == "concurrency_limit_exceeded"
    metrics.model_label("mock-1")  # (a label seen before: admitting a new one is a round trip of its own)
    before = metrics.snapshot()
    calls: list[str] = []
    for module in (redis, redis.asyncio):
        for name in ("execute_command",):
            original = getattr(module.Redis, name)
            monkeypatch.setattr(
                module.Redis, name, lambda self, *a, _o=original, **k: calls.append(a[0]) or _o(self, *a, **k)
            )
        original_execute = module.client.Pipeline.execute
        monkeypatch.setattr(
            module.client.Pipeline,
            "execute",
            lambda self, *a, _o=original_execute, **k: calls.append("PIPELINE") or _o(self, *a, **k),
        )
    response = _finished("key:fin", "f1")
    if side == "sync":
        usage.response_finished(response=response)
    else:
        tokens, cost = usage.priced(response)
        asyncio.run(usage.aresponse_settled(response=response, tokens=tokens, cost=cost))

    assert calls == ["PIPELINE"]
    monkeypatch.undo()
    after = metrics.snapshot()
    counted = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert counted[metrics._field("r", "mock-1", "mock", "completed")] == 1
    assert counted[metrics._field("tok", "mock-1", "mock", "output")] == 50
    # Whole and fractional counters alike (HINCRBY and HINCRBYFLOAT inside the one script).
    assert counted[metrics._field("ttft", "mock-1", "mock", "0.5")] == 1
    assert counted[metrics._field("ttft_sum", "mock-1", "mock")] == pytest.approx(0.5, abs=1e-3)
    assert counted[metrics._field("dur_sum", "mock-1", "mock")] == pytest.approx(1.0, abs=1e-3)
    # The slot is free again, and the 110 tokens used fill the key's token window.
    assert asyncio.run(admit("f3")) == "token_limit_exceeded"
