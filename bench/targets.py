"""What the benchmark talks to: the fake upstream, our server (embedded or production), LiteLLM."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import Managed, ProcessGroup, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VERSION = "1.76.3"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
MODEL = "bench-model"
CHAT_MODEL = "benchchat-model"
HOSTED_TOOL = "bench_lookup"


@dataclass
class Target:
    """An HTTP endpoint under load and the processes whose CPU and memory it costs."""

    name: str
    port: int
    path: str
    group: ProcessGroup | None = None
    db_group: ProcessGroup | None = None
    chat: bool = False  # speaks Chat Completions (only the direct upstream, when asked)
    model: str = MODEL
    meta: dict[str, Any] = field(default_factory=dict)
    restart: Callable[[], None] | None = None  # a fresh process (after load that outlives its clients)

    def body(self, *, stream: bool, store: bool = True, input: Any = "Say something.", **extra: Any) -> bytes:
        if self.chat:
            messages = input if isinstance(input, list) else [{"role": "user", "content": input}]
            payload: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream, **extra}
            if stream:
                payload["stream_options"] = {"include_usage": True}
        else:
            payload = {"model": self.model, "input": input, "stream": stream, "store": store, **extra}
        return json.dumps(payload).encode()

    @property
    def marker(self) -> bytes:
        return b'"content":"w' if self.chat else b"output_text.delta"


def _service_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def production_available() -> str | None:
    """None when PostgreSQL and Redis answer on 127.0.0.1, else the reason they cannot be used."""
    missing = [name for name, port in (("PostgreSQL", 5432), ("Redis", 6379)) if not _service_up(port)]
    return f"{' and '.join(missing)} not reachable on 127.0.0.1" if missing else None


class Upstream:
    """The fake provider in its own process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.proc = Managed(
            "upstream",
            [sys.executable, "-m", "bench.upstream", "--port", str(self.port)],
            env=dict(os.environ),
            cwd=ROOT,
            log_path=workdir / "upstream.log",
        )
        wait_port(self.port, 15, self.proc)
        self.group = ProcessGroup([self.proc.pid])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def target(self, chat: bool = False) -> Target:
        path = "/v1/chat/completions" if chat else "/v1/responses"
        return Target("direct", self.port, path, self.group, chat=chat, model=CHAT_MODEL if chat else MODEL)

    def stop(self) -> None:
        self.proc.stop()


