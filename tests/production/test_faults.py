"""The fault matrix: workers on hosts of their own, across real network links, against faults.

Each worker is a Celery worker inside a network namespace the test creates
(``tests/support/netns``), linked to the test's namespace by a veth pair; a PostgreSQL server of
the test's own (so restarting it touches nothing else), a private Redis, two web processes
(daphne) and the scripted upstream run here. Every cell starts a streaming and a background
response whose tool step is in flight (a hosted tool held until the fault is in place), injects
one fault, and checks for both: the terminal state, the client's stream (complete, gap-free, in
order, spec-valid, equal to the stored log; a client cut off reconnects with ``starting_after``),
the stored log of the background response, and that no tool ran twice. It prints the time to
recover. Every wait is bounded; namespaces, rules, servers and processes are removed even when a
cell fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openresponses_site.runserver import commands
from tests.support.netns import Namespace, TcpProxy, require_netns
from tests.support.production import (
    POSTGRES_USER,
    PostgresDatabase,
    PrivatePostgres,
    PrivateRedis,
    upstream_config,
)
from tests.support.server import ARTIFACTS, ROOT, free_port, wait_for_http
from tests.support.spec import assert_valid_stream
from tests.support.upstream import ScriptedUpstream

from .conftest import topology_env
from .test_durable import StreamReader, _read, _wait, quick_result_stored

TOOLS = ("logged_tool", "hold_tool")
RESULTS: list[tuple[str, str]] = []
Fault = Callable[[list[Namespace]], contextlib.AbstractContextManager]


class Matrix:
    """PostgreSQL, Redis and the web processes here; workers on hosts ``a`` and ``b`` (``b`` a spare)."""

    def __init__(self, scripted: ScriptedUpstream, tmp: Path) -> None:
        self.tmp = tmp
        index = os.getpid() % 50
        # ``w``: a web process on a host of its own, for the cell that cuts a web process off Redis.
        self.hosts = {
            "a": Namespace(index=index),
            "b": Namespace(index=index + 50),
            "w": Namespace(index=index + 100),
        }
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis(
            tmp, bind=" ".join(["127.0.0.1", *(h.service_ip for h in self.hosts.values())])
        )
        self.database: PostgresDatabase | None = None
        self.proxies: dict[tuple[str, str], TcpProxy] = {}
        self.workers: dict[str, subprocess.Popen] = {}
        self.wanted: set[str] = set()
        self.worker_env: dict[str, dict[str, str]] = {}
        self.tool_log = tmp / "tools.log"
        self.scripted = scripted
        self.logs: list[Any] = []
        self.stopping = False
        self.ready: set[str] = set()
        self.restarts = 0
        self.lock = threading.Lock()
        self.supervisor: threading.Thread | None = None
        self.web = self.other_web = None
        self.extra: list[subprocess.Popen] = []  # other web processes a cell started

    def start(self) -> Matrix:
        for host in self.hosts.values():
            host.create()
        self.pg.start()
        self.database = PostgresDatabase("or_faults", host=self.pg.host, port=self.pg.port)
        self.redis.start()
        upstream_port = int(self.scripted.base_url.rsplit(":", 1)[1].split("/")[0])
        config = upstream_config(self.tmp / "openresponses.json", self.scripted.base_url)
        tag = self.hosts["a"].name
        self.env = {
            **os.environ,
            **topology_env(str(config)),
            "OPENRESPONSES_HOSTED_TOOLS": ",".join(f"tests.support.hosted_tools.{n}" for n in TOOLS),
            "OPENRESPONSES_TEST_TOOL_LOG": str(self.tool_log),
            "OPENRESPONSES_TEST_TOOL_TIMEOUT": "60",
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
        for name, host in self.hosts.items():
            pg = self.proxies[name, "pg"] = TcpProxy(host.root_ip, (self.pg.host, self.pg.port))
            model = self.proxies[name, "model"] = TcpProxy(host.root_ip, ("127.0.0.1", upstream_port))
            self.worker_env[name] = {
                **self.env,
                "OPENRESPONSES_CONFIG": str(
                    upstream_config(
                        self.tmp / f"openresponses-{name}.json", f"http://{host.root_ip}:{model.port}/v1"
                    )
                ),
                "DATABASE_URL": f"postgres://{POSTGRES_USER}@{host.root_ip}:{pg.port}/{self.database.name}",
                "REDIS_URL": f"redis://{host.service_ip}:{self.redis.port}/0",
                "OPENRESPONSES_TEST_HOST": name,
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
        self.want_worker("a")
        self.supervisor = threading.Thread(target=self._supervise, daemon=True)
        self.supervisor.start()
        return self

    def _supervise(self) -> None:
        """Restart a worker when it exits, as ``make run`` or any process manager does."""
        while not self.stopping:
            for name in list(self.wanted):
                worker = self.workers.get(name)
                if worker is not None and worker.poll() is not None and name in self.wanted:
                    self.restarts += 1
                    try:
                        self.start_worker(name)
                    except AssertionError:
                        pass  # not ready in time (its host cut off?): checked again next round
            time.sleep(0.2)

    def want_worker(self, name: str) -> None:
        """Start the worker of host ``name`` (if it is not running) and keep it running."""
        with self.lock:
            if name not in self.wanted:
                self.start_worker(name)
                self.wanted.add(name)

    def drop_worker(self, name: str) -> None:
        """Stop the worker of host ``name`` (SIGTERM: it finishes its tasks; none run there now)."""
        with self.lock:
            self.wanted.discard(name)
            worker = self.workers.pop(name, None)
            self.ready.discard(name)
        if worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)

    def start_web(self, host: str | None = None) -> tuple[str, subprocess.Popen]:
        """A web process here, or on host ``host`` (reaching PostgreSQL and Redis across its link)."""
        port = free_port()
        if host is None:
            url = f"http://127.0.0.1:{port}"
            web = self._spawn("web", commands("127.0.0.1", port)["web"], self.env)
        else:
            where = self.hosts[host]
            url = f"http://{where.ip}:{port}"
            argv = where.command(commands(where.ip, port)["web"])
            web = self._spawn(f"web-{host}", argv, self.worker_env[host])
        wait_for_http(url + "/v1/", timeout=60, process=web)
        return url, web

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"faults-{name}-{self.hosts['a'].name}-{len(self.logs)}.log"
        log = open(path, "w")  # noqa: SIM115 - closed in stop()
        self.logs.append((log, path))
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def start_worker(self, name: str) -> None:
        argv = self.hosts[name].command(
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
                "--hostname",
                f"{name}@%h",
            ]
        )
        self.ready.discard(name)
        self.workers[name] = self._spawn(f"worker-{name}", argv, self.worker_env[name])
        path = self.logs[-1][1]
        _wait(lambda: " ready." in path.read_text(errors="replace"), 60, f"the worker on host {name}")
        self.ready.add(name)

    def wait_workers(self) -> None:
        def up() -> bool:
            return all(n in self.ready and self.workers[n].poll() is None for n in self.wanted)

        _wait(up, 90, "running workers")

    def tools(self) -> list[str]:
        return self.tool_log.read_text().splitlines() if self.tool_log.exists() else []

    def release(self) -> None:
        """Let the held tool steps finish."""
        Path(f"{self.tool_log}.release").touch()

    def stop(self) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.join(70)  # (it may be waiting for a worker it just started)
        for process in (*self.workers.values(), self.web, self.other_web, *self.extra):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        for proxy in self.proxies.values():
            proxy.close()
        self.redis.stop()
        for host in self.hosts.values():
            host.destroy()
        for log, _ in self.logs:
            log.close()
        self.pg.destroy()


@pytest.fixture(scope="module")
def matrix(scripted: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    require_netns()
    built = Matrix(scripted, tmp_path_factory.mktemp("faults"))
    try:
        yield built.start()
    finally:
        built.stop()
        if RESULTS:
            print("\nfault matrix:\n" + "\n".join(f"  {cell}: {result}" for cell, result in RESULTS))


def _status(url: str, response_id: str) -> str | None:
    """The stored status (None while it cannot be read: a fault may be under way)."""
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            answer = http.get(f"/v1/responses/{response_id}")
    except httpx.HTTPError:
        return None
    return answer.json()["status"] if answer.status_code == 200 else None


def _hosts_running(matrix: Matrix, response_id: str) -> set[str]:
    """The hosts whose worker started the held tool of ``response_id``."""
    return {
        line.rsplit("@", 1)[1]
        for line in matrix.tools()
        if line.startswith("start hold_tool") and f" {response_id}:" in line
    }


def run_cell(
    matrix: Matrix,
    name: str,
    fault: Fault,
    *,
    reconnect: bool = False,
    spare: bool = False,
    stream_url: str | None = None,
) -> dict[str, tuple[int, list[str]]]:
    """A streaming and a background response, their tool steps held; inject ``fault``; check both.

    ``fault(hosts)`` is a context manager given the hosts running the held steps: it injects the
    fault on entry (the steps are released then) and ends it on exit. ``spare``: a second worker
    (host ``b``) is started once the steps are running on ``a``, to take them over.
    ``reconnect``: the fault ends the client's stream; it reconnects to the other web process
    with ``starting_after`` (its last ``sequence_number``) and reads the rest there.
    ``stream_url``: the web process the client streams from (default: ``matrix.url``).
    Returns, for each of the two responses, its takeovers and the hosts its held tool started on.
    """
    if spare:
        matrix.drop_worker("b")
    Path(f"{matrix.tool_log}.release").unlink(missing_ok=True)
    matrix.wait_workers()
    restarts = matrix.restarts
    body = {
        "model": "chat-fast",
        "input": 'CALL logged_tool {"name": "a"} ; hold_tool {"name": "b"}',
        "tools": [{"type": "function", "name": n} for n in TOOLS],
    }
    reader = StreamReader(stream_url or matrix.url, {**body, "stream": True})
    reader.start()
    with httpx.Client(base_url=matrix.url, timeout=60) as http:
        created = http.post("/v1/responses", json={**body, "background": True})
    background = created.json()
    assert background.get("status") == "queued", (created.status_code, background)
    _wait(lambda: bool(reader.events), 30, "the stream's first event")
    ids = {"streaming": reader.events[0]["response"]["id"], "background": background["id"]}
    for response_id in ids.values():
        _wait(lambda rid=response_id: _hosts_running(matrix, rid), 30, "the held tool")
        # The quick tool's result stored: a completed call, which must never run again.
        _wait(lambda rid=response_id: quick_result_stored(matrix.database, rid), 30, "the quick result")
    hosts = sorted(set().union(*(_hosts_running(matrix, rid) for rid in ids.values())))
    if spare:
        matrix.want_worker("b")
    seen = len(reader.events)
    faulted_at = time.time()
    ended: list[float] = []

    def watch_background() -> None:
        """Note when the background response ends (polled from the other web process)."""
        while time.time() - faulted_at < 240:
            if _status(matrix.other_url, ids["background"]) not in {None, "queued", "in_progress"}:
                ended.append(time.time())
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_background, daemon=True)
    watcher.start()
    with fault([matrix.hosts[h] for h in hosts]):
        matrix.release()
    reader.join(max(1.0, 240 - (time.time() - faulted_at)))
    assert not reader.is_alive(), f"{name}: the stream ended within 240 s"
    watcher.join(max(1.0, 240 - (time.time() - faulted_at)))
    assert ended, f"{name}: the background response ended within 240 s"
    background_end = ended[0]
    events = reader.events
    if reconnect:
        assert reader.error is not None, "the stream was cut"
        with httpx.Client(base_url=matrix.other_url, timeout=120) as http:
            rest, done = _read(http, ids["streaming"], events[-1]["sequence_number"])
        assert done
        reader.arrived += [time.time()] * len(rest)
        events = events + rest
    else:
        assert reader.error is None, reader.error
    assert_valid_stream(events)
    assert events[-1]["type"] == "response.completed", events[-2:]
    lines = matrix.tools()
    outcome = []
    found: dict[str, tuple[int, list[str]]] = {}
    with httpx.Client(base_url=matrix.other_url, timeout=60) as http:
        for kind, response_id in ids.items():
            stored, done = _read(http, response_id, None)
            assert done
            assert_valid_stream(stored)
            final = http.get(f"/v1/responses/{response_id}").json()
            assert final["status"] == "completed", (kind, final.get("error"))
            assert stored[-1]["response"]["output"] == final["output"]
            if kind == "streaming":
                assert stored == events, "the client got the stored log, each event once and in order"
            mine = [line.split() for line in lines if f" {response_id}:" in line]
            kinds = [line[:2] for line in mine]
            assert kinds.count(["start", "logged_tool"]) == 1 and kinds.count(["done", "logged_tool"]) == 1
            # A call whose result was lost with its worker runs again with the same key (the tool
            # honours it): done once.
            assert kinds.count(["done", "hold_tool"]) == 1, f"{kind}: the held tool completed once"
            assert len({line[2] for line in mine if line[1] == "hold_tool"}) == 1, "one key per call"
            runs = [line[3] for line in mine if line[:2] == ["start", "hold_tool"]]
            takeovers = matrix.database.query(
                "SELECT takeovers FROM responses_app_response WHERE id = %s", response_id
            )[0][0]
            found[kind] = (takeovers, runs)
            outcome.append(
                f"{kind}: {len(stored)} events, takeovers {takeovers}, held tool started on {','.join(runs)}"
            )
    after = reader.arrived[seen] - faulted_at if len(reader.arrived) > seen else float("nan")
    RESULTS.append(
        (
            name,
            f"completed; {'; '.join(outcome)}; steps on host {'+'.join(hosts)}; worker restarts "
            f"{matrix.restarts - restarts}; stream's next event {after:.1f} s after the fault, its end "
            f"{reader.arrived[-1] - faulted_at:.1f} s; background's end {background_end - faulted_at:.1f} s",
        )
    )
    if spare:
        matrix.drop_worker("b")
    return found


@contextlib.contextmanager
def _partition(
    hosts: list[Namespace], address: Callable[[Namespace], tuple[str, int]], seconds: float, *more: Callable
):
    """Cut ``hosts`` off the service at ``address(host)`` (and at each of ``more``) for ``seconds``."""
    try:
        for host in hosts:
            for where in (address, *more):
                host.block(*where(host))
        yield
        time.sleep(seconds)
    finally:
        for host in hosts:
            host.heal()


def test_worker_sigkill(matrix: Matrix):
    @contextlib.contextmanager
    def fault(hosts: list[Namespace]) -> Iterator[None]:
        for host in hosts:
            os.kill(matrix.workers[_name(matrix, host)].pid, signal.SIGKILL)  # the supervisor restarts it
        yield

    run_cell(matrix, "worker SIGKILL", fault)


def _name(matrix: Matrix, host: Namespace) -> str:
    return next(name for name, candidate in matrix.hosts.items() if candidate is host)


def test_redis_restart(matrix: Matrix):
    @contextlib.contextmanager
    def fault(hosts: list[Namespace]) -> Iterator[None]:
        matrix.redis.stop()
        try:
            yield
            time.sleep(1.0)
        finally:
            matrix.redis.start()

    restarts = matrix.restarts
    run_cell(matrix, "Redis restarted (1 s down)", fault)
    # The workers reconnected instead of exiting (kombu's error on a lost broker, openresponses_site.broker).
    assert matrix.restarts == restarts


def _redis(matrix: Matrix) -> Callable[[Namespace], tuple[str, int]]:
    return lambda host: (host.service_ip, matrix.redis.port)


def _postgres(matrix: Matrix) -> Callable[[Namespace], tuple[str, int]]:
    return lambda host: (host.root_ip, matrix.proxies[_name(matrix, host), "pg"].port)


def test_worker_partitioned_from_redis_for_5_s(matrix: Matrix):
    run_cell(matrix, "worker partitioned from Redis 5 s", lambda h: _partition(h, _redis(matrix), 5.0))


@pytest.mark.timeout(360)
def test_worker_partitioned_from_redis_for_60_s(matrix: Matrix):
    restarts = matrix.restarts
    run_cell(matrix, "worker partitioned from Redis 60 s", lambda h: _partition(h, _redis(matrix), 60.0))
    assert matrix.restarts == restarts
    # The worker takes new work again once the link is back (it reconnects to the broker).
    healed = time.time()
    with httpx.Client(base_url=matrix.url, timeout=150) as http:
        fresh = http.post("/v1/responses", json={"model": "chat-fast", "input": "after the partition"})
    assert fresh.json()["status"] == "completed"
    RESULTS.append(("  then a new response", f"completed {time.time() - healed:.1f} s after the heal"))


def test_postgres_restart(matrix: Matrix):
    @contextlib.contextmanager
    def fault(hosts: list[Namespace]) -> Iterator[None]:
        # Both web processes hold a database connection now (the other one serves the checks).
        assert _status(matrix.other_url, "resp_none") is None
        matrix.pg.restart(down=2.0)
        yield

    run_cell(matrix, "PostgreSQL restarted (2 s down)", fault)


def test_worker_partitioned_from_postgres_for_5_s(matrix: Matrix):
    run_cell(
        matrix,
        "worker partitioned from PostgreSQL 5 s",
        lambda h: _partition(h, _postgres(matrix), 5.0),
        spare=True,
    )


@pytest.mark.timeout(300)
def test_worker_partitioned_from_postgres_for_60_s(matrix: Matrix):
    found = run_cell(
        matrix,
        "worker partitioned from PostgreSQL 60 s",
        lambda h: _partition(h, _postgres(matrix), 60.0),
        spare=True,
    )
    # The cut-off worker takes no task while it cannot reach PostgreSQL (openresponses_site.database_gate):
    # each response is taken over once, by the spare.
    for kind, (takeovers, runs) in found.items():
        assert takeovers == 1 and runs[-1] == "@b", (kind, takeovers, runs)


@pytest.mark.timeout(300)
def test_worker_partitioned_from_redis_and_postgres(matrix: Matrix):
    """The worker's host loses its whole link to the services for 20 s; a spare takes over."""
    found = run_cell(
        matrix,
        "worker partitioned from Redis and PostgreSQL 20 s",
        lambda h: _partition(h, _postgres(matrix), 20.0, _redis(matrix)),
        spare=True,
    )
    for kind, (takeovers, runs) in found.items():
        assert takeovers == 1 and runs[-1] == "@b", (kind, takeovers, runs)


