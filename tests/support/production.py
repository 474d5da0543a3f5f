"""The production topology for tests and benchmarks: PostgreSQL, Redis, `make run`'s supervisor
(daphne + Celery worker + beat) and a scripted Chat Completions upstream on loopback.

Every session gets its own database, channel-layer prefix and Celery queue, so parallel runs on
the shared services never collide. ``require_services`` skips (or, under ``CI=true``, fails) when
PostgreSQL or Redis is not there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .server import ARTIFACTS, ROOT, free_port, wait_for_http

POSTGRES_HOST = os.environ.get("OPENRESPONSES_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("OPENRESPONSES_TEST_PG_PORT", "5432"))
POSTGRES_USER = os.environ.get("OPENRESPONSES_TEST_PG_USER", "postgres")
REDIS_HOST = "127.0.0.1"
REDIS_PORT = int(os.environ.get("OPENRESPONSES_TEST_REDIS_PORT", "6379"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_services() -> None:
    """Skip without PostgreSQL and Redis; under ``CI=true`` fail instead."""
    import pytest

    missing = [
        name
        for name, host, port in (
            ("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT),
            ("Redis", REDIS_HOST, REDIS_PORT),
        )
        if not _reachable(host, port)
    ]
    if not missing:
        return
    reason = f"production-topology tests need {' and '.join(missing)} on 127.0.0.1 (not reachable)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason + " — CI=true requires them", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- PostgreSQL


class PostgresDatabase:
    """A uniquely named database, created now and dropped (with its connections) by ``drop``."""

    def __init__(
        self, prefix: str = "or_loop", *, host: str = POSTGRES_HOST, port: int = POSTGRES_PORT
    ) -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.host = host
        self.port = port
        self._admin("CREATE DATABASE " + self.name)

    @property
    def url(self) -> str:
        return f"postgres://{POSTGRES_USER}@{self.host}:{self.port}/{self.name}"

    def _connect(self, dbname: str):  # noqa: ANN202 - a psycopg connection
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=POSTGRES_USER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def _admin(self, sql: str) -> None:
        with self._connect("postgres") as conn:
            conn.execute(sql)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with self._connect(self.name) as conn:
            return list(conn.execute(sql, params).fetchall())

    def drop(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class PrivatePostgres:
    """A PostgreSQL server of our own (``initdb`` into a temporary directory, a free port on
    loopback), for tests that restart PostgreSQL without touching the machine's server.

    PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` system user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.datadir = Path(tempfile.mkdtemp(prefix="or-private-pg-"))
        self.bin = self._find_bin()
        self.log = self.datadir / "server.log"

    @staticmethod
    def _find_bin() -> Path:
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).parent
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not candidates:
            raise RuntimeError("PostgreSQL's server binaries (pg_ctl, initdb) are not installed")
        return candidates[-1].parent

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.datadir / "data"), "-w", *args]),
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> PrivatePostgres:
        if not (self.datadir / "data").exists():
            if os.geteuid() == 0:
                shutil.chown(self.datadir, "postgres", "postgres")
            subprocess.run(
                self._as_owner(
                    [
                        str(self.bin / "initdb"),
                        "-D",
                        str(self.datadir / "data"),
                        "-U",
                        POSTGRES_USER,
                        "--auth=trust",
                        "--no-sync",
                        "-E",
                        "UTF8",
                    ]
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses={self.host} -c fsync=off"
        self._ctl("-l", str(self.log), "-o", options, "start")
        return self

    def restart(self, down: float = 0.0) -> None:
        """Stop (``fast``: every session is closed), stay down ``down`` seconds, start again."""
        self._ctl("-m", "fast", "stop")
        time.sleep(down)
        self.start()

    def stop(self) -> None:
        if (self.datadir / "data" / "postmaster.pid").exists():
            subprocess.run(
                self._as_owner(
                    [str(self.bin / "pg_ctl"), "-D", str(self.datadir / "data"), "-m", "immediate", "stop"]
                ),
                capture_output=True,
                timeout=60,
                check=False,
            )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


# --------------------------------------------------------------------------- a private Redis


class PrivateRedis:
    """A redis-server of our own on a free port, for tests that stop and restart Redis."""

    def __init__(self, workdir: Path, bind: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.bind = bind  # addresses to listen on, space-separated
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                *self.bind.split(),
                # Reachable from the fault matrix's hosts (test namespaces only) when bound beyond loopback.
                "--protected-mode",
                "no" if self.bind != "127.0.0.1" else "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# --------------------------------------------------------------------------- the scripted upstream


# --------------------------------------------------------------------------- the topology


def upstream_config(path: Path, upstream_url: str) -> Path:
    """A config file routing ``chat-*`` to the scripted upstream and registering a hosted tool."""
    path.write_text(
        json.dumps(
            {
                "providers": [
                    {
                        "name": "scripted",
                        "adapter": "openai_chat",
                        "base_url": upstream_url,
                        "api_key_env": "SCRIPTED_KEY",
                        "max_retries": 0,
                    }
                ],
                "routes": [{"pattern": "chat-*", "provider": "scripted"}],
                "hosted_tools": ["tests.support.hosted_tools.slow_tool"],
            }
        )
    )
    return path


class Topology:
    """``python -m openresponses_site.runserver`` (what ``make run`` starts) with REDIS_URL and DATABASE_URL."""

    def __init__(
        self,
        *,
        name: str,
        database_url: str,
        redis_url: str,
        workdir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tag = uuid.uuid4().hex[:8]
        workdir.mkdir(parents=True, exist_ok=True)
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}-{tag}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            # Production mode refuses the repository's development key.
            "DJANGO_SECRET_KEY": "tests-production-topology-secret-key-not-for-production-use",
            "OPENRESPONSES_CHANNEL_PREFIX": f"ortest{tag}",
            "OPENRESPONSES_CELERY_QUEUE": f"ortest-{tag}",
            "OPENRESPONSES_WORKER_CONCURRENCY": "100",
            "OPENRESPONSES_WORKER_PROCESSES": "1",  # the tests kill and watch "the" worker
            "OPENRESPONSES_DISPATCH": "celery",
            "OPENRESPONSES_API_KEYS": "",
            "SCRIPTED_KEY": "sk-scripted-secret-0006",
            "TMPDIR": str(workdir),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=self.env, check=True
        )

    def start(self, timeout: float = 60.0) -> Topology:
        self.migrate()
        log = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openresponses_site.runserver",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(self.url + "/v1/", timeout=timeout, process=self.process)
        self.wait_worker_ready(timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_worker_ready(self, timeout: float = 60.0, after: int = 0) -> None:
        """Wait for the ``ready.`` line of a worker (the ``after``-th one and later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(r"celery@\S+ ready\.", self.log())) > after:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Celery worker did not become ready; see {self.log_path}")

    def pid_of(self, name: str) -> int:
        """The pid of the current ``web``, ``worker`` or ``beat`` child."""
        found = re.findall(rf"started {name} \(pid (\d+)\)", self.log())
        if not found:
            raise RuntimeError(f"no {name} process in {self.log_path}")
        return int(found[-1])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
