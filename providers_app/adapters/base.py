"""The adapter contract: one provider's wire format in, provider-neutral chunks out.

An adapter knows nothing of sequence numbers, item ids or storage. It turns a
:class:`ModelRequest` into one upstream call and yields chunks (:mod:`.chunks`); the shared
emitter turns chunks into spec events.

:class:`ProviderAdapter` owns the whole call (:meth:`ProviderAdapter.sample`): body, headers,
retries before the first byte, HTTP error mapping (401/403/404/429/5xx, ``Retry-After``),
framing (SSE, NDJSON or one JSON body), JSON decoding, truncation, draining, closing, the wire
log, masking the key and refusing calls to declared tools the request does not allow now. A provider module
supplies the few hooks listed under "Methods that child classes must implement" (like Django's
``SessionBase``), plus optional ones. An adapter for a server that fits no HTTP shape (the
built-in mock, an in-process model) may override ``sample()`` itself: it is still guarded.

Timeouts (per provider): ``connect_timeout``; ``first_byte_timeout`` until the headers and then
the first line of a stream (or the whole non-streamed body); ``idle_timeout`` between lines.

The names custom adapters import (``ModelRequest``, ``ProviderAdapter``, the chunk types, the
errors, ``message_text``…) are all importable from this module.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

from providers_app.adapters import transport, wirelog
from providers_app.adapters.chunks import (
    Chunk,
    Citation,
    Finish,
    FinishReason,
    ItemEnd,
    ProviderItem,
    ReasoningDelta,
    ReasoningDone,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
    WebSearchDone,
    WebSearchStart,
    new_call_id,
)
from providers_app.adapters.content import message_text, parse_arguments
from providers_app.adapters.types import (
    ModelRequest,
    ProviderConfig,
    UnsupportedParameter,
    UpstreamError,
    extract_error_message,
    extract_error_param,
    invalid_request,
    parse_retry_after,
    rate_limited,
    refused_tools,
    unexpected_body,
)
from providers_app.adapters.wirelog import (
    WIRE_LOG,
    WIRE_LOG_KEPT_CHARS,
    WIRE_LOG_MAX_CHARS,
    abbreviate,
    finished_wire_log,
)

__all__ = [
    "WIRE_LOG",
    "WIRE_LOG_KEPT_CHARS",
    "WIRE_LOG_MAX_CHARS",
    "Chunk",
    "Citation",
    "Finish",
    "FinishReason",
    "Framing",
    "ItemEnd",
    "ModelRequest",
    "ProviderAdapter",
    "ProviderConfig",
    "ProviderItem",
    "ReasoningDelta",
    "ReasoningDone",
    "RefusalDelta",
    "StreamParser",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallStart",
    "UnsupportedParameter",
    "UpstreamError",
    "UsageReport",
    "WebSearchDone",
    "WebSearchStart",
    "abbreviate",
    "refused_tools",
    "drain",
    "extract_error_message",
    "extract_error_param",
    "finished_wire_log",
    "message_text",
    "new_call_id",
    "parse_arguments",
]

#: How a streamed answer is framed: server-sent events, one JSON object per line, or one JSON body.
Framing = Literal["sse", "ndjson", "json"]

#: An SSE ``data`` value that ends a stream (OpenAI-style servers send it last).
DONE_MARKER = "[DONE]"
_DONE: Any = object()  # the event name of the frame standing for DONE_MARKER in _frames()

#: Seconds spent reading what follows a stream's terminal frame, so the connection can be reused.
DRAIN_SECONDS = 0.5


class StreamParser(Protocol):
    """Turns one answer's decoded frames into chunks: pure, no I/O, one instance per call.

    ``feed`` takes each JSON object of the answer (an SSE event's data, an NDJSON line, or the
    whole body of a non-streamed call) and returns the chunks it completes; it raises
    :class:`UpstreamError` for an error the provider reports inside the answer (``{"error": …}``).
    ``finish`` is called once the answer ended and returns the closing chunks (buffered calls,
    usage, :class:`Finish`); it raises :func:`~providers_app.adapters.types.truncated` when the
    provider never said it was finished. ``done`` turns True on the provider's terminal frame
    (the template then stops reading); the template also sets it on an SSE ``[DONE]``.
    """

    done: bool

    def __init__(self, provider: str, request: ModelRequest | None = None) -> None: ...

    def feed(self, frame: dict[str, Any]) -> Iterable[Chunk]: ...

    def finish(self) -> Iterable[Chunk]: ...


class ProviderAdapter:
    """Base class for provider adapters: owns the upstream call, asks subclasses for a few hooks.

    An adapter instance is created per provider configuration and may be reused for many
    requests concurrently; it must keep no per-request state on ``self`` (per-call state lives in
    the :class:`StreamParser` that :meth:`stream_parser` makes for each call).
    """

    #: Name of the family (``openai``, ``anthropic``…), for logs and the admin.
    family: str = "base"
    #: Keys of the private metadata of non-reasoning items (function calls, messages) that the
    #: provider needs back to continue a chain: sealed for ``store: false`` clients on a carrier
    #: reasoning item (see ``responses_app.events.sealing``).
    carried_meta: frozenset[str] = frozenset()
    #: False where the provider's own ``encrypted_content`` is already what its clients expect
    #: (OpenAI's Responses API): its reasoning items are then relayed unsealed.
    sealed_reasoning: bool = True
    #: How a streamed answer is framed (see :data:`Framing`); non-streamed answers are one JSON body.
    framing: Framing = "sse"
    #: Where the call goes, below ``base_url`` (used by the default :meth:`endpoint`).
    path: str = ""
    #: ``build_body(request, config, *, stream) -> dict``: the JSON body of the call (required).
    build_body: Callable[..., dict[str, Any]] | None = None
    #: The :class:`StreamParser` made for each call, as ``parser_class(provider name, request)``.
    parser_class: type[StreamParser] | None = None
    #: ``parse_body(body, provider) -> chunks`` for a whole non-streamed answer (a JSON object);
    #: None: the body is fed to a fresh parser as its only frame.
    parse_body: Callable[[dict[str, Any], str], Iterable[Chunk]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass that writes its own sample() gets the same guard as the template (see
        # _guarded): no error it raises carries the provider key (some providers echo it), and no
        # call to a tool the request does not allow gets through, whatever the provider does.
        super().__init_subclass__(**kwargs)
        sample = cls.__dict__.get("sample")
        if sample is not None and not getattr(sample, "_guarded", False):
            cls.sample = _guarded(sample)  # type: ignore[method-assign]

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._http = transport.Client(ca_bundle=config.options.get("ca_bundle"))

    # ================================================================ what child classes must provide
    # Declared as class attributes (``path``, ``build_body``, ``parser_class``), or by overriding
    # the methods that read them.

    def request_body(self, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of the call: :attr:`build_body` of the request and this provider's config.

        Pure: it raises :class:`UnsupportedParameter` (naming the field) for anything the provider
        cannot honour, before any connection is made.
        """
        if self.build_body is None:
            raise NotImplementedError(
                "ProviderAdapter subclasses must set build_body or implement request_body()"
            )
        return self.build_body(request, self.config, stream=stream)

    def endpoint(self, request: ModelRequest, *, stream: bool) -> str:
        """The URL of the call for ``request``: ``base_url`` joined with :attr:`path`."""
        if not self.path:
            raise NotImplementedError("ProviderAdapter subclasses must set path or implement endpoint()")
        return self.url(self.path)

    def stream_parser(self, request: ModelRequest) -> StreamParser:
        """A fresh :class:`StreamParser` for one call of ``request`` (an instance of :attr:`parser_class`)."""
        if self.parser_class is None:
            raise NotImplementedError(
                "ProviderAdapter subclasses must set parser_class or implement stream_parser()"
            )
        return self.parser_class(self.config.name, request)

    # ================================================================ hooks with a default

    def request_headers(self) -> dict[str, str]:
        """Headers of every call: JSON content type, the configured ``headers``, and the key as
        ``Authorization: Bearer`` when one is set. Override for another auth scheme."""
        return self.headers(
            {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        )

    def body_chunks(self, body: dict[str, Any], request: ModelRequest) -> Iterable[Chunk]:
        """The chunks of a whole non-streamed answer: :attr:`parse_body`'s, or those of a fresh
        :meth:`stream_parser` fed the body as its only frame."""
        if self.parse_body is not None:
            return self.parse_body(body, self.config.name)
        parser = self.stream_parser(request)
        return [*parser.feed(body), *parser.finish()]

    def error_from_response(self, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """Map an upstream HTTP error to an :class:`UpstreamError` carrying the provider's message.

        ``400/422`` -> 400 ``upstream_invalid_request``, ``401/403`` -> 502
        ``upstream_auth_failed``, ``404`` -> 404 ``model_not_found``, ``408/504`` -> 504,
        ``429`` -> 429 with ``Retry-After`` (1 s when absent), other ``5xx`` -> 502 (retryable).
        """
        message = extract_error_message(raw) or f"HTTP {status}"
        retry_after = parse_retry_after(headers.get("retry-after"))
        prefix = f"Provider '{self.config.name}' returned HTTP {status}: "
        if status == 429:
            return rate_limited(
                prefix + message, retry_after=retry_after if retry_after is not None else 1.0, retryable=True
            )
        if status in (400, 422):
            return invalid_request(prefix + message, param=extract_error_param(raw))
        if status == 404:
            return UpstreamError(
                prefix + message,
                status=404,
                code="model_not_found",
                error_type="invalid_request_error",
                param="model",
            )
        if status in (401, 403):
            return UpstreamError(prefix + message, status=502, code="upstream_auth_failed")
        if status in (408, 504):
            return UpstreamError(prefix + message, status=504, code="upstream_timeout", retryable=True)
        return UpstreamError(prefix + message, status=502, code="upstream_error", retryable=status >= 500)

    # ================================================================ the algorithm

    async def sample(self, request: ModelRequest, *, stream: bool) -> AsyncIterator[Chunk]:
        """Make one upstream call for ``request`` and yield neutral chunks.

        Ends with a :class:`Finish` chunk when the upstream finished normally; raises
        :class:`UpstreamError` for failures (before or after the first chunk) and
        :class:`UnsupportedParameter` (before any HTTP call) for a field the provider cannot honour.
        """
        stream = stream and self.framing != "json"  # a provider that cannot stream answers whole
        body = self.request_body(request, stream=stream)
        url = self.endpoint(request, stream=stream)
        headers = self.request_headers()
        if not stream:
            data = await self.post_json(url, json_body=body, headers=headers)
            if not isinstance(data, dict):
                raise unexpected_body(self.config.name)
            for chunk in self.body_chunks(data, request):
                yield chunk
            return
        parser = self.stream_parser(request)
        response = await self.open_stream("POST", url, json_body=body, headers=headers)
        try:
            frames = self._frames(response)
            stopped = False
            loads = _fast_loads
            async for batch in frames:
                for event, data in batch:
                    if event is _DONE:
                        parser.done = True
                        break
                    try:
                        payload = loads(data)
                    except ValueError:
                        payload = _lenient_loads(data)
                        if payload is _NOT_JSON:
                            if event != "error":
                                raise self._bad_frame(data) from None
                            payload = {"error": {"message": data}}
                    if type(payload) is not dict:
                        continue  # nothing a parser could use (a bare number, a list…)
                    if event == "error" and "error" not in payload and payload.get("type") != "error":
                        payload = {"error": payload}  # an SSE error frame is an error, whatever its data
                    for chunk in parser.feed(payload):
                        yield chunk
                    if parser.done:
                        break
                if parser.done:
                    stopped = True
                    break
                # The read is processed: none of it is held while the next is awaited.
                batch = data = payload = chunk = None
            for chunk in parser.finish():
                yield chunk
            if stopped:
                await drain(frames)
        finally:
            await response.aclose()

    # ---- framing (one list of frames per network read: no per-token wake-ups)

    async def _frames(self, response: transport.Response) -> AsyncIterator[list[tuple[Any, str]]]:
        """``(event name, data)`` frames of the answer, a list per network read. SSE: each event's
        data lines joined (blank data skipped; ``[DONE]`` becomes a last frame whose event is
        ``_DONE``, and what follows it is read and ignored); NDJSON: each non-blank line."""
        batches = self.iter_line_batches(response)
        if self.framing == "ndjson":
            async for lines in batches:
                frames = [(None, line) for line in lines if line and not line.isspace()]
                if frames:
                    yield frames
            return
        event: str | None = None
        data: list[str] = []
        async for lines in batches:
            frames: list[tuple[Any, str]] = []
            for line in lines:
                if not line:
                    if data:
                        value = data[0] if len(data) == 1 else "\n".join(data)
                        if value == DONE_MARKER:
                            frames.append((_DONE, value))
                            yield frames
                            async for _ in batches:  # read what follows (a lingering server), ignored
                                pass
                            return
                        if value:
                            frames.append((event, value))
                    event, data = None, []
                    continue
                if line[0] == ":":
                    continue
                name, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if name == "data":
                    data.append(value.rstrip())
                elif name == "event":
                    event = value.strip()
            lines = line = value = None  # (a read's lines are not held while the next is awaited)
            if frames:
                yield frames
                frames = None
        if data:
            value = "\n".join(data)
            if value:
                yield [(_DONE if value == DONE_MARKER else event, value)]

    def _bad_frame(self, data: str) -> UpstreamError:
        return UpstreamError(
            f"The provider '{self.config.name}' sent a stream frame that is not JSON: {data[:200]}",
            status=502,
        )

    # ---- the key and the wire log

    def mask(self, text: str) -> str:
        """``text`` with the provider key replaced by ``***``."""
        key = self.config.api_key
        return text.replace(key, "***") if key and len(key) >= 8 and key in text else text

    def redact(self, error: UpstreamError) -> UpstreamError:
        """``error`` with the provider key masked (some providers echo it in their messages)."""
        masked = self.mask(error.message)
        if masked is not error.message:
            error.message = masked
            error.args = (masked,)
        return error

    def wire_entry(self, method: str, url: str, json_body: Any) -> dict[str, Any] | None:
        """A new wire-log entry for a call (None when nobody records this context)."""
        return wirelog.open_entry(self.config.name, method, url, json_body, self.mask)

    def owns(self, item: dict[str, Any]) -> bool:
        """True when ``item``'s provider artefacts were made by this provider."""
        meta = item.get("_meta") or {}
        return meta.get("provider") == self.config.name

    # ---- HTTP plumbing

    def client(self) -> transport.Client:
        """The HTTP client of this provider (keep-alive pools per event loop, see ``transport``)."""
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        """``base_url`` joined with ``path``."""
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """JSON content type, then the configured ``headers``, then ``extra``."""
        merged = {"content-type": "application/json"}
        merged.update(self.config.headers)
        if extra:
            merged.update(extra)
        return merged

    def bearer_headers(self) -> dict[str, str]:
        """:meth:`headers` with ``Authorization: Bearer <key>`` when a key is configured."""
        return ProviderAdapter.request_headers(self)

    async def open_stream(
        self, method: str, url: str, *, json_body: Any, headers: dict[str, str]
    ) -> transport.Response:
        """Send a request and return the response once its status line and headers are in.

        Retries with backoff on connection errors, 429 and 5xx — only before anything has been
        relayed, which is always the case here; a ``Retry-After`` of up to 5 s is waited for, a
        longer one ends the call (the 429 reaches the client). Non-2xx answers raise
        :class:`UpstreamError`. The caller must ``await response.aclose()``.
        """
        client = self.client()
        body = json.dumps(json_body, separators=(",", ":")).encode()
        entry = self.wire_entry(method, url, json_body)
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.config.first_byte_timeout):
                    response = await client.send(
                        method,
                        url,
                        content=body,
                        headers=headers,
                        connect_timeout=self.config.connect_timeout,
                    )
            except (transport.ConnectError, transport.RemoteProtocolError) as exc:
                if attempt < self.config.max_retries:
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise UpstreamError(
                    f"Could not reach the provider '{self.config.name}': {type(exc).__name__}",
                    status=502,
                    code="upstream_unreachable",
                ) from None
            except TimeoutError:
                raise self._timed_out("did not answer in time") from None
            if entry is not None:
                entry["status"] = response.status_code
                entry["attempts"] = attempt + 1
            if response.status_code < 400:
                response._openresponses_wire = entry  # type: ignore[attr-defined]
                return response
            raw = await response.aread()
            await response.aclose()
            if entry is not None:
                wirelog.restart(entry)
                wirelog.append(entry, raw.decode(errors="replace"))
            error = self.error_from_response(response.status_code, raw, response.headers)
            if error.retryable and attempt < self.config.max_retries:
                if error.retry_after is not None and error.retry_after > 5:
                    raise error  # a long wait is the client's to make, not ours
                attempt += 1
                await asyncio.sleep(error.retry_after if error.retry_after is not None else _backoff(attempt))
                continue
            raise error

    async def post_json(self, url: str, *, json_body: Any, headers: dict[str, str]) -> Any:
        """A non-streaming call: the parsed JSON body, or :class:`UpstreamError`."""
        response = await self.open_stream("POST", url, json_body=json_body, headers=headers)
        try:
            # A non-streamed answer is its first byte: the whole body within first_byte_timeout.
            async with asyncio.timeout(self.config.first_byte_timeout):
                raw = await response.aread()
        except TimeoutError:
            raise self._timed_out("timed out") from None
        except transport.HTTPError as exc:
            raise self._dropped(f"the answer: {exc}") from None
        finally:
            await response.aclose()
        entry = getattr(response, "_openresponses_wire", None)
        if entry is not None:
            wirelog.append(entry, raw.decode(errors="replace"))
        try:
            return _fast_loads(raw)
        except ValueError:
            pass
        if (data := _lenient_loads(raw)) is not _NOT_JSON:
            return data
        raise UpstreamError(f"The provider '{self.config.name}' sent a body that is not JSON.", status=502)

    def _timed_out(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"The provider '{self.config.name}' {what}.", status=504, code="upstream_timeout"
        )

    def _dropped(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"The provider '{self.config.name}' dropped {what}", status=502, code="upstream_disconnected"
        )

    async def iter_line_batches(self, response: transport.Response) -> AsyncIterator[list[str]]:
        """The lines of a streamed body, a list per network read: the first within
        ``first_byte_timeout``, then ``idle_timeout`` between reads.

        (Streaming providers send their headers at once and then think: the wait for the first
        token is the long one, a silence after it means the stream is stuck.)
        """
        entry = getattr(response, "_openresponses_wire", None)
        loop = asyncio.get_running_loop()
        started = False
        # One timeout for the whole body, moved forward as lines arrive — at most every quarter
        # of idle_timeout (this is the hottest loop of a stream: no timer object per read). A
        # stuck stream therefore fails between 1 and 1.25 idle_timeouts after its last line.
        idle = self.config.idle_timeout
        slack = idle / 4
        next_move = 0.0
        try:
            async with asyncio.timeout(self.config.first_byte_timeout) as deadline:
                async for lines in response.aiter_line_batches():
                    started = True
                    now = loop.time()
                    if now >= next_move:
                        deadline.reschedule(now + idle + slack)
                        next_move = now + slack
                    if entry is not None and entry["_size"] < WIRE_LOG_KEPT_CHARS:
                        wirelog.append(entry, "\n".join(lines) + "\n")
                    yield lines
                    lines = None  # (not held while the next read is awaited)
        except TimeoutError:
            raise self._timed_out(
                "went silent mid-stream" if started else "did not start answering in time"
            ) from None
        except transport.HTTPError as exc:
            raise self._dropped(f"the stream: {type(exc).__name__}") from None

    async def iter_sse(self, response: transport.Response) -> AsyncIterator[tuple[str | None, str]]:
        """Server-sent events of a streamed body as ``(event name, data)`` pairs, for adapters
        that write their own ``sample()`` (the template reads them a network read at a time)."""
        async for batch in self._frames(response):
            for event, data in batch:
                yield (None if event is _DONE else event), data

    async def iter_lines(self, response: transport.Response) -> AsyncIterator[str]:
        """Lines of a streamed body, with the timeouts of :meth:`iter_line_batches`."""
        async for lines in self.iter_line_batches(response):
            for line in lines:
                yield line


def _guarded(sample: Any) -> Any:
    """Wrap an adapter's ``sample``: errors never hold its key, and calls to declared tools the
    request does not allow (``allowed_tools``, ``tool_choice: none``) are refused before they
    reach the emitter, whatever the provider did (a model error: 502 when nothing was sent yet).
    A name the request never declared passes: the client gets it as the call it was."""

    @functools.wraps(sample)
    async def wrapper(self: ProviderAdapter, request: ModelRequest, *, stream: bool) -> AsyncIterator[Chunk]:
        inner = sample(self, request, stream=stream)
        refused = refused_tools(request)
        try:
            async for chunk in inner:
                if refused and isinstance(chunk, ToolCallStart) and chunk.name in refused:
                    raise UpstreamError(
                        f"The model called a tool it may not use: {chunk.name}.",
                        status=502,
                        code="tool_not_allowed",
                        error_type="model_error",
                    )
                yield chunk
        except UpstreamError as exc:
            raise self.redact(exc) from exc.__cause__
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    wrapper._guarded = True  # type: ignore[attr-defined]
    return wrapper


ProviderAdapter.sample = _guarded(ProviderAdapter.sample)  # type: ignore[method-assign]


try:  # orjson decodes a stream frame in a third of the time; json takes what it refuses
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency
    _fast_loads = json.loads

_NOT_JSON: Any = object()


def _lenient_loads(data: str | bytes) -> Any:
    """``data`` parsed by the standard library (NaN, integers beyond 64 bits…), or ``_NOT_JSON``."""
    try:
        return json.loads(data)
    except ValueError:
        return _NOT_JSON


def _backoff(attempt: int) -> float:
    return min(2.0, 0.2 * (2 ** (attempt - 1))) * (0.5 + random.random() / 2)


async def drain(iterator: AsyncIterator[Any], seconds: float = DRAIN_SECONDS) -> None:
    """Read what follows a stream's terminal frame (briefly) so the connection can return to the pool."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in iterator:
                pass
    except (TimeoutError, UpstreamError):
        pass
