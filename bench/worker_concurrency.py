"""How many concurrent streaming loops does ONE Celery worker process hold?

Starts the production topology (daphne + one Celery worker, threads pool, under `make run`'s
supervisor) on a fresh PostgreSQL database and a private Redis prefix/queue, with a paced fake
Chat Completions upstream on loopback. It creates N background responses at once and reports
the peak number of upstream streams open at the same time (each one is a loop streaming inside
the single worker), how long they took, and the worker's memory (steady: the median while every
loop is open; peak) and CPU. Bounded in requests
(--loops) and time (--timeout). A benchmark prints figures; it asserts nothing.

    .venv/bin/python bench/worker_concurrency.py --loops 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.production import (  # noqa: E402
    REDIS_HOST,
    REDIS_PORT,
    PostgresDatabase,
    Topology,
    _reachable,
    upstream_config,
)
from tests.support.upstream import ScriptedUpstream  # noqa: E402


def proc_stats(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds) of a process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--loops", type=int, default=500, help="concurrent streaming loops to start (default 500)"
    )
    parser.add_argument("--words", type=int, default=150, help="words per streamed answer (default 150)")
    parser.add_argument(
        "--delay", type=float, default=0.1, help="seconds between upstream chunks (default 0.1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="give up after this many seconds (default 180)"
    )
    args = parser.parse_args()
    if not (_reachable("127.0.0.1", 5432) and _reachable(REDIS_HOST, REDIS_PORT)):
        print("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
        return 2

    text = " ".join(f"w{i}" for i in range(args.words))
    database = PostgresDatabase("or_bench")
    tmp = Path(tempfile.mkdtemp(prefix="or-bench-"))
    with ScriptedUpstream(delay=args.delay) as upstream:
        config = upstream_config(tmp / "openresponses.json", upstream.base_url)
        topology = Topology(
            name="bench-worker",
            database_url=database.url,
            redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            workdir=tmp / "run",
            env={
                "OPENRESPONSES_CONFIG": str(config),
                "OPENRESPONSES_WORKER_CONCURRENCY": str(args.loops + 50),
            },
        )
        try:
            topology.start()
            worker = topology.pid_of("worker")
            rss0, cpu0 = proc_stats(worker)
            print(
                f"worker pid {worker}: {rss0:.0f} MiB before; {args.loops} loops × {args.words} chunks at {args.delay * 1000:.0f} ms (≈{args.words * args.delay:.1f} s each)"
            )
            upstream.reset()
            started = time.monotonic()
            with httpx.Client(
                base_url=topology.url, timeout=60, limits=httpx.Limits(max_connections=64)
            ) as http:

                def post(_: int) -> str:
                    return http.post(
                        "/v1/responses", json={"model": "chat-paced", "input": text, "background": True}
                    ).json()["id"]

                with ThreadPoolExecutor(8) as pool:  # gentle on a shared PostgreSQL (max_connections)
                    ids = list(pool.map(post, range(args.loops)))
                posted = time.monotonic() - started
                peak_rss = rss0
                steady: list[float] = []  # RSS while every loop is open (streaming upstream)
                deadline = started + args.timeout
                streams_done = None
                stalest = 0.0
                while time.monotonic() < deadline:
                    rss = proc_stats(worker)[0]
                    peak_rss = max(peak_rss, rss)
                    if upstream.active >= args.loops:
                        steady.append(rss)
                    if (
                        streams_done is None
                        and sum(c.ended is not None or c.disconnected is not None for c in upstream.calls)
                        >= args.loops
                    ):
                        streams_done = time.monotonic() - started
                    unfinished = database.query(
                        "SELECT count(*) FROM responses_app_response WHERE status IN ('queued', 'in_progress')"
                    )[0][0]
                    age = database.query(
                        "SELECT max(extract(epoch from now()) - heartbeat_at) FROM responses_app_response WHERE status = 'in_progress'"
                    )[0][0]
                    stalest = max(stalest, float(age or 0))
                    if not unfinished:
                        break
                    time.sleep(0.5)
                elapsed = time.monotonic() - started
                time.sleep(2)  # a terminal event is stored just after the status
                statuses = dict(
                    database.query("SELECT status, count(*) FROM responses_app_response GROUP BY status")
                )
                events = database.query("SELECT count(*) FROM responses_app_responseevent")[0][0]
                # Every batched INSERT stamps its rows with one created_at: distinct values = INSERT rounds.
                rounds = database.query("SELECT count(DISTINCT created_at) FROM responses_app_responseevent")[
                    0
                ][0]
            rss1, cpu1 = proc_stats(worker)
            ideal = args.words * args.delay
            print(f"created {len(ids)} background responses in {posted:.1f} s")
            print(
                f"peak concurrent upstream streams (loops streaming at once in ONE worker process): {upstream.peak}"
            )
            print(
                f"upstream streams all ended after {streams_done or float('nan'):.1f} s; responses terminal after {elapsed:.1f} s (one stream alone takes ≈{ideal:.1f} s)"
            )
            print(f"statuses: {statuses}; stalest heartbeat seen: {stalest:.1f} s (orphaned after 30 s)")
            print(
                f"events stored: {events} ({events / max(1, elapsed):.0f}/s) in {rounds} batched INSERTs ({events / max(1, rounds):.0f} events per INSERT)"
            )
            per_loop = 1024 / max(1, upstream.peak)
            median = statistics.median(steady) if steady else float("nan")
            print(
                f"worker memory: {rss0:.0f} → steady {median:.0f} MiB (median of {len(steady)} samples with all loops open; {(median - rss0) * per_loop:.1f} KiB per loop), peak {peak_rss:.0f} MiB ({(peak_rss - rss0) * per_loop:.1f} KiB per loop); CPU {cpu1 - cpu0:.1f} s"
            )
        finally:
            topology.stop()
            database.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
