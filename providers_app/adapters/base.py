"""The adapter contract: one provider's wire format in, provider-neutral chunks out.

An adapter knows nothing of sequence numbers, item ids or storage. It turns a
:class:`ModelRequest` into one upstream call and yields :data:`Chunk` objects; the
shared emitter in ``responses_app.events`` turns chunks into spec events.

Chunk grammar (what the emitter expects, in order, for one sample):

* ``TextDelta`` / ``RefusalDelta`` append to the open assistant message (opened on demand).
* ``ReasoningDelta`` appends to the open reasoning item (opened on demand);
  ``ReasoningDone`` closes it and may carry ``encrypted_content`` (opaque, round-trips).
* ``ToolCallStart`` opens a function call; ``ToolCallDelta`` appends to its arguments.
* ``ItemEnd`` closes whatever item is open (a chunk of another kind also closes it).
* ``UsageReport`` may come several times; later non-None fields override earlier ones.
* ``Finish`` ends the sample with a reason.

Upstream failures are raised as :class:`UpstreamError`. Every subclass's ``sample`` is wrapped
automatically: provider keys are masked in raised errors, and a call to a declared tool the request
does not allow now (outside ``allowed_tools``, or under ``tool_choice: "none"``) is refused as
``tool_not_allowed`` before it becomes an item. A name the request never declared passes: the
client gets it as the call it was (as OpenAI does); the loop never runs it.

Timeouts (per provider): ``connect_timeout``; ``first_byte_timeout`` until the headers and then
the first line of a stream (or the whole non-streamed body); ``idle_timeout`` between lines.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from providers_app.adapters import http1

# --------------------------------------------------------------------------- chunks


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class RefusalDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """Reasoning text: ``kind="summary"`` for a summary, ``"content"`` for a raw trace."""

    text: str
    kind: Literal["summary", "content"] = "summary"
    summary_index: int = 0


@dataclass(slots=True)
class ReasoningDone:
    """Closes the open reasoning item (opens an empty one first if none is open)."""

    encrypted_content: str | None = None
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCallStart:
    """Opens a tool call. ``namespace`` and ``custom`` (free-form input: ``ToolCallDelta`` carries
    the raw input, not JSON) are for providers that take those tool types natively."""

    call_id: str
    name: str
    provider_data: dict[str, Any] | None = None
    namespace: str | None = None
    custom: bool = False


@dataclass(slots=True)
class ToolCallDelta:
    arguments: str


@dataclass(slots=True)
class ItemEnd:
    provider_data: dict[str, Any] | None = None


@dataclass(slots=True)
class ProviderItem:
    """A whole output item the provider made in OpenAI's own shape (``web_search_call``,
    ``local_shell_call``…): relayed as it is, for providers that take those tool types natively."""

    item: dict[str, Any]


@dataclass(slots=True)
class UsageReport:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


FinishReason = Literal["stop", "tool_calls", "max_output_tokens", "content_filter"]


@dataclass(slots=True)
class Finish:
    reason: FinishReason = "stop"


Chunk = (
    TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ReasoningDone
    | ToolCallStart
    | ToolCallDelta
    | ItemEnd
    | ProviderItem
    | UsageReport
    | Finish
)


# --------------------------------------------------------------------------- errors


class UpstreamError(Exception):
    """A provider failed. ``status`` is the HTTP status we answer with (502, 504, 429, 400…)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        code: str = "upstream_error",
        error_type: str = "server_error",
        param: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.error_type = error_type
        self.param = param
        self.retry_after = retry_after
        self.retryable = retryable


