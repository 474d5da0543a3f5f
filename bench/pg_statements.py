"""The hot PostgreSQL writes, one at a time in one process: client CPU and wall time per statement.

Runs the create (``services.responses.aresponse_insert``), the loop's start, event batch and
finish (``loop/supervision/pg.py``) ``--n`` times each against ``DATABASE_URL`` (a scratch
database, migrated first), and the pool's checkout/return alone. Client CPU is this process's
``time.process_time`` per call; PostgreSQL's is its backends' (``/proc``, when it runs on this
machine; a backend dropped and replaced meanwhile is not counted); wall is the p50 of each call.
The finish's Redis part (limiter settle, metrics) is left out: only its statement is measured.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/scratch python -m bench.pg_statements --n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openresponses_site.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-pg-statements-not-a-production-secret-key")
os.environ.setdefault("REDIS_URL", "")


def server_cpu() -> float | None:
    """CPU seconds of the PostgreSQL backends serving this process's async pool, read from
    ``/proc`` (None when PostgreSQL is not on this machine)."""
    import psycopg
    from django.db import connection

    from responses_app.services.pg_async import APPLICATION_NAME

    try:
        with psycopg.connect(
            **{**connection.get_connection_params(), "context": None}, autocommit=True
        ) as conn:
            pids = [
                pid
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = %s",
                    (APPLICATION_NAME,),
                )
            ]
    except psycopg.OperationalError:  # (a shared server out of connection slots)
        return None
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


async def measure(name: str, n: int, step: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    """``step(i)`` for i in 0..n-1, one after the other; CPU per call and wall p50 (ms)."""
    for i in range(min(20, n)):  # warm: prepared statements, pool connections
        await step(-1 - i)
    walls = []
    server0 = server_cpu()
    times0 = os.times()
    cpu0 = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        await step(i)
        walls.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / n * 1000
    times1 = os.times()
    server1 = server_cpu()
    system = (times1.system - times0.system) / n * 1000
    result = {"cpu_ms": cpu, "system_ms": system, "wall_p50_ms": statistics.median(walls) * 1000}
    server = ""
    if server0 is not None and server1 is not None:
        result["server_cpu_ms"] = (server1 - server0) / n * 1000
        server = f"   PostgreSQL {result['server_cpu_ms']:.3f} ms"
    print(
        f"{name:<22} cpu {cpu:.3f} ms (system {system:.3f})   wall p50 {result['wall_p50_ms']:.3f} ms{server}",
        flush=True,
    )
    return result


async def main(n: int, events_per_batch: int) -> None:
    import django

    django.setup()
    from responses_app.gateway import usage
    from responses_app.loop.supervision import pg
    from responses_app.models import Response
    from responses_app.services import pg_async
    from responses_app.services.responses import aresponse_insert
    from responses_app.states import ResponseStatus

    async def no_settle(**kwargs: Any) -> None:
        return None

    pg.aresponse_settled = no_settle  # the statement only (Redis is not what is measured here)
    usage.cached_key_name = lambda owner: "anonymous"
    pg.cached_key_name = usage.cached_key_name
    run_id = time.time_ns()
    responses: dict[int, Response] = {}
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]}]
    payload = '{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"delta":"tok"}'

    def new(i: int) -> Response:
        now = time.time()
        return Response(
            id=f"resp_bench{run_id}_{i}",
            model="mock-1",
            provider="mock",
            upstream_model="mock-upstream",
            params={"model": "mock-1", "input": "hello there", "stream": True},
            stream=True,
            created_at=now,
            heartbeat_at=now,
            search_text="hello there",
            request_id=f"req_{i}",
            status=ResponseStatus.QUEUED,
        )

    async def create(i: int) -> None:
        response = responses[i] = new(i)
        await aresponse_insert(response=response, items=list(items))

    async def start(i: int) -> None:
        assert await pg.start(responses[i].id) is not None

    async def events(i: int) -> None:
        rid = responses[i].id
        await pg.insert_events(
            [(rid, 2 + k, "response.output_text.delta", payload) for k in range(events_per_batch)]
        )

    async def finish(i: int) -> None:
        response = responses[i]
        done = await pg.finish(
            response=response,
            status=ResponseStatus.COMPLETED,
            output=[{"type": "message", "id": "msg_1", "role": "assistant", "content": []}],
            usage={"input_tokens": 3, "output_tokens": 20, "total_tokens": 23},
            first_token_at=response.created_at + 0.001,
            iterations=1,
            events=[(100, "response.completed", '{"type":"response.completed"}')],
        )
        assert done == ResponseStatus.COMPLETED

    pool = await pg_async.pool()

    async def checkout(i: int) -> None:
        async with pool.connection():
            pass

    held = await pool.getconn()

    async def select_held(i: int) -> None:
        await (await held.execute("SELECT 1", prepare=True)).fetchone()

    async def select_pooled(i: int) -> None:
        async def work(conn: Any) -> Any:
            return await (await conn.execute("SELECT 1", prepare=True)).fetchone()

        await pg_async.run(work)

    results = {}
    for name, step in (
        ("create", create),
        ("start", start),
        (f"events x{events_per_batch}", events),
        ("finish", finish),
        ("pool checkout/return", checkout),
        ("SELECT 1 held conn", select_held),
        ("SELECT 1 via run()", select_pooled),
    ):
        results[name] = await measure(name, n, step)
    await pool.putconn(held)
    await pg_async.close_pool()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5, help="rows per event batch")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        sys.exit("DATABASE_URL must name a (scratch, migrated) PostgreSQL database")
    asyncio.run(main(args.n, args.events))
