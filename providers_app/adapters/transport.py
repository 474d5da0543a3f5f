"""Provider calls over aiohttp: one request, one streamed answer, pooled connections per event loop.

aiohttp does the HTTP/1.1 (its C parser is strict about chunk sizes and bounded in what it
buffers), keep-alive, ``gzip``/``deflate``, proxies from the environment (``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY``, as ``trust_env`` finds them) and TLS. This module adds what provider streams
need on top: the body as lists of complete lines, one list per network read (a busy stream's
reader wakes once per read, not once per token), errors of three kinds (:class:`ConnectError`,
:class:`RemoteProtocolError`, timeouts left to the caller), and one silent retry when a reused
keep-alive connection turns out closed before any answer.

Trust: a per-provider ``ca_bundle`` (a PEM file) when given; else the OpenSSL defaults when
``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` is set; else the system trust store (``truststore``),
falling back to ``certifi``'s roots.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import ssl
import weakref
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import aiohttp

#: An idle pooled connection older than this is closed rather than reused.
KEEPALIVE_SECONDS = 30.0
#: Largest status line or header line accepted (aiohttp's parser enforces it).
MAX_LINE_BYTES = 16 * 1024
#: Reading pauses while about twice this much is buffered and not yet consumed. Small: a loop
#: behind its upstream (a worker process busy with thousands of streams) otherwise buffered up
#: to twice 256 KiB per stream, in practice the whole answer, and the bytes left queued in the
#: socket cost no process memory. The reader still gets all that is buffered at once.
HIGH_WATER = 16 * 1024


class HTTPError(Exception):
    """Base of this client's errors."""


class ConnectError(HTTPError):
    """The connection could not be made (refused, DNS, proxy, TLS handshake, connect timeout)."""


class RemoteProtocolError(HTTPError):
    """The peer closed the connection or broke HTTP/1.1 (before or during the answer)."""


_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "ws_proxy", "wss_proxy"})


async def _env_proxy(url: str) -> tuple[Any, Any]:
    """The proxy (and its credentials) the environment names for ``url``, as aiohttp's
    ``trust_env`` finds it (``HTTP(S)_PROXY``, ``NO_PROXY``, netrc for the proxy's login).

    Without any proxy variable (checked on the event loop: a scan of the environment) there is
    nothing to look up; with one, the lookup reads netrc, so it runs off the event loop.
    """
    if not any(name.lower() in _PROXY_VARIABLES for name in os.environ):
        return None, None
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return await asyncio.to_thread(get_env_proxy_for_url, URL(url))
    except LookupError:
        return None, None


@lru_cache(maxsize=16)
def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS context for provider calls (see the module docstring for what is trusted)."""
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()  # OpenSSL reads both variables
    try:
        import truststore

        return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except ImportError:  # pragma: no cover - truststore is a dependency
        import certifi

        return ssl.create_default_context(cafile=certifi.where())


class Headers(dict):
    """Response headers by lower-case name (the last value of a repeated header wins)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