class UnsupportedParameter(UpstreamError):
    """The request asks for something this provider cannot honour: answered with 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(
            message, status=400, code="unsupported_parameter", error_type="invalid_request_error", param=param
        )


# --------------------------------------------------------------------------- request


@dataclass(slots=True)
class ModelRequest:
    """What the loop asks of a provider for one sample, in Open Responses terms.

    ``items`` are canonical input items (Open Responses item shapes: messages always with a
    content list, ``function_call``, ``function_call_output``, ``reasoning``). An item may carry
    a private ``"_meta"`` dict: ``{"provider": <provider name>, ...provider_data}``; adapters send
    provider artefacts back only when ``_meta["provider"] == self.config.name``.
    """

    model: str
    items: list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    text_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderConfig:
    """One configured provider: where it is and how to reach it."""

    name: str
    adapter: str
    base_url: str = ""
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    first_byte_timeout: float = 120.0
    idle_timeout: float = 120.0
    max_retries: int = 2
    options: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- adapter


class ProviderAdapter:
    """Base class for provider adapters. Subclasses implement :meth:`sample`.

    An adapter instance is created per provider configuration and may be reused for many
    requests concurrently; it must keep no per-request state on ``self``.
    """

    #: Name of the family (``openai``, ``anthropic``…), for logs and the admin.
    family: str = "base"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every subclass's sample() is wrapped once (see _guarded): no error it raises can carry
        # the provider key (some providers echo it), and no call to a tool the request does not
        # allow gets through, whatever the adapter or the provider does.
        super().__init_subclass__(**kwargs)
        sample = cls.__dict__.get("sample")
        if sample is not None and not getattr(sample, "_guarded", False):
            cls.sample = _guarded(sample)  # type: ignore[method-assign]

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._http = http1.Client()

    # ---- the contract

    def sample(self, request: ModelRequest, *, stream: bool) -> AsyncIterator[Chunk]:
        """Make one upstream call for ``request`` and yield neutral chunks.

        Must be an async generator. With ``stream=False`` the adapter may make a
        non-streaming call and yield the chunks parsed from the whole body. It raises
        :class:`UpstreamError` for failures (before or after the first chunk) and
        :class:`UnsupportedParameter` for a field the provider cannot honour. It must end
        with a :class:`Finish` chunk when the upstream finished normally.
        """
        raise NotImplementedError("ProviderAdapter subclasses must implement sample()")

    def redact(self, error: UpstreamError) -> UpstreamError:
        """``error`` with the provider key masked (some providers echo it in their messages)."""
        key = self.config.api_key
        if key and len(key) >= 8 and key in error.message:
            error.message = error.message.replace(key, "***")
            error.args = (error.message,)
        return error

    def bearer_headers(self) -> dict[str, str]:
        """Request headers with ``Authorization: Bearer <key>`` when a key is configured."""
        return self.headers(
            {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        )

    def _mask(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key and len(key) >= 8 and key in text else text

    def _wire_entry(self, method: str, url: str, json_body: Any) -> dict[str, Any] | None:
        log = WIRE_LOG.get()
        if log is None:
            return None
        entry = {
            "provider": self.config.name,
            "method": method,
            "url": self._mask(url),
            "request": abbreviate(json_body),
            "status": None,
            "attempts": 0,
            "response": [],
            "_size": 0,
            "_mask": self._mask,  # applied once, to the whole answer (see finished_wire_log)
        }
        log.append(entry)
        return entry

    def owns(self, item: dict[str, Any]) -> bool:
        """True when ``item``'s provider artefacts were made by this provider."""
        meta = item.get("_meta") or {}
        return meta.get("provider") == self.config.name

    # ---- shared HTTP helpers

    def client(self) -> http1.Client:
        """The HTTP client of this provider (keep-alive pools per event loop, see ``http1``)."""
        return self._http

    async def aclose(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        merged = {"content-type": "application/json"}
        merged.update(self.config.headers)
        if extra:
            merged.update(extra)
        return merged

    async def open_stream(
        self, method: str, url: str, *, json_body: Any, headers: dict[str, str]
    ) -> http1.Response:
        """Send a request and return the response once its status line and headers are in.

        Retries with backoff on connection errors, 429 and 5xx — only before anything has been
        relayed, which is always the case here. Non-2xx answers raise :class:`UpstreamError`.
        The caller must ``await response.aclose()`` (use ``async with aclosing``-style try/finally).
        """
        client = self.client()
        body = json.dumps(json_body, separators=(",", ":")).encode()
        entry = self._wire_entry(method, url, json_body)
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
            except (http1.ConnectError, http1.RemoteProtocolError) as exc:
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
                entry["response"], entry["_size"] = [], 0
                _wire_append(entry, raw.decode(errors="replace"))
            error = self.error_from_response(response.status_code, raw, response.headers)
            if error.retryable and attempt < self.config.max_retries:
                attempt += 1
                delay = (
                    error.retry_after
                    if error.retry_after is not None and error.retry_after <= 5
                    else _backoff(attempt)
                )
                await asyncio.sleep(delay)
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
        except http1.HTTPError as exc:
            raise self._dropped(f"the answer: {exc}") from None
        finally:
            await response.aclose()
        entry = getattr(response, "_openresponses_wire", None)
        if entry is not None:
            _wire_append(entry, raw.decode(errors="replace"))
        try:
            return json.loads(raw)
        except ValueError:
            raise UpstreamError(
                f"The provider '{self.config.name}' sent a body that is not JSON.", status=502
            ) from None

    def _timed_out(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"The provider '{self.config.name}' {what}.", status=504, code="upstream_timeout"
        )

    def _dropped(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"The provider '{self.config.name}' dropped {what}", status=502, code="upstream_disconnected"
        )

    def error_from_response(self, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """Map an upstream HTTP error to an :class:`UpstreamError` carrying the provider's message."""
        message = extract_error_message(raw) or f"HTTP {status}"
        retry_after = _parse_retry_after(headers.get("retry-after"))
        prefix = f"Provider '{self.config.name}' returned HTTP {status}: "
        if status == 429:
            return UpstreamError(
                prefix + message,
                status=429,
                code="rate_limit_exceeded",
                error_type="too_many_requests",
                retry_after=retry_after if retry_after is not None else 1.0,
                retryable=True,
            )
        if status in (400, 422):
            return UpstreamError(
                prefix + message,
                status=400,
                code="upstream_invalid_request",
                error_type="invalid_request_error",
                param=extract_error_param(raw),
            )
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

    async def iter_line_batches(self, response: http1.Response) -> AsyncIterator[list[str]]:
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
                        _wire_append(entry, "\n".join(lines) + "\n")
                    yield lines
        except TimeoutError:
            raise self._timed_out(
                "went silent mid-stream" if started else "did not start answering in time"
            ) from None
        except http1.HTTPError as exc:
            raise self._dropped(f"the stream: {type(exc).__name__}") from None

    async def iter_lines(self, response: http1.Response) -> AsyncIterator[str]:
        """Lines of a streamed body, with the timeouts of :meth:`iter_line_batches`."""
        async for lines in self.iter_line_batches(response):
            for line in lines:
                yield line

    async def iter_sse(self, response: http1.Response) -> AsyncIterator[tuple[str | None, str]]:
        """Server-sent events of a streamed body as ``(event_name, data)`` pairs."""
        event: str | None = None
        data: list[str] = []
        async for lines in self.iter_line_batches(response):
            for line in lines:
                if not line:
                    if data:
                        yield event, data[0] if len(data) == 1 else "\n".join(data)
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
        if data:
            yield event, "\n".join(data)


def refused_tools(request: ModelRequest) -> set[str]:
    """Declared tools the model may not call now: all under ``tool_choice: "none"`` (or an
    ``allowed_tools`` of mode ``none``), else those left out of ``allowed_tools``.

    A name the request never declared is not refused: it reaches the client as the call it was.
    """
    declared = {t.get("name") for t in request.tools if t.get("name")}
    choice = request.tool_choice
    if choice == "none":
        return declared
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        if choice.get("mode") == "none":
            return declared
        return declared - {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
    return set()


def _guarded(sample: Any) -> Any:
    """Wrap an adapter's ``sample``: errors never hold its key, and calls to declared tools the
    request does not allow (``allowed_tools``, ``tool_choice: none``) are refused before they
    reach the emitter, whatever the provider did (a model error: 502 when nothing was sent yet)."""

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


# ---- the wire log: what was sent to and received from providers, for the admin's transcript.

#: Set to a list by whoever wants a record of the upstream calls made in this context (the loop).
WIRE_LOG: ContextVar[list[dict[str, Any]] | None] = ContextVar("openresponses_wire_log", default=None)
WIRE_LOG_MAX_CHARS = 16_384
#: Collected before masking: a little more than is kept, so that a key across the cut is still found.
WIRE_LOG_KEPT_CHARS = WIRE_LOG_MAX_CHARS + 1024
_LONG_STRING = 2_000


def abbreviate(value: Any) -> Any:
    """``value`` with long strings (base64 images, files) shortened, for logs people read."""
    if isinstance(value, str):
        return value if len(value) <= _LONG_STRING else value[:200] + f"… ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: abbreviate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [abbreviate(v) for v in value]
    return value


def _wire_append(entry: dict[str, Any], text: str) -> None:
    room = WIRE_LOG_KEPT_CHARS - entry["_size"]
    if room > 0:
        parts = entry["response"]
        parts.append(text[:room])
        entry["_size"] += min(room, len(text))
        if len(parts) >= 64:  # one string, not hundreds of small ones, per open stream
            parts[:] = ["".join(parts)]


def finished_wire_log(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The wire log as stored: each answer as one string, the provider key masked, cut at
    :data:`WIRE_LOG_MAX_CHARS` (after masking, so no key is ever cut in two and left readable)."""
    finished = []
    for entry in log:
        item = {k: v for k, v in entry.items() if not k.startswith("_")}
        mask = entry.get("_mask") or (lambda text: text)
        item["response"] = mask("".join(entry["response"]))[:WIRE_LOG_MAX_CHARS]
        finished.append(item)
    return finished


def _backoff(attempt: int) -> float:
    return min(2.0, 0.2 * (2 ** (attempt - 1))) * (0.5 + random.random() / 2)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def new_call_id() -> str:
    """A call id for providers that send none (Gemini, Ollama, some Chat Completions servers)."""
    return "call_" + secrets.token_hex(12)


async def drain(iterator: AsyncIterator[Any], seconds: float = 0.5) -> None:
    """Read what follows a stream's terminal frame (briefly) so the connection can return to the pool."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in iterator:
                pass
    except (TimeoutError, UpstreamError):
        pass


def extract_error_message(raw: bytes | str) -> str:
    """The human message of a provider error body (OpenAI, Anthropic, Gemini, Ollama shapes)."""
    try:
        body = json.loads(raw)
    except (ValueError, TypeError):
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return text.strip()[:500]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or json.dumps(error)[:500])
        if isinstance(error, str):
            return error
    return json.dumps(body)[:500]


def extract_error_param(raw: bytes | str) -> str | None:
    """The ``error.param`` of an OpenAI-shaped error body (the request field at fault), if any."""
    try:
        body = json.loads(raw)
    except (ValueError, TypeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    param = error.get("param") if isinstance(error, dict) else None
    return param if isinstance(param, str) and param else None


def message_text(item: dict[str, Any]) -> str:
    """The plain text of a canonical message item (its text parts joined)."""
    return "".join(
        part.get("text") or part.get("refusal") or ""
        for part in item.get("content") or []
        if isinstance(part, dict)
    )


def parse_arguments(arguments: str | None) -> Any:
    """Function-call arguments (a JSON string) as an object; ``{}`` when empty or invalid."""
    if not arguments:
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


def chunks_from(iterable: Iterable[Chunk]) -> AsyncIterator[Chunk]:
    """Wrap a list of chunks (e.g. parsed from a non-streamed body) as an async iterator."""

    async def gen() -> AsyncIterator[Chunk]:
        for chunk in iterable:
            yield chunk

    return gen()
