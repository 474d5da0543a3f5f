"""Processes of the benchmark: start and stop them, and read CPU time and RSS of a process tree from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces: fields start after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def kind_of(pid: int) -> str:
    """What a process of our server is: web (daphne), worker, beat, supervisor, or other."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    if b"celery" in args:
        return "worker" if b"worker" in args else "beat" if b"beat" in args else "other"
    if b"openresponses_site.serve" in args or b"daphne" in args:
        return "web"
    if b"openresponses_site.runserver" in args:
        return "supervisor"
    return "other"


def redis_cpu_seconds(url: str) -> float | None:
    """The Redis server's own CPU (user + system, from ``INFO cpu``): every client's, not only ours."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            info = client.info("cpu")
        finally:
            client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:  # noqa: BLE001 - a figure left out, never a failed run
        return None


class ProcessGroup:
    """A set of root processes (plus their children, found on each reading) measured together."""

    def __init__(self, roots: list[int] | None = None, extra: list[int] | None = None) -> None:
        self.roots = list(roots or [])
        self.extra = list(extra or [])  # processes measured without their children (e.g. database backends)
        self._frozen: list[int] | None = None

    def freeze(self) -> None:
        """Stop looking for new children: readings get cheap (for one reading per request)."""
        self._frozen = None
        self._frozen = self.pids()

    def thaw(self) -> None:
        self._frozen = None

    def pids(self) -> list[int]:
        if self._frozen is not None:
            return self._frozen
        pids: list[int] = []
        for root in self.roots:
            pids.extend(descendants(root))
        return pids + [p for p in self.extra if p not in pids]

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the group."""
        total = 0
        for pid in self.pids():
            fields = _stat(pid)
            if fields is not None:
                total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds of the group's live processes by :func:`kind_of`."""
        totals: dict[str, float] = {}
        for pid in self.pids():
            fields = _stat(pid)
            if fields is not None:
                kind = kind_of(pid)
                totals[kind] = totals.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return totals

    def rss_bytes(self) -> int:
        return sum(self.rss_by_kind().values())

    def rss_by_kind(self) -> dict[str, int]:
        """Resident bytes of the group's live processes by :func:`kind_of`."""
        totals: dict[str, int] = {}
        for pid in self.pids():
            try:
                rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                continue
            kind = kind_of(pid)
            totals[kind] = totals.get(kind, 0) + rss
        return totals


class Managed:
    """A subprocess with its log in ``log_path``; stopped with SIGTERM to its process group."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_port(port: int, timeout: float, proc: Managed | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open within {timeout}s" + (f":\n{proc.tail()}" if proc else ""))