@pytest.mark.timeout(300)
def test_web_process_partitioned_from_redis(matrix: Matrix):
    """The web process a client streams from loses Redis for 10 s: the stream goes on from the
    store, and the process streams live again once the link is back."""
    url, web = matrix.start_web("w")
    matrix.extra.append(web)
    host = matrix.hosts["w"]
    created: list[tuple[httpx.Response, float]] = []

    def create_there() -> None:
        """A create on the cut-off web process: a prompt 503, or queued once its publish gets through."""
        started = time.time()
        with httpx.Client(base_url=url, timeout=120) as http:
            answer = http.post(
                "/v1/responses", json={"model": "chat-fast", "input": "cut off", "background": True}
            )
        created.append((answer, time.time() - started))

    @contextlib.contextmanager
    def fault(_: list[Namespace]) -> Iterator[None]:
        creating = threading.Thread(target=create_there, daemon=True)
        with _partition([host], _redis(matrix), 10.0):
            creating.start()
            yield
        creating.join(120)

    try:
        run_cell(matrix, "web process partitioned from Redis 10 s", fault, stream_url=url)
        assert created, "the create on the cut-off web process answered within 120 s"
        answer, took = created[0]
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "service_unavailable"
            outcome = "503"
        else:
            assert answer.status_code == 200 and answer.json()["status"] == "queued", answer.text[:300]
            response_id = answer.json()["id"]
            _wait(
                lambda: _status(matrix.other_url, response_id) == "completed", 60, "the create's completion"
            )
            outcome = "queued, then completed"
        RESULTS.append(("  a create there during the partition", f"{outcome}, answered in {took:.1f} s"))
        healed = time.time()
        reader = StreamReader(url, {"model": "chat-fast", "input": "after the partition", "stream": True})
        reader.start()
        reader.join(120)
        assert not reader.is_alive() and reader.error is None, reader.error
        assert_valid_stream(reader.events)
        assert reader.events[-1]["type"] == "response.completed"
        RESULTS.append(
            ("  then a new stream there", f"completed {time.time() - healed:.1f} s after the heal")
        )
    finally:
        host.heal()
        web.kill()
        web.wait(10)


