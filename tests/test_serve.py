"""The serving processes: daphne on uvloop (``openresponses_site.serve``), the loop host's loop, and
how many Celery worker processes ``make run`` starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from openresponses_site import runserver
from responses_app.loop.supervision.host import LoopHost, loop_implementation, new_event_loop
from tests.support.server import ROOT, free_port, wait_for_http

TOKEN = "metrics-token-for-the-serve-test"


def _serve_and_scrape(tmp_path: Path, uvloop: str) -> tuple[str, str]:
    """``make run``'s supervisor (embedded), then /metrics: (the exposition, the supervisor's output)."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "OPENRESPONSES_SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "OPENRESPONSES_METRICS_TOKEN": TOKEN,
        "OPENRESPONSES_UVLOOP": uvloop,
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    log = tmp_path / "runserver.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "openresponses_site.runserver", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v1/", timeout=60, process=process)
            answer = httpx.get(
                f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            return answer.text, log.read_text()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.mark.e2e
@pytest.mark.parametrize(("setting", "expected"), [("1", "uvloop"), ("0", "asyncio")])
def test_runserver_serves_on_the_chosen_loop(tmp_path: Path, setting: str, expected: str) -> None:
    """The running web process reports the loop daphne's reactor runs on; OPENRESPONSES_UVLOOP=0 turns it off."""
    metrics, output = _serve_and_scrape(tmp_path, setting)
    assert f'openresponses_event_loop_info{{implementation="{expected}"}} 1' in metrics, metrics
    assert f"[openresponses] web: daphne on {expected}" in output, output


@pytest.mark.parametrize(("setting", "expected"), [("1", "uvloop"), ("off", "asyncio")])
def test_loop_host_runs_on_the_chosen_loop(
    monkeypatch: pytest.MonkeyPatch, setting: str, expected: str
) -> None:
    """The loop host (Celery workers, sync dispatch) makes its loop the same way."""
    monkeypatch.setenv("OPENRESPONSES_UVLOOP", setting)
    host = LoopHost()
    loop = host.loop()
    try:
        assert loop_implementation(loop) == expected
        assert host.run(_answer(), timeout=10) == expected
    finally:
        loop.call_soon_threadsafe(loop.stop)


async def _answer() -> str:
    import asyncio

    return loop_implementation(asyncio.get_running_loop())


def test_new_event_loop_falls_back_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENRESPONSES_UVLOOP", "1")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    loop = new_event_loop()
    try:
        assert loop_implementation(loop) == "asyncio"
    finally:
        loop.close()


def test_worker_processes_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("OPENRESPONSES_WORKER_PROCESSES", "3")
    procs = runserver.commands("127.0.0.1", 8000)
    assert sorted(procs) == ["beat", "web", "worker", "worker2", "worker3"]
    assert procs["web"][1:3] == ["-m", "openresponses_site.serve"]
    names = [
        cmd[cmd.index("-n") + 1] if "-n" in cmd else "celery@%h" for n, cmd in procs.items() if "worker" in n
    ]
    assert len(set(names)) == 3, names  # every worker needs a node name of its own
    monkeypatch.delenv("OPENRESPONSES_WORKER_PROCESSES")
    workers = [n for n in runserver.commands("127.0.0.1", 8000) if n.startswith("worker")]
    assert len(workers) == len(os.sched_getaffinity(0))
    monkeypatch.delenv("REDIS_URL")
    assert sorted(runserver.commands("127.0.0.1", 8000)) == ["web"]


def test_daphne_requests_skip_twisted_form_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A POST's Content-Type is not parsed into form arguments (daphne passes the raw body on)."""
    from types import SimpleNamespace

    from daphne.http_protocol import WebRequest

    from openresponses_site.serve import skip_form_parsing

    monkeypatch.setattr(WebRequest, "__init__", WebRequest.__init__)
    connected: list[object] = []
    channel = SimpleNamespace(
        factory=SimpleNamespace(server=SimpleNamespace(protocol_connected=connected.append)),
        getPeer=lambda: None,
        getHost=lambda: None,
        transport=None,
    )
    assert WebRequest(channel)._parsePOSTFormSubmission is True
    skip_form_parsing()
    request = WebRequest(channel)
    assert request._parsePOSTFormSubmission is False
    assert connected[-1] is request  # daphne's own start still ran
    wrapped = WebRequest.__init__
    skip_form_parsing()  # once only, however often called
    assert WebRequest.__init__ is wrapped


WRITE_SCENARIO = """
import sys
from openresponses_site.serve import install_reactor, write_in_turn
install_reactor()
write_in_turn()
from twisted.internet import protocol, reactor

registered = []
add_writer = reactor.addWriter
reactor.addWriter = lambda writer: (registered.append(writer), add_writer(writer))[1]
SMALL = [b"event %d\\n" % i for i in range(50)]
BIG = bytes(range(256)) * (8 * 4096)  # 8 MiB: more than the kernel takes at once
phases = {}


class Server(protocol.Protocol):
    def connectionMade(self):
        for part in SMALL:
            self.transport.write(part)  # one turn's writes
        reactor.callLater(0.1, self.small_sent)

    def small_sent(self):
        phases["small"] = len(registered)
        self.transport.writeSequence([BIG])
        self.transport.loseConnection()


class Client(protocol.Protocol):
    def connectionMade(self):
        self.data = []
        self.transport.pauseProducing()  # read nothing for a moment: the big write waits
        reactor.callLater(0.5, self.transport.resumeProducing)

    def dataReceived(self, data):
        self.data.append(data)

    def connectionLost(self, reason):
        got = b"".join(self.data)
        ok = got == b"".join(SMALL) + BIG
        print("received", ok, "registered_after_small", phases.get("small"), "registered", len(registered))
        reactor.stop()


factory = protocol.ServerFactory.forProtocol(Server)
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port.getHost().port)
reactor.callLater(20, reactor.stop)
reactor.run()
"""


def test_writes_leave_at_the_next_turn_and_a_full_socket_waits_as_before() -> None:
    """Writes to an idle connection are sent at the loop's next turn without registering the
    socket with the loop; a write the kernel cannot take at once waits for the socket, the
    close waits for the data, and every byte arrives in order."""
    out = subprocess.run(
        [sys.executable, "-c", WRITE_SCENARIO], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[:2] == ["received", "True"], out.stdout + out.stderr
    assert words[3] == "0", out.stdout  # the small writes never registered the socket
    assert int(words[5]) >= 1, out.stdout  # the big one did, once the kernel's buffer was full


def test_twisted_request_log_is_formatted_only_when_daphne_keeps_twisted_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from daphne.http_protocol import HTTPFactory

    from openresponses_site.serve import skip_unread_request_log

    logged: list[object] = []
    monkeypatch.setattr(HTTPFactory, "log", lambda self, request: logged.append(request))  # Twisted's
    skip_unread_request_log()
    for verbosity in (0, 1, 2, 3):
        HTTPFactory.log(SimpleNamespace(server=SimpleNamespace(verbosity=verbosity)), verbosity)
    assert logged == [2, 3]  # daphne routes Twisted's log to the logging module from verbosity 2


def test_daphne_reads_twisted_http_without_the_deprecation_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    import daphne.http_protocol
    from twisted.python.deprecate import _ModuleProxy
    from twisted.web import http

    from openresponses_site.serve import unwrap_twisted_http

    monkeypatch.setattr(daphne.http_protocol, "http", http)
    assert isinstance(daphne.http_protocol.http, _ModuleProxy)
    unwrap_twisted_http()
    assert not isinstance(daphne.http_protocol.http, _ModuleProxy)
    assert daphne.http_protocol.http.Request is http.Request


def test_receive_queue_hands_messages_to_readers_in_order() -> None:
    """daphne's input queue as :class:`ReceiveQueue` does it: messages in order, a reader waits
    for the next one, a cancelled reader leaves nothing behind, two readers both get theirs."""
    import asyncio

    from responses_app.api.receive import ReceiveQueue

    async def scenario() -> None:
        queue = ReceiveQueue()
        queue.put_nowait({"type": "http.request", "body": b"a"})
        assert await queue.get() == {"type": "http.request", "body": b"a"}
        waiting = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        assert not waiting.done()
        queue.put_nowait({"type": "http.disconnect"})
        assert await waiting == {"type": "http.disconnect"}
        cancelled = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert queue._waiters is None  # no waiter left behind
        first, second = asyncio.ensure_future(queue.get()), asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait(1)
        queue.put_nowait(2)
        assert sorted(await asyncio.gather(first, second)) == [1, 2]
        assert queue._items == [] and queue._waiters is None

    asyncio.run(scenario())


RECEIVE_SCENARIO = """
import asyncio
from openresponses_site.serve import install_reactor, light_receive_queues, ReceiveQueue
install_reactor()
light_receive_queues()
from daphne.server import Server

received = []

async def app(scope, receive, send):
    received.append(type(receive.__self__).__name__)
    while True:
        message = await receive()
        received.append(message["type"])
        if message["type"] == "http.disconnect":
            return

async def main():
    server = Server(app, endpoints=["tcp:port=0:interface=127.0.0.1"])
    protocol = object()
    server.connections = {protocol: {}}  # (as run() sets it up)
    queue = server.create_application(protocol, {"type": "http"})
    queue.put_nowait({"type": "http.request", "body": b"{}"})
    await asyncio.sleep(0.05)
    queue.put_nowait({"type": "http.disconnect"})
    await server.connections[protocol]["application_instance"]
    print(" ".join(received), asyncio.Queue.__name__)

asyncio.get_event_loop().run_until_complete(main())
"""


def test_daphne_connections_get_a_receive_queue() -> None:
    """Under ``serve``, daphne's connections are read from a :class:`ReceiveQueue` (the rest of
    asyncio, as daphne's server module sees it, is asyncio's own)."""
    out = subprocess.run(
        [sys.executable, "-c", RECEIVE_SCENARIO], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ReceiveQueue", "http.request", "http.disconnect", "Queue"], out.stdout


PROBE_APP = """
import sys


async def app(scope, receive, send):
    await receive()
    request = send.args[0]  # daphne's send: partial(server.handle_reply, request)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for n in range(3):
        await send({"type": "http.response.body", "body": b"part %d\\n" % n, "more_body": True})
    readable = all(hasattr(request, name) for name in ("client_addr", "server_addr", "root_path", "clean_headers"))
    facts = [type(request).__name__, len(vars(request)), sys.getsizeof(vars(request)), readable, scope["query_string"].decode()]
    await send({"type": "http.response.body", "body": " ".join(map(str, facts)).encode()})
"""


@pytest.mark.parametrize("command", [["openresponses_site.serve"], ["daphne"]])
def test_daphne_requests_keep_daphnes_attributes_in_slots(tmp_path: Path, command: list[str]) -> None:
    """Under ``serve`` a request's dict shares its keys with every other request's (fewer than
    30: daphne's own attributes are slots), reads as daphne's did, and streams its body; under
    daphne alone it has a dict of its own (what the slots save)."""
    (tmp_path / "probe_app.py").write_text(PROBE_APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    server = subprocess.Popen(
        [sys.executable, "-m", *command, "-b", "127.0.0.1", "-p", str(port), "probe_app:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=30)
        body = httpx.post(f"http://127.0.0.1:{port}/v1/responses?x=1", content=b"{}", timeout=10).text
    finally:
        server.terminate()
        server.wait(10)
    lines = body.splitlines()
    assert lines[:3] == ["part 0", "part 1", "part 2"], body
    kind, keys, size, readable, query = lines[3].split()
    assert (kind, readable, query) == ("WebRequest", "True", "x=1"), body
    if command == ["openresponses_site.serve"]:
        assert int(keys) < 30 and int(size) < 600, body
    else:
        assert int(keys) > 30 and int(size) > 1200, body
