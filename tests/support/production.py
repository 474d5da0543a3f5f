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
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

    def __init__(self, prefix: str = "or_loop") -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._admin("CREATE DATABASE " + self.name)

    @property
    def url(self) -> str:
        return f"postgres://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{self.name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(
            host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname=self.name, autocommit=True
        ) as conn:
            return list(conn.execute(sql, params).fetchall())

    def drop(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# --------------------------------------------------------------------------- a private Redis


class PrivateRedis:
    """A redis-server of our own on a free port, for tests that stop and restart Redis."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
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
                "127.0.0.1",
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


@dataclass
class UpstreamCall:
    body: dict[str, Any]
    started: float
    ended: float | None = None
    disconnected: float | None = None  # when a write failed: the client closed the stream


@dataclass
class ScriptedUpstream:
    """An OpenAI Chat Completions server on 127.0.0.1 whose answers follow the last user message.

    * ``CALL name {json} ; name2 {json}`` — call these tools (in parallel), then, once the tool
      results come back, answer ``The tool returned: <outputs joined by " | ">``;
    * ``ALWAYS name {json}`` — call the tool every time (for iteration limits);
    * anything else — answer ``You said: <text>``, one word per chunk.

    Models whose name contains ``paced`` wait ``delay`` seconds between chunks; with ``failsecond``
    the sample after a tool result fails with HTTP 500.
    """

    delay: float = 0.05
    calls: list[UpstreamCall] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.peak = self.active

    def wait_for_calls(self, count: int, timeout: float = 30.0) -> list[UpstreamCall]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} upstream calls, got {len(self.calls)}")
            time.sleep(0.02)
        return list(self.calls)

    # ---- the script

    @staticmethod
    def _text(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""

    def plan(self, body: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
        """(tool calls, text) to answer ``body`` with."""
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        text = self._text(users[-1]).strip() if users else ""
        trailing_tools = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            trailing_tools.insert(0, self._text(message))
        tools = body.get("tools") or []
        if tools and text.startswith("ALWAYS "):
            return [self._parse_call(text[len("ALWAYS ") :])], ""
        if trailing_tools:
            return [], "The tool returned: " + " | ".join(trailing_tools)
        if tools and text.startswith("CALL "):
            return [self._parse_call(part) for part in text[len("CALL ") :].split(" ; ")], ""
        return [], f"You said: {text}"

    @staticmethod
    def _parse_call(spec: str) -> tuple[str, str]:
        name, _, arguments = spec.strip().partition(" ")
        return name, arguments.strip() or "{}"

    def chunks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        calls, text = self.plan(body)
        base = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        out = [
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}
                ],
            }
        ]
        for index, (name, arguments) in enumerate(calls):
            call = {
                "index": index,
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            out.append(
                {**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}
            )
            out.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        words = re.findall(r"\S+\s*", text)
        for word in words:
            out.append({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
        out.append(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}],
            }
        )
        prompt = sum(len(self._text(m).split()) for m in body.get("messages") or []) or 1
        out.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(words) + len(calls),
                    "total_tokens": prompt + len(words) + len(calls),
                },
            }
        )
        return out

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        calls, text = self.plan(body)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": n, "arguments": a},
                }
                for n, a in calls
            ]
        prompt = sum(len(self._text(m).split()) for m in body.get("messages") or []) or 1
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(text.split()) + len(calls),
                "total_tokens": prompt + len(text.split()) + len(calls),
            },
        }

    # ---- the server

    def __enter__(self) -> ScriptedUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                call = UpstreamCall(body, time.monotonic())
                with upstream._lock:
                    upstream.calls.append(call)
                if (
                    "failsecond" in str(body.get("model"))
                    and (body.get("messages") or [{}])[-1].get("role") == "tool"
                ):
                    data = b'{"error": {"message": "scripted failure on the second sample", "type": "server_error"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    call.ended = time.monotonic()
                    return
                if not body.get("stream"):
                    data = json.dumps(upstream.completion(body)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    call.ended = time.monotonic()
                    return
                delay = upstream.delay if "paced" in str(body.get("model")) else 0.0
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with upstream._lock:
                    upstream.active += 1
                    upstream.peak = max(upstream.peak, upstream.active)
                try:
                    frames = [f"data: {json.dumps(c)}\n\n".encode() for c in upstream.chunks(body)] + [
                        b"data: [DONE]\n\n"
                    ]
                    for index, frame in enumerate(frames):
                        if delay and index:
                            time.sleep(delay)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    call.ended = time.monotonic()
                except (BrokenPipeError, ConnectionResetError):
                    call.disconnected = time.monotonic()
                    self.close_connection = True
                finally:
                    with upstream._lock:
                        upstream.active -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


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