class OurServer:
    """``python -m openresponses_site.runserver``: daphne alone (embedded) or daphne + Celery (production)."""

    def __init__(
        self,
        topology: str,
        upstream: Upstream,
        workdir: Path,
        *,
        upstream_api: str = "responses",
        worker_concurrency: int = 2200,
        worker_processes: int = 1,
        label: str = "",
        root: Path | None = None,
    ) -> None:
        self.topology = topology
        # The checkout whose code this server runs (another tree of the project: ``bench.ab``).
        self.root = root or ROOT
        self.worker_processes = worker_processes
        self.workdir = workdir / (label or topology)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tag = f"bench-{secrets.token_hex(4)}"
        self.database = ""
        self.sqlite_path = self.workdir / "db.sqlite3"
        config = self.workdir / "openresponses.json"
        adapter = "openai_chat" if upstream_api == "chat" else "openai"
        config.write_text(
            json.dumps(
                {
                    "providers": [
                        {
                            "name": "bench-upstream",
                            "adapter": adapter,
                            "base_url": upstream.base_url + "/v1",
                            "api_key": "sk-bench-not-secret",
                            "max_retries": 0,
                        }
                    ],
                    "routes": [{"pattern": "bench-*", "provider": "bench-upstream"}],
                }
            )
        )
        env = {
            **os.environ,
            **({"PYTHONPATH": str(self.root)} if root else {}),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "OPENRESPONSES_BENCH_TAG": self.tag,
            "OPENRESPONSES_CONFIG": str(config),
            "OPENRESPONSES_HOSTED_TOOLS": f"bench.tools.{HOSTED_TOOL}",
            "OPENRESPONSES_API_KEYS": "",
            "OPENRESPONSES_LOG_LEVEL": os.environ.get("OPENRESPONSES_LOG_LEVEL", "WARNING"),
            "OPENRESPONSES_WORKER_CONCURRENCY": str(worker_concurrency),
            "OPENRESPONSES_WORKER_PROCESSES": str(worker_processes),
            "TMPDIR": str(self.workdir),
        }
        if topology == "production":
            self.database = f"or_bench_{secrets.token_hex(4)}"
            _psql(f'CREATE DATABASE "{self.database}"')
            env.update(
                {
                    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}",
                    "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                    "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(48),
                }
            )
            env.pop("OPENRESPONSES_DISPATCH", None)
        else:
            env.update(
                {
                    "DATABASE_URL": "",
                    "REDIS_URL": "",
                    "OPENRESPONSES_DISPATCH": "inline",
                    "OPENRESPONSES_SQLITE_PATH": str(self.sqlite_path),
                }
            )
        self.env = env
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=self.root, env=env, check=True)
        self.group = ProcessGroup()
        self.db_group: ProcessGroup | None = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.proc = Managed(
            f"ours-{self.topology}",
            [
                sys.executable,
                "-m",
                "openresponses_site.runserver",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=self.root,
            log_path=self.workdir / "server.log",
        )
        wait_port(self.port, 30, self.proc)
        if self.topology == "production":
            self._wait_worker()
        self.group.roots = [self.proc.pid]
        self.group.thaw()

    def restart(self) -> None:
        """A fresh server on the same port and store (loops left by dropped clients die with the old one)."""
        self.proc.stop()
        self._start()
        self.refresh_db_group()

    def _wait_worker(self, timeout: float = 180.0) -> None:
        """Until a response goes all the way through a worker (log lines depend on the log level)."""
        import httpx

        deadline = time.monotonic() + timeout
        body = {"model": MODEL, "input": "ready?", "store": False}
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"server exited:\n{self.proc.tail()}")
            try:
                answer = httpx.post(f"http://127.0.0.1:{self.port}/v1/responses", json=body, timeout=30.0)
                if answer.status_code == 200 and answer.json().get("status") == "completed":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"no Celery worker answered within {timeout}s:\n{self.proc.tail()}")

    def refresh_db_group(self) -> None:
        """PostgreSQL backends serving our database (their CPU is reported apart, as db)."""
        if not self.database:
            return
        out = _psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.database}'", capture=True)
        if self.db_group is None:
            self.db_group = ProcessGroup()
        self.db_group.extra = [int(p) for p in out.split() if p.strip().isdigit()]
        self.db_group.thaw()

    def target(self) -> Target:
        return Target(
            "ours",
            self.port,
            "/v1/responses",
            self.group,
            self.db_group,
            meta={"topology": self.topology, "redis_url": self.env.get("REDIS_URL") or None},
            restart=self.restart,
        )

    def stored_rows(self, ids: list[str]) -> dict[str, tuple[float, float | None, float | None]]:
        """``id -> (created_at, started_at, first_token_at)`` read straight from the store."""
        if not ids:
            return {}
        query = (
            "SELECT id, created_at, started_at, first_token_at FROM responses_app_response WHERE id IN ({})"
        )
        if self.database:
            import psycopg

            with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.database}") as conn:
                rows = conn.execute(query.format(",".join(["%s"] * len(ids))), ids).fetchall()
        else:
            import sqlite3

            with sqlite3.connect(self.sqlite_path) as conn:
                rows = conn.execute(query.format(",".join(["?"] * len(ids))), ids).fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def stop(self) -> None:
        self.proc.stop()
        if self.database:
            _psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def _psql(sql: str, capture: bool = False) -> str:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        cursor = conn.execute(sql)
        if capture:
            return "\n".join(str(row[0]) for row in cursor.fetchall())
    return ""


def ensure_litellm(log: Any = print) -> Path:
    """The pinned LiteLLM proxy in its own virtualenv (created on first use)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if binary.exists() and marker.exists():
        return binary
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV.relative_to(ROOT)} (once)…")
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run(
            [shutil.which("python3") or sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True
        )
    subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
    )
    marker.touch()
    return binary


class LiteLLM:
    """The LiteLLM proxy (one worker) configured to the same fake upstream."""

    def __init__(self, upstream: Upstream, workdir: Path) -> None:
        binary = ensure_litellm()
        self.port = free_port()
        config = workdir / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            f"      model: openai/{MODEL}\n"
            f"      api_base: {upstream.base_url}/v1\n"
            "      api_key: sk-bench-not-secret\n"
            "litellm_settings:\n"
            "  drop_params: true\n"
            "  telemetry: false\n"
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"}
        }
        env.update(
            {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "LITELLM_TELEMETRY": "False",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.cmd_env = env
        self.config = config
        self.workdir = workdir
        self.binary = binary
        self.group = ProcessGroup()
        self._start()

    def _start(self) -> None:
        self.proc = Managed(
            "litellm",
            [
                str(self.binary),
                "--config",
                str(self.config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num_workers",
                "1",
            ],
            env=self.cmd_env,
            cwd=self.workdir,
            log_path=self.workdir / "litellm.log",
        )
        wait_port(self.port, 180, self.proc)
        self.group.roots = [self.proc.pid]
        self.group.thaw()

    def restart(self) -> None:
        self.proc.stop()
        self._start()

    def target(self) -> Target:
        return Target("litellm", self.port, "/v1/responses", self.group, restart=self.restart)

    def stop(self) -> None:
        self.proc.stop()
