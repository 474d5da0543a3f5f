"""``make run``: the embedded default (daphne, in-process loops) or, with ``REDIS_URL``, the
production topology on one machine (daphne + Celery workers), restarting any process that dies.

daphne runs on uvloop (``openresponses_site.serve``; ``OPENRESPONSES_UVLOOP=0`` keeps asyncio's
loop). The production topology starts ``OPENRESPONSES_WORKER_PROCESSES`` Celery worker processes
(default: the cores this process may use), each running up to ``OPENRESPONSES_WORKER_CONCURRENCY``
loops on one event loop, started by a threads pool of ``WORKER_START_THREADS`` (a task's thread
is held only until its loop has started).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

DEFAULT_WORKER_CONCURRENCY = 500
#: Celery threads per worker process: they only start loops (each returns once its loop runs).
#: A start waits a few event-loop turns of a busy host (its batched statement, see
#: ``loop/supervision/pg.py``), so the threads bound how fast a burst starts: with 16, 2,000
#: streams opened at once started at 3-10 per second per process while the rest stayed queued.
WORKER_START_THREADS = 64


def worker_processes() -> int:
    """``OPENRESPONSES_WORKER_PROCESSES``, or the number of cores this process may run on."""
    value = os.environ.get("OPENRESPONSES_WORKER_PROCESSES", "").strip()
    if value:
        return max(1, int(value))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def commands(host: str, port: int) -> dict[str, list[str]]:
    daphne = [
        sys.executable,
        "-m",
        "openresponses_site.serve",
        "-b",
        host,
        "-p",
        str(port),
        "openresponses_site.asgi:application",
    ]
    procs = {"web": daphne}
    if os.environ.get("REDIS_URL"):
        # The loops per process reach the workers as OPENRESPONSES_WORKER_CONCURRENCY (main() sets
        # the default); Celery's own concurrency is the threads that start them.
        loops = int(os.environ.get("OPENRESPONSES_WORKER_CONCURRENCY") or DEFAULT_WORKER_CONCURRENCY)
        concurrency = str(min(loops, WORKER_START_THREADS))
        for index in range(1, worker_processes() + 1):
            # The first keeps Celery's default node name; the others need names of their own.
            name = ["-n", f"celery{index}@%h"] if index > 1 else []
            procs["worker" if index == 1 else f"worker{index}"] = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "openresponses_site",
                "worker",
                *name,
                "--pool",
                "threads",
                "--concurrency",
                concurrency,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ]
        procs["beat"] = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "openresponses_site",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            os.path.join(os.environ.get("TMPDIR", "/tmp"), f"openresponses-celerybeat-{port}"),
        ]
    return procs


def supervise(procs: dict[str, list[str]]) -> int:
    """Start every process; restart one that exits; stop all on SIGINT/SIGTERM."""
    running: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, cmd in procs.items():
        running[name] = subprocess.Popen(cmd)
        print(f"[openresponses] started {name} (pid {running[name].pid})", flush=True)
    while not stopping:
        time.sleep(0.5)
        for name, proc in list(running.items()):
            if proc.poll() is not None and not stopping:
                print(f"[openresponses] {name} exited with {proc.returncode}; restarting", flush=True)
                running[name] = subprocess.Popen(procs[name])
                print(f"[openresponses] started {name} (pid {running[name].pid})", flush=True)
    for proc in running.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in running.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openresponses_site.settings")
    os.environ.setdefault("OPENRESPONSES_WORKER_CONCURRENCY", str(DEFAULT_WORKER_CONCURRENCY))
    topology = (
        "production (daphne + Celery, Redis, "
        + ("PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite")
        + ")"
        if os.environ.get("REDIS_URL")
        else "embedded (SQLite, in-process loops)"
    )
    print(f"[openresponses] serving http://{args.host}:{args.port}/v1/responses — {topology}", flush=True)
    if not os.environ.get("OPENRESPONSES_API_KEYS"):
        print(
            "[openresponses] WARNING: OPENRESPONSES_API_KEYS is not set: unless client keys exist in the admin, "
            "every request is accepted (local development only).",
            flush=True,
        )
    return supervise(commands(args.host, args.port))


if __name__ == "__main__":
    raise SystemExit(main())
