"""The fault matrix (a subset): the worker runs on a host of its own, across a real network link.

The worker is a Celery worker inside a network namespace the test creates (``tests/support/netns``),
linked to the test's namespace by a veth pair; PostgreSQL, a private Redis, the web process
(daphne) and the scripted upstream run here. Cells, each with a tool step in flight and a client
streaming: the worker SIGKILLed (a new one started, as a supervisor would), Redis restarted, and
the worker's host partitioned from Redis for 5 s. Each cell checks the terminal state, the client's
stream (complete, gap-free, in order, spec-valid, equal to the stored log), that no tool ran twice,
and prints its recovery time. Every wait is bounded; the namespace and processes are removed even
when a cell fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openresponses_site.runserver import commands
from tests.support.netns import Namespace, TcpProxy, require_netns
from tests.support.production import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_USER,
    PostgresDatabase,
    PrivateRedis,
    upstream_config,
)
from tests.support.server import ARTIFACTS, ROOT, free_port, wait_for_http
from tests.support.spec import assert_valid_stream
from tests.support.upstream import ScriptedUpstream

from .conftest import topology_env
from .test_durable import StreamReader, _read, _wait, quick_result_stored

TOOLS = ("logged_tool", "blocking_tool", "pause_tool")
RESULTS: list[tuple[str, str]] = []


class Matrix:
    """PostgreSQL and Redis here, the web process here, the worker on its own host."""

    def __init__(self, postgres_prefix: str, scripted: ScriptedUpstream, tmp: Path) -> None:
        self.tmp = tmp
        self.host = Namespace(index=os.getpid() % 100)
        self.database = PostgresDatabase(postgres_prefix)
        self.redis = PrivateRedis(tmp, bind=f"127.0.0.1 {self.host.service_ip}")
        self.proxies: list[TcpProxy] = []
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.tool_log = tmp / "tools.log"
        self.scripted = scripted
        self.logs: list[Any] = []
        self.stopping = False
        self.ready = False
        self.restarts = 0
        self.supervisor: threading.Thread | None = None
        self.web = self.other_web = None

    def start(self) -> Matrix:
        self.host.create()
        self.redis.start()
        pg = TcpProxy(self.host.root_ip, (POSTGRES_HOST, POSTGRES_PORT))
        upstream_port = int(self.scripted.base_url.rsplit(":", 1)[1].split("/")[0])
        model = TcpProxy(self.host.root_ip, ("127.0.0.1", upstream_port))
        self.proxies = [pg, model]
        config = upstream_config(
            self.tmp / "openresponses.json", f"http://{self.host.root_ip}:{model.port}/v1"
        )
        tag = self.host.name
        self.env = {
            **os.environ,
            **topology_env(str(config)),
            "OPENRESPONSES_HOSTED_TOOLS": ",".join(f"tests.support.hosted_tools.{n}" for n in TOOLS),
            "OPENRESPONSES_TEST_TOOL_LOG": str(self.tool_log),
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis.url,
            "DJANGO_SECRET_KEY": "tests-fault-matrix-secret-key-not-for-production-use",
            "OPENRESPONSES_CHANNEL_PREFIX": f"ortest{tag}",
            "OPENRESPONSES_CELERY_QUEUE": f"ortest-{tag}",
            "OPENRESPONSES_WORKER_CONCURRENCY": "50",
            "OPENRESPONSES_DISPATCH": "celery",
            "OPENRESPONSES_API_KEYS": "",
            "SCRIPTED_KEY": "sk-scripted-secret-0006",
            "TMPDIR": str(self.tmp),
            "PYTHONUNBUFFERED": "1",
        }
        self.worker_env = {
            **self.env,
            "DATABASE_URL": f"postgres://{POSTGRES_USER}@{self.host.root_ip}:{pg.port}/{self.database.name}",
            "REDIS_URL": f"redis://{self.host.service_ip}:{self.redis.port}/0",
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=120,
        )
        self.url, self.web = self.start_web()
        self.other_url, self.other_web = self.start_web()  # a second web process, for reconnects
        self.start_worker()
        self.supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.supervisor.start()
        return self

    def _supervise(self) -> None:
        """Restart the worker when it exits, as ``make run`` or any process manager does."""
        while not self.stopping:
            worker = self.worker
            if worker is not None and worker.poll() is not None:
                self.restarts += 1
                self.start_worker()
            time.sleep(0.2)

    def start_web(self) -> tuple[str, subprocess.Popen]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        web = self._spawn("web", commands("127.0.0.1", port)["web"], self.env)
        wait_for_http(url + "/v1/", timeout=60, process=web)
        return url, web

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"faults-{name}-{self.host.name}-{len(self.logs)}.log"
        log = open(path, "w")  # noqa: SIM115 - closed in stop()
        self.logs.append((log, path))
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_worker(self) -> None:
        argv = self.host.command(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "openresponses_site",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "50",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ]
        )
        self.ready = False
        self.worker = self._spawn("worker", argv, self.worker_env)
        path = self.logs[-1][1]
        _wait(lambda: " ready." in path.read_text(errors="replace"), 60, "the worker on its host")
        self.ready = True

    def tools(self) -> list[str]:
        return self.tool_log.read_text().splitlines() if self.tool_log.exists() else []

    def stop(self) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.join(70)  # (it may be waiting for a worker it just started)
        for process in (self.worker, self.web, self.other_web):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        for proxy in self.proxies:
            proxy.close()
        self.redis.stop()
        self.host.destroy()
        for log, _ in self.logs:
            log.close()
        self.database.drop()


@pytest.fixture(scope="module")
def matrix(
    postgres: PostgresDatabase, scripted: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    require_netns()
    built = Matrix("or_faults", scripted, tmp_path_factory.mktemp("faults"))
    try:
        yield built.start()
    finally:
        built.stop()
        if RESULTS:
            print("\nfault matrix:\n" + "\n".join(f"  {cell}: {result}" for cell, result in RESULTS))


def run_cell(matrix: Matrix, name: str, step_tool: str, fault: Any, *, reconnect: bool = False) -> None:
    """Stream a tool loop, inject ``fault`` once ``step_tool`` runs, check everything.

    ``reconnect``: the fault ends the client's stream; it reconnects to the other web process
    with ``starting_after`` (its last ``sequence_number``) and reads the rest there.
    """
    before = len(matrix.tools())
    restarts = matrix.restarts
    _wait(lambda: matrix.ready and matrix.worker.poll() is None, 90, "a running worker")  # type: ignore[union-attr]
    reader = StreamReader(
        matrix.url,
        {
            "model": "chat-fast",
            "input": f'CALL logged_tool {{"name": "a"}} ; {step_tool} {{"name": "b"}}',
            "tools": [{"type": "function", "name": n} for n in ("logged_tool", step_tool)],
            "stream": True,
        },
    )
    reader.start()
    _wait(lambda: any(f"start {step_tool}" in line for line in matrix.tools()[before:]), 30, step_tool)
    # The quick tool's result stored: a completed call (which must never run again), not one that
    # may have started (which runs again with its idempotency key).
    response_id = reader.events[0]["response"]["id"]
    _wait(lambda: quick_result_stored(matrix.database, response_id), 30, "the quick tool's result")
    seen = len(reader.events)
    faulted_at = time.time()
    fault()
    reader.join(120)
    assert not reader.is_alive(), f"{name}: the stream ended within 120 s"
    events = reader.events
    if reconnect:
        assert reader.error is not None, "the stream was cut"
        with httpx.Client(base_url=matrix.other_url, timeout=120) as http:
            rest, done = _read(http, events[0]["response"]["id"], events[-1]["sequence_number"])
        assert done
        reader.arrived += [time.time()] * len(rest)
        events = events + rest
    else:
        assert reader.error is None, reader.error
    assert_valid_stream(events)
    assert events[-1]["type"] == "response.completed", events[-2:]
    lines = matrix.tools()[before:]
    assert [line.split()[0] for line in lines if "logged_tool" in line] == ["start", "done"]
    assert [line for line in lines if line.startswith(f"done {step_tool}")].__len__() == 1
    with httpx.Client(base_url=matrix.other_url, timeout=60) as http:
        stored, done = _read(http, response_id, None)
        assert done and stored == events
    takeovers = matrix.database.query(
        "SELECT takeovers FROM responses_app_response WHERE id = %s", response_id
    )
    after = reader.arrived[seen] - faulted_at if len(reader.arrived) > seen else float("nan")
    RESULTS.append(
        (
            name,
            f"completed, {len(events)} events valid and equal to the store, tools once, "
            f"takeovers {takeovers[0][0]}, worker restarts {matrix.restarts - restarts}, next event {after:.1f} s after the fault, "
            f"end {reader.arrived[-1] - faulted_at:.1f} s after it",
        )
    )


def test_worker_sigkill(matrix: Matrix):
    def fault() -> None:
        assert matrix.worker is not None
        os.kill(matrix.worker.pid, signal.SIGKILL)  # the supervisor thread starts another

    run_cell(matrix, "worker SIGKILL", "blocking_tool", fault)


def test_redis_restart(matrix: Matrix):
    def fault() -> None:
        matrix.redis.stop()
        time.sleep(1.0)
        matrix.redis.start()

    run_cell(matrix, "Redis restart", "pause_tool", fault)


def test_worker_partitioned_from_redis_for_5_s(matrix: Matrix):
    def fault() -> None:
        matrix.host.block(matrix.host.service_ip)
        try:
            time.sleep(5.0)
        finally:
            matrix.host.heal()

    run_cell(matrix, "worker partitioned from Redis 5 s", "pause_tool", fault)


def test_web_process_sigkill_and_reconnect(matrix: Matrix):
    """The web process a client streams from dies; the client reconnects to another one."""

    def fault() -> None:
        assert matrix.web is not None
        matrix.web.kill()
        matrix.web.wait(10)

    try:
        run_cell(matrix, "web process SIGKILL, client reconnects", "pause_tool", fault, reconnect=True)
    finally:
        matrix.url, matrix.web = matrix.start_web()


def test_background_response_worker_sigkill(matrix: Matrix):
    """A background response (no client attached) survives the SIGKILL of its worker too."""
    before = len(matrix.tools())
    _wait(lambda: matrix.ready and matrix.worker.poll() is None, 90, "a running worker")  # type: ignore[union-attr]
    with httpx.Client(base_url=matrix.url, timeout=60) as http:
        created = http.post(
            "/v1/responses",
            json={
                "model": "chat-fast",
                "input": 'CALL logged_tool {"name": "a"} ; blocking_tool {"name": "b"}',
                "tools": [{"type": "function", "name": n} for n in ("logged_tool", "blocking_tool")],
                "background": True,
            },
        ).json()
        assert created["status"] == "queued"
        _wait(lambda: any("start blocking_tool" in line for line in matrix.tools()[before:]), 30, "the tool")
        _wait(lambda: quick_result_stored(matrix.database, created["id"]), 30, "the quick tool's result")
        faulted_at = time.time()
        assert matrix.worker is not None
        os.kill(matrix.worker.pid, signal.SIGKILL)

        def finished() -> bool:
            return http.get(f"/v1/responses/{created['id']}").json()["status"] not in {
                "queued",
                "in_progress",
            }

        _wait(finished, 120, "the response's end")
        ended = time.time() - faulted_at
        final = http.get(f"/v1/responses/{created['id']}").json()
        assert final["status"] == "completed"
    with httpx.Client(base_url=matrix.other_url, timeout=60) as http:
        events, done = _read(http, created["id"], None)
    assert done
    assert_valid_stream(events)
    assert events[-1]["response"]["output"] == final["output"]
    lines = matrix.tools()[before:]
    assert [line.split()[0] for line in lines if "logged_tool" in line] == ["start", "done"]
    assert [line.split()[0] for line in lines if "blocking_tool" in line] == ["start", "start", "done"]
    RESULTS.append(
        ("background, worker SIGKILL", f"completed after 1 takeover, {ended:.1f} s after the fault")
    )
