"""Hosts for the fault matrix: network namespaces linked to the test's namespace by veth pairs.

A :class:`Namespace` is one "host" with its own network stack: it reaches the test's namespace
(where PostgreSQL, Redis, the web process and the scripted upstream run) at ``root_ip`` and
``service_ip`` only, through a veth pair, so a fault crosses a real network link. Faults: SIGKILL
of the processes it runs; a partition from one service (``iptables`` DROP rules inside the host,
both directions: packets are dropped silently, as on a cut link); a slow link (the veth pair
rate-limited by ``tc`` ``tbf``, a share of the host's packets dropped at random by ``iptables``'
``statistic`` match, and a one-way delay in :class:`TcpProxy`: kernels without ``sch_netem``,
like many CI kernels, cannot add delay or loss with ``tc``). Services listening on loopback
are reached through :class:`TcpProxy` on ``root_ip``.

Everything is torn down by :meth:`Namespace.destroy` (the test's ``finally``), even after a
failure. ``require_netns`` skips when namespaces are not available (not root, no ``ip``,
``iptables`` or ``tc``), and fails instead under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid


def require_netns() -> None:
    import pytest

    reason = None
    if os.geteuid() != 0:
        reason = "the fault matrix needs root (network namespaces)"
    elif not shutil.which("ip") or not shutil.which("tc"):
        reason = "the fault matrix needs iproute2 (ip, tc)"
    elif not shutil.which("iptables"):
        reason = "the fault matrix needs iptables"
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

    def block(self, address: str, port: int) -> None:
        """Partition this host from the service at ``address:port`` (both directions dropped)."""
        self._iptables("-A", "OUTPUT", "-d", address, "-p", "tcp", "--dport", str(port), "-j", "DROP")
        self._iptables("-A", "INPUT", "-s", address, "-p", "tcp", "--sport", str(port), "-j", "DROP")

    def slow(self, *, rate: str = "2mbit", loss: float = 0.03) -> None:
        """Make the link slow: ``rate`` each way (``tbf``) and ``loss`` of the host's packets
        dropped at random, each way (``iptables`` ``statistic``)."""
        for where in (["ip", "netns", "exec", self.name], []):
            device = self.ns_if if where else self.host_if
            _run(*where, "tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate,
                 "burst", "16kb", "latency", "500ms")  # fmt: skip
        for chain, side in (("OUTPUT", "-o"), ("INPUT", "-i")):
            self._iptables("-A", chain, side, self.ns_if, "-m", "statistic", "--mode", "random",
                           "--probability", str(loss), "-j", "DROP")  # fmt: skip

    def heal(self) -> None:
        """Remove every partition and slowdown."""
        self._iptables("-F", "INPUT", check=False)
        self._iptables("-F", "OUTPUT", check=False)
        _run("ip", "netns", "exec", self.name, "tc", "qdisc", "del", "dev", self.ns_if, "root", check=False)
        _run("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)

    def _iptables(self, *args: str, check: bool = True) -> None:
        _run("ip", "netns", "exec", self.name, "iptables", "-w", "5", *args, check=check)

    def destroy(self) -> None:
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.name, check=False)


class TcpProxy:
    """Forwards ``listen_host:port`` to ``target`` (a loopback service made reachable from a host)."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.target = target
        #: Seconds each chunk waits before it is forwarded, each way (a slow link's latency).
        self.delay = 0.0
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

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
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