def test_slow_link(matrix: Matrix):
    """The worker's link: 2 Mbit/s each way, 3 % of packets lost each way, 50 ms added per exchange."""

    @contextlib.contextmanager
    def fault(hosts: list[Namespace]) -> Iterator[None]:
        proxies = [matrix.proxies[_name(matrix, host), kind] for host in hosts for kind in ("pg", "model")]
        try:
            for host in hosts:
                host.slow(rate="2mbit", loss=0.03)
            for proxy in proxies:
                proxy.delay = 0.05
            yield
            time.sleep(10.0)
        finally:
            for proxy in proxies:
                proxy.delay = 0.0
            for host in hosts:
                host.heal()

    run_cell(matrix, "slow link (2 Mbit/s, 3 % loss, +50 ms) for 10 s", fault)


def test_web_process_sigkill_and_reconnect(matrix: Matrix):
    """The web process a client streams from dies; the client reconnects to another one."""

    @contextlib.contextmanager
    def fault(hosts: list[Namespace]) -> Iterator[None]:
        assert matrix.web is not None
        matrix.web.kill()
        matrix.web.wait(10)
        yield

    try:
        run_cell(matrix, "web process SIGKILL, client reconnects", fault, reconnect=True)
    finally:
        matrix.url, matrix.web = matrix.start_web()


