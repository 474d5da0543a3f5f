"""The web process: daphne on uvloop (``python -m openresponses_site.serve`` takes daphne's arguments).

daphne runs on Twisted's asyncio reactor and installs it, on a plain asyncio loop, when it is first
imported, unless an asyncio reactor is installed already. This module installs it first, on the
loop :func:`responses_app.loop.supervision.host.new_event_loop` makes (uvloop's unless
``OPENRESPONSES_UVLOOP=0``), then hands over to daphne's command line.

Twisted parses the Content-Type of every POST with the ``email`` package (~0.19 ms of CPU) to fill
``request.args`` for HTML forms; daphne never reads them (the ASGI application gets the raw body),
so :func:`skip_form_parsing` turns that off for daphne's requests. Twisted also formats a
combined-log line for every request into its own log, which daphne sends nowhere at its default
verbosity (its access log is its own): :func:`skip_unread_request_log` leaves that line out then.

Twisted sends a connection's writes when the reactor reports the socket writable: every write to
an idle connection registered the socket with the event loop (``epoll_ctl``), woke the loop for
it, ran the send through Twisted's logging context and unregistered the socket (``epoll_ctl``
again), once per SSE batch of every stream. :func:`write_in_turn` sends them at the loop's next
turn instead (the writes of one turn still leave in one ``send``), and registers the socket only
when the kernel did not take everything (a client that reads slowly), as before.

A daphne request carries 32 attributes (Twisted's and daphne's), more than the keys CPython lets
the instances of a class share in one key table (29 on 3.11), so each request had a dict of its own
of ~1.6 KB for as long as its stream was open. :func:`lean_requests` keeps daphne's ten in slots:
the other 22 share their keys (a dict of ~0.3 KB a request).

daphne gives every connection an ``asyncio.Queue`` for the ASGI ``receive``: three deques and an
``Event`` with a fourth, each deque a 64-slot block, ~3 KiB held for each open stream for the
request's body and its disconnect. :func:`light_receive_queues` gives it a
:class:`~responses_app.api.receive.ReceiveQueue`, which also lets the API's handler learn of a
disconnect without a task waiting for it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import types
from typing import Any

from responses_app.api.receive import ReceiveQueue


def install_reactor() -> str:
    """Install Twisted's asyncio reactor on our event loop; returns the loop's implementation."""
    if "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("a Twisted reactor is installed already: install ours before importing daphne")
    from twisted.internet import asyncioreactor

    from responses_app.loop.supervision.host import loop_implementation, new_event_loop

    loop = new_event_loop()
    if "ASGI_THREADS" in os.environ:  # as daphne does for the loop it would have made
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=int(os.environ["ASGI_THREADS"])))
    asyncioreactor.install(loop)
    return loop_implementation(loop)


def skip_form_parsing() -> None:
    """daphne's requests leave POST bodies unparsed by Twisted (daphne passes the raw body on)."""
    from daphne.http_protocol import WebRequest

    original = WebRequest.__init__
    if getattr(original, "skips_form_parsing", False):
        return

    def __init__(self: WebRequest, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    __init__.skips_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]


def skip_unread_request_log() -> None:
    """Twisted's per-request log line is not formatted while daphne discards Twisted's log
    (verbosity 0 or 1, ``daphne.server``); at higher verbosity it is, as before."""
    from daphne.http_protocol import HTTPFactory

    original = HTTPFactory.log
    if getattr(original, "skips_unread", False):
        return

    def log(self: HTTPFactory, request: Any) -> None:
        if self.server.verbosity > 1:
            original(self, request)

    log.skips_unread = True  # type: ignore[attr-defined]
    HTTPFactory.log = log  # type: ignore[method-assign]