class Response:
    """An answer whose head is in; the body is read with :meth:`aread` or the ``aiter_*`` methods."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response: aiohttp.ClientResponse | None = response
        self.status_code = response.status
        self.reason_phrase = response.reason or ""
        self.headers = Headers((name.lower(), value) for name, value in response.headers.items())

    @property
    def is_closed(self) -> bool:
        return self._response is None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives (one piece per network read), content encoding removed."""
        response = self._response
        if response is None:
            return
        try:
            async for piece in response.content.iter_any():
                yield piece
                piece = None  # (none of these layers holds a read it has passed on)
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
            await self.aclose()
            raise RemoteProtocolError(f"{type(exc).__name__}: {exc}") from None
        await self.aclose()  # read to its end: the connection goes back to the pool

    async def aiter_text(self) -> AsyncIterator[str]:
        """The body as text (UTF-8), one piece per network read."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async for piece in self.aiter_bytes():
            text = decoder.decode(piece)
            piece = None
            if text:
                yield text
                text = None
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    async def aiter_line_batches(self) -> AsyncIterator[list[str]]:
        """The complete lines of each network read, without their terminators; ``\\n``,
        ``\\r\\n`` and a lone ``\\r`` all end a line (a last line without one comes at the end)."""
        carry = ""
        skip_lf = False  # the last read ended in CR: a LF opening the next one completes that CRLF
        async for text in self.aiter_text():
            if skip_lf:
                skip_lf = False
                if text.startswith("\n"):
                    text = text[1:]
            if carry:
                text = carry + text
            if "\r" in text:
                # A trailing CR ends its line now (a lone CR becomes LF below); a LF opening the
                # next read is then the rest of that CRLF.
                skip_lf = text.endswith("\r")
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            lines = text.split("\n")
            carry = lines.pop()
            text = None
            if lines:
                yield lines
                lines = None
        if carry:
            yield [carry]

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their terminators (see :meth:`aiter_line_batches`)."""
        async for lines in self.aiter_line_batches():
            for line in lines:
                yield line

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Give the connection back to the pool when the body was read to its end, else close it."""
        response = self._response
        if response is None:
            return
        self._response = None
        if response.content.at_eof():
            response.release()
        else:
            response.close()


async def _on_reuse(session: Any, context: SimpleNamespace, params: Any) -> None:
    if isinstance(context.trace_request_ctx, dict):
        context.trace_request_ctx["reused"] = True


class Client:
    """Sends requests over a session of the running event loop (one pool per loop)."""

    def __init__(self, *, ca_bundle: str | None = None) -> None:
        self.ca_bundle = ca_bundle or None
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        # An adapter dropped by a configuration reload closes its sessions once nothing (no
        # stream in flight) holds it any more.
        weakref.finalize(self, _close_sessions, self._sessions)

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_connection_reuseconn.append(_on_reuse)
            connector = aiohttp.TCPConnector(
                limit=0, keepalive_timeout=KEEPALIVE_SECONDS, ssl=ssl_context(self.ca_bundle)
            )
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=connector,
                # Proxies from the environment are looked up per request by send() itself:
                # aiohttp's trust_env costs two thread hops per request (a netrc lookup and the
                # proxy lookup), paid on every provider call even when no proxy is set.
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
                trace_configs=[trace],
                max_line_size=MAX_LINE_BYTES,
                max_field_size=MAX_LINE_BYTES,
                read_bufsize=HIGH_WATER,
                skip_auto_headers=("User-Agent",),
            )
        return session

    @property
    def idle_count(self) -> int:
        """Idle keep-alive connections of this loop's pool."""
        session = self._sessions.get(asyncio.get_running_loop())
        if session is None:
            return 0
        conns = getattr(session.connector, "_conns", {})
        return sum(len(v) for v in conns.values())

    async def send(
        self, method: str, url: str, *, content: bytes, headers: Mapping[str, str], connect_timeout: float
    ) -> Response:
        """Send the request; return once the status line and headers are in."""
        for key, value in headers.items():
            if "\r" in key or "\n" in key or "\r" in value or "\n" in value:
                raise ValueError(f"header {key!r} holds a line break")
        if not url.lower().startswith(("http://", "https://")):
            raise ConnectError(f"unsupported URL {url!r}")
        session = self.session()
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
        proxy, proxy_auth = await _env_proxy(url)
        for attempt in (1, 2):
            trace: dict[str, bool] = {}
            try:
                response = await session.request(
                    method,
                    url,
                    data=content,
                    headers=dict(headers),
                    timeout=timeout,
                    allow_redirects=False,
                    trace_request_ctx=trace,
                    proxy=proxy,
                    proxy_auth=proxy_auth,
                )
            except aiohttp.ConnectionTimeoutError:
                raise ConnectError(f"connect timeout after {connect_timeout:g}s") from None
            except (
                aiohttp.ClientConnectorError,
                aiohttp.ClientProxyConnectionError,
                aiohttp.ClientHttpProxyError,
                aiohttp.ClientSSLError,
            ) as exc:
                raise ConnectError(f"{type(exc).__name__}: {exc}") from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 1 and trace.get("reused"):
                    continue  # a keep-alive connection the server had closed: once more on a new one
                raise RemoteProtocolError(f"{type(exc).__name__}: {exc}") from None
            except aiohttp.InvalidURL as exc:
                raise ConnectError(f"unsupported URL {exc}") from None
            except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
                raise RemoteProtocolError(f"{type(exc).__name__}: {exc}") from None
            return Response(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the session of the running loop (and those of other loops, see :meth:`close`)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()
        self.close()

    def close(self) -> None:
        """Close the sessions of running loops (each in its loop); forget those of closed loops."""
        _close_sessions(self._sessions)


def _close_sessions(
    sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession],
) -> None:
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for loop, session in list(sessions.items()):
        if session.closed:
            continue
        if loop is current:
            loop.create_task(session.close())
        elif not loop.is_closed() and loop.is_running():
            asyncio.run_coroutine_threadsafe(session.close(), loop)
    sessions.clear()
