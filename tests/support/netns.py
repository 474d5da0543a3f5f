"""Hosts for the fault matrix: network namespaces linked to the test's namespace by veth pairs.

A :class:`Namespace` is one "host" with its own network stack: it reaches the test's namespace
(where PostgreSQL, Redis, the web process and the scripted upstream run) at ``root_ip`` and
``service_ip`` only, through a veth pair, so a fault crosses a real network link. Faults: SIGKILL
of the processes it runs, and a partition from ``service_ip`` (a blackhole route inside the host:
its packets there are dropped silently, as on a cut link; ``tc`` netem and drop actions need
kernel modules that many CI kernels lack). Services listening on loopback are reached through
:class:`TcpProxy` on ``root_ip``.

Everything is torn down by :meth:`Namespace.destroy` (the test's ``finally``), even after a
failure. ``require_netns`` skips when namespaces are not available (not root, no ``ip``/``tc``),
and fails instead under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid


def require_netns() -> None:
    import pytest

    reason = None
    if os.geteuid() != 0:
        reason = "the fault matrix needs root (network namespaces)"
    elif not shutil.which("ip"):
        reason = "the fault matrix needs iproute2 (ip)"
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason + " — CI=true requires it", pytrace=False)
    pytest.skip(reason)


def _run(*args: str, check: bool = True) -> None:
    subprocess.run(list(args), check=check, capture_output=True, timeout=20)


class Namespace:
    """One host: a network namespace linked by veth: ``root_ip``, ``service_ip`` (here) <-> ``ip``."""

    def __init__(self, index: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"or{tag}"
        self.host_if = f"or{tag}h"
        self.ns_if = f"or{tag}n"
        octet = 100 + index
        self.root_ip = f"10.213.{octet}.1"
        self.ip = f"10.213.{octet}.2"
        self.service_ip = f"10.213.{octet}.3"
        self.blocked: set[str] = set()

    def create(self) -> Namespace:
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _run("ip", "link", "set", self.ns_if, "netns", self.name)
        for address in (self.root_ip, self.service_ip):
            _run("ip", "addr", "add", f"{address}/29", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        _run("ip", "-n", self.name, "addr", "add", f"{self.ip}/29", "dev", self.ns_if)
        _run("ip", "-n", self.name, "link", "set", self.ns_if, "up")
        _run("ip", "-n", self.name, "link", "set", "lo", "up")
        return self

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.name, *argv]

    def block(self, address: str) -> None:
        """Partition this host from ``address`` (its packets there are dropped silently)."""
        _run("ip", "-n", self.name, "route", "add", "blackhole", f"{address}/32")
        self.blocked.add(address)

    def heal(self) -> None:
        """Remove every partition."""
        for address in list(self.blocked):
            _run("ip", "-n", self.name, "route", "del", "blackhole", f"{address}/32", check=False)
        self.blocked.clear()

    def destroy(self) -> None:
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.name, check=False)


class TcpProxy:
    """Forwards ``listen_host:port`` to ``target`` (a loopback service made reachable from a host)."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server((listen_host, 0))
        self.port = self.server.getsockname()[1]
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.server.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