def test_create_while_redis_is_down(matrix: Matrix):
    """A create while Redis (broker and bus) is down: a clear 503 at once, nothing left stored;
    served again once Redis is back."""
    matrix.wait_workers()
    body = {"model": "chat-fast", "input": "while Redis is down"}
    before = matrix.database.query("SELECT count(*) FROM responses_app_response")[0][0]
    matrix.redis.stop()
    try:
        answers = {}
        with httpx.Client(base_url=matrix.url, timeout=60) as http:
            for kind, extra in (("background", {"background": True}), ("streaming", {"stream": True})):
                started = time.time()
                answers[kind] = (http.post("/v1/responses", json={**body, **extra}), time.time() - started)
    finally:
        matrix.redis.start()
    for kind, (answer, took) in answers.items():
        assert answer.status_code == 503, (kind, answer.status_code, answer.text[:300])
        assert answer.json()["error"]["code"] == "service_unavailable"
        assert answer.headers["Retry-After"] == "1"
        assert took < 10, (kind, took)
    # Nothing stored that no loop would ever run (it would stay queued until the reaper's 10 min).
    assert matrix.database.query("SELECT count(*) FROM responses_app_response")[0][0] == before
    healed = time.time()
    with httpx.Client(base_url=matrix.url, timeout=120) as http:
        again = http.post("/v1/responses", json=body)
    assert again.status_code == 200 and again.json()["status"] == "completed", again.text[:300]
    RESULTS.append(
        (
            "create while Redis is down",
            "503 service_unavailable in "
            + ", ".join(f"{kind} {took:.2f} s" for kind, (_, took) in answers.items())
            + f", nothing stored; a create completed {time.time() - healed:.1f} s after Redis restarted",
        )
    )