def unwrap_twisted_http() -> None:
    """daphne's HTTP protocol reads ``twisted.web.http`` through Twisted's deprecation proxy of
    that module (~1.3 us per attribute, for ``http.Request.write`` at every body message): it gets
    the module itself. daphne uses none of its deprecated names."""
    import daphne.http_protocol
    from twisted.python.deprecate import _InternalState, _ModuleProxy

    if isinstance(daphne.http_protocol.http, _ModuleProxy):
        daphne.http_protocol.http = _InternalState(daphne.http_protocol.http)._module


def write_in_turn() -> None:
    """Plain TCP connections of the asyncio reactor send their writes at the loop's next turn
    (see the module's docstring); TLS connections, a connection already waiting for its socket
    and everything after a partial send take Twisted's own path."""
    from twisted.internet import reactor, tcp
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    original = tcp.Connection.startWriting
    if getattr(original, "writes_in_turn", False) or not isinstance(reactor, AsyncioSelectorReactor):
        return
    loop = reactor._asyncioEventloop
    writers = reactor._writers

    def flush(connection: Any) -> None:
        connection._send_pending = False
        if not connection.connected or connection.disconnected or connection in writers:
            return
        # What the reactor runs when the socket is writable: send, then finish a close or resume
        # a producer once the buffer is empty; a failed send loses the connection.
        reactor._readOrWrite(connection, False)
        if (
            connection.connected
            and not connection.disconnected
            and (connection._tempDataBuffer or connection.offset < len(connection.dataBuffer))
        ):
            original(connection)  # the kernel's buffer is full: wait until the socket is writable

    def startWriting(self: Any) -> None:
        if self.TLS or self in writers:
            original(self)
        elif not self._send_pending:
            self._send_pending = True
            loop.call_soon(flush, self)

    startWriting.writes_in_turn = True  # type: ignore[attr-defined]
    tcp.Connection._send_pending = False  # type: ignore[attr-defined]
    tcp.Connection.startWriting = startWriting  # type: ignore[method-assign]


#: The attributes daphne's ``WebRequest`` sets on a request (Twisted's ``Request`` sets the rest):
#: each is assigned in ``__init__`` or at the start of ``process()`` before it is read, and none is
#: a class attribute of Twisted's request, so a slot behaves as the instance attribute did.
DAPHNE_REQUEST_ATTRIBUTES = (
    "client_addr",
    "server_addr",
    "server",
    "application_queue",
    "_response_started",
    "request_start",
    "client_scheme",
    "query_string",
    "clean_headers",
    "root_path",
)


def lean_requests() -> None:
    """daphne's connections make requests of a subclass of its ``WebRequest`` that keeps daphne's
    own attributes in slots (see the module's docstring)."""
    import daphne.http_protocol

    base = daphne.http_protocol.WebRequest
    if getattr(base, "lean", False):
        return

    class WebRequest(base):  # type: ignore[valid-type,misc]
        __slots__ = DAPHNE_REQUEST_ATTRIBUTES
        lean = True

    # ``HTTPFactory.buildProtocol`` reads the module's name at each connection.
    daphne.http_protocol.WebRequest = WebRequest


class _DaphneAsyncio(types.ModuleType):
    """``asyncio`` as daphne's server module sees it: its one ``Queue`` (a connection's input
    queue) is a :class:`ReceiveQueue`; every other name is asyncio's own."""

    Queue = ReceiveQueue

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def light_receive_queues() -> None:
    """daphne's connections get a :class:`ReceiveQueue` each instead of an ``asyncio.Queue``."""
    import daphne.server

    if not isinstance(daphne.server.asyncio, _DaphneAsyncio):
        daphne.server.asyncio = _DaphneAsyncio("asyncio")


def main(argv: list[str] | None = None) -> None:
    implementation = install_reactor()
    skip_form_parsing()
    skip_unread_request_log()
    unwrap_twisted_http()
    write_in_turn()
    light_receive_queues()
    lean_requests()
    from daphne.cli import CommandLineInterface

    print(f"[openresponses] web: daphne on {implementation}", flush=True)
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
