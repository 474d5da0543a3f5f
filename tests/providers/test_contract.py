"""The adapter contract, run against every adapter over a real loopback socket.

Like Django's ``BaseCacheTests``: :class:`AdapterContract` holds the tests, and one class per
adapter mixes it in and says only what differs (its wire format, where it posts, the end of its
stream, a field it cannot honour). What every adapter must do, whatever its provider:
a text stream becomes chunks ending with ``Finish``; HTTP 429 (with ``Retry-After``), 5xx, 401,
403 and 404 are mapped the same way; the provider key never appears in an error or in the wire
log; a stream cut short and a frame that is not JSON are errors; a field the provider cannot
honour is refused before any HTTP call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers_app.adapters.anthropic import AnthropicAdapter
from providers_app.adapters.base import (
    WIRE_LOG,
    Finish,
    ModelRequest,
    ProviderAdapter,
    ProviderConfig,
    TextDelta,
    UnsupportedParameter,
    UpstreamError,
    finished_wire_log,
)
from providers_app.adapters.gemini import GeminiAdapter
from providers_app.adapters.ollama import OllamaAdapter
from providers_app.adapters.openai_chat import OpenAIChatAdapter
from providers_app.adapters.openai_responses import OpenAIResponsesAdapter
from tests.support.adapters import adapter_for, collect_until_error, texts, user
from tests.support.upstream import FakeUpstream, Reply
from tests.support.wire import AnthropicWire, ChatWire, GeminiWire, OllamaWire, OpenAIWire, Wire

KEY = "sk-contract-secret-0123456789"
ANSWER = "The capital of France is Paris, of course."
HELLO = ModelRequest(model="m-1", items=[user("What is the capital of France?")])


class AdapterContract:
    """The tests every adapter passes. Subclasses set the class attributes below."""

    adapter_class: type[ProviderAdapter]
    wire: Wire
    #: Appended to the fake upstream's URL to make ``base_url``.
    base_path = ""
    #: The path the streamed call of :data:`HELLO` goes to.
    stream_path = ""
    #: How many chunks (frames) at the end of ``wire.text(..., stream=True)`` carry its ending.
    ending_frames = 1
    #: A request the provider cannot honour and the ``param`` it is refused with (None: none exists).
    unsupported: tuple[ModelRequest, str] | None = None

    def adapter(self, upstream: FakeUpstream, **config: Any) -> ProviderAdapter:
        config.setdefault("max_retries", 0)
        return adapter_for(self.adapter_class, upstream, self.base_path, name="p", api_key=KEY, **config)

    def run(
        self, upstream: FakeUpstream, request: ModelRequest = HELLO, *, stream: bool = True, **config: Any
    ) -> tuple[list[Any], Exception | None]:
        return collect_until_error(self.adapter(upstream, **config), request, stream=stream)

    def text_stream(self) -> Reply:
        return self.wire.text(ANSWER, stream=True)

    # ---- text

    def test_text_stream_becomes_chunks(self, upstream: FakeUpstream) -> None:
        upstream.queue(self.text_stream())
        chunks, error = self.run(upstream)
        assert error is None
        assert texts(chunks) == ANSWER
        assert chunks[-1] == Finish("stop")
        (sent,) = upstream.requests
        assert sent.method == "POST" and sent.path == self.stream_path
        assert KEY not in sent.path

    def test_whole_answer_becomes_chunks(self, upstream: FakeUpstream) -> None:
        upstream.queue(self.wire.text(ANSWER, stream=False))
        chunks, error = self.run(upstream, stream=False)
        assert error is None
        assert texts(chunks) == ANSWER
        assert chunks[-1] == Finish("stop")

    # ---- HTTP errors

    def test_429_maps_to_rate_limit_with_retry_after(self, upstream: FakeUpstream) -> None:
        upstream.queue(
            Reply.json({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "7"})
        )
        chunks, error = self.run(upstream)
        assert chunks == []
        assert isinstance(error, UpstreamError)
        assert (error.status, error.code, error.retry_after) == (429, "rate_limit_exceeded", 7.0)
        assert "slow down" in error.message
        assert len(upstream.requests) == 1

    def test_429_with_a_short_retry_after_is_retried(self, upstream: FakeUpstream) -> None:
        upstream.queue(
            Reply.json({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"}),
            self.text_stream(),
        )
        chunks, error = self.run(upstream, max_retries=1)
        assert error is None and texts(chunks) == ANSWER
        assert len(upstream.requests) == 2

    def test_429_with_a_long_retry_after_is_not_waited_for(self, upstream: FakeUpstream) -> None:
        upstream.queue(
            Reply.json({"error": {"message": "come back later"}}, status=429, headers={"Retry-After": "30"})
        )
        chunks, error = self.run(upstream, max_retries=2)
        assert isinstance(error, UpstreamError)
        assert (error.status, error.retry_after) == (429, 30.0)
        assert len(upstream.requests) == 1  # the client gets the 429 and its Retry-After

    @pytest.mark.parametrize("status", [500, 503])
    def test_5xx_maps_to_502(self, upstream: FakeUpstream, status: int) -> None:
        upstream.queue(Reply.json({"error": {"message": "the server had an error"}}, status=status))
        chunks, error = self.run(upstream)
        assert chunks == []
        assert isinstance(error, UpstreamError)
        assert (error.status, error.code) == (502, "upstream_error")
        assert "the server had an error" in error.message

    def test_5xx_is_retried_before_the_first_byte(self, upstream: FakeUpstream) -> None:
        upstream.queue(Reply.json({"error": {"message": "try again"}}, status=502), self.text_stream())
        chunks, error = self.run(upstream, max_retries=1)
        assert error is None and texts(chunks) == ANSWER
        assert len(upstream.requests) == 2

    @pytest.mark.parametrize("status", [401, 403])
    def test_auth_failure_maps_to_502_with_the_key_masked(self, upstream: FakeUpstream, status: int) -> None:
        upstream.queue(
            Reply.json({"error": {"message": f"Incorrect API key provided: {KEY}"}}, status=status)
        )
        chunks, error = self.run(upstream)
        assert chunks == []
        assert isinstance(error, UpstreamError)
        assert (error.status, error.code) == (502, "upstream_auth_failed")
        assert KEY not in error.message and KEY not in str(error)
        assert "Incorrect API key provided: ***" in error.message

    def test_404_is_model_not_found(self, upstream: FakeUpstream) -> None:
        upstream.queue(Reply.json({"error": {"message": "no such model m-1"}}, status=404))
        _, error = self.run(upstream, stream=False)
        assert isinstance(error, UpstreamError)
        assert (error.status, error.code, error.param) == (404, "model_not_found", "model")

    # ---- the key

    def test_key_masked_in_the_wire_log(self, upstream: FakeUpstream) -> None:
        upstream.queue(Reply.json({"error": {"message": f"key {KEY} was revoked"}}, status=401))
        adapter = self.adapter(upstream)

        async def run() -> tuple[list[dict[str, Any]], Exception | None]:
            log: list[dict[str, Any]] = []
            WIRE_LOG.set(log)
            try:
                async for _ in adapter.sample(HELLO, stream=True):
                    pass
            except UpstreamError as exc:
                return log, exc
            finally:
                await adapter.aclose()
            return log, None

        log, error = asyncio.run(run())
        assert isinstance(error, UpstreamError) and KEY not in error.message
        (entry,) = finished_wire_log(log)
        assert entry["status"] == 401 and entry["provider"] == "p"
        assert "was revoked" in entry["response"] and "***" in entry["response"]
        assert KEY not in json.dumps(entry)

    def test_key_sent_and_never_in_the_url(self, upstream: FakeUpstream) -> None:
        upstream.queue(self.text_stream())
        self.run(upstream)
        (sent,) = upstream.requests
        assert KEY not in sent.path
        assert any(KEY in value for value in sent.headers.values())

    # ---- broken streams

    def test_stream_cut_short_is_an_error(self, upstream: FakeUpstream) -> None:
        reply = self.text_stream()
        reply.chunks = reply.chunks[: -self.ending_frames]
        upstream.queue(reply)
        chunks, error = self.run(upstream)
        assert isinstance(error, UpstreamError)
        assert (error.status, error.code) == (502, "upstream_disconnected")
        assert ANSWER.startswith(texts(chunks)) and texts(chunks)
        assert not any(isinstance(c, Finish) for c in chunks)

    def test_frame_that_is_not_json_is_an_error(self, upstream: FakeUpstream) -> None:
        reply = self.text_stream()
        broken = b"{not json\n" if self.adapter_class.framing == "ndjson" else b"data: {not json\n\n"
        reply.chunks = [*reply.chunks[:-1], broken, reply.chunks[-1]]
        upstream.queue(reply)
        chunks, error = self.run(upstream)
        assert isinstance(error, UpstreamError)
        assert error.status == 502 and "not JSON" in error.message
        assert not any(isinstance(c, Finish) for c in chunks)

    # ---- fields the provider cannot honour

    @pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
    def test_unsupported_parameter_refused_before_any_http_call(
        self, upstream: FakeUpstream, stream: bool
    ) -> None:
        if self.unsupported is None:
            pytest.skip(f"{self.adapter_class.__name__} forwards every field: there is nothing it refuses")
        request, param = self.unsupported
        chunks, error = self.run(upstream, request, stream=stream)
        assert chunks == []
        assert isinstance(error, UnsupportedParameter)
        assert (error.status, error.code, error.param) == (400, "unsupported_parameter", param)
        assert upstream.requests == [], "refused before any upstream call"


def _with_part(part: dict[str, Any]) -> ModelRequest:
    return ModelRequest(model="m-1", items=[{"type": "message", "role": "user", "content": [part]}])


class TestOpenAIResponses(AdapterContract):
    adapter_class = OpenAIResponsesAdapter
    wire = OpenAIWire()
    base_path = "/v1"
    stream_path = "/v1/responses"
    ending_frames = 1  # response.completed
    unsupported = None  # a near pass-through


class TestOpenAIChat(AdapterContract):
    adapter_class = OpenAIChatAdapter
    wire = ChatWire()
    base_path = "/v1"
    stream_path = "/v1/chat/completions"
    ending_frames = 3  # the finish_reason chunk, the usage chunk, [DONE]
    unsupported = (
        _with_part({"type": "input_file", "file_url": "https://example.com/a.pdf"}),
        "input[0].content[0].file_url",
    )


class TestAnthropic(AdapterContract):
    adapter_class = AnthropicAdapter
    wire = AnthropicWire()
    base_path = "/v1"
    stream_path = "/v1/messages"
    ending_frames = 2  # message_delta (the stop reason), message_stop
    unsupported = (
        ModelRequest(model="m-1", items=[user("hi")], text_format={"type": "json_object"}),
        "text.format",
    )


class TestGemini(AdapterContract):
    adapter_class = GeminiAdapter
    wire = GeminiWire()
    base_path = "/v1beta"
    stream_path = "/v1beta/models/m-1:streamGenerateContent?alt=sse"
    ending_frames = 1  # the frame with finishReason
    unsupported = (_with_part({"type": "input_image", "file_id": "file-1"}), "input")


class TestOllama(AdapterContract):
    adapter_class = OllamaAdapter
    wire = OllamaWire()
    stream_path = "/api/chat"
    ending_frames = 1  # the done: true line
    unsupported = (
        _with_part({"type": "input_file", "filename": "a.pdf", "file_data": "JVBE"}),
        "input[0].content[0]",
    )


# --------------------------------------------------------------------------- the template's own hooks


def _json_only_body(request: ModelRequest, config: Any, *, stream: bool) -> dict[str, Any]:
    return {"prompt": request.items[-1]["content"][0]["text"], "stream": stream}


def _json_only_answer(body: dict[str, Any], provider: str) -> list[Any]:
    return [TextDelta(body["text"]), Finish("stop")]


class JsonOnlyAdapter(ProviderAdapter):
    """A provider that cannot stream: ``framing = "json"``."""

    family = "json_only"
    framing = "json"
    path = "generate"
    build_body = staticmethod(_json_only_body)
    parse_body = staticmethod(_json_only_answer)


def test_json_framing_answers_a_streamed_request_whole(upstream: FakeUpstream) -> None:
    upstream.queue(Reply.json({"text": "whole"}))
    chunks, error = collect_until_error(adapter_for(JsonOnlyAdapter, upstream, name="j"), HELLO, stream=True)
    assert error is None and chunks == [TextDelta("whole"), Finish("stop")]
    (sent,) = upstream.requests
    assert sent.path == "/generate" and sent.json() == {
        "prompt": "What is the capital of France?",
        "stream": False,
    }


def test_an_adapter_without_its_hooks_says_which_are_missing() -> None:
    class Incomplete(ProviderAdapter):
        family = "incomplete"

    adapter = Incomplete(ProviderConfig("i", "incomplete", base_url="http://127.0.0.1:9"))
    with pytest.raises(NotImplementedError, match="build_body"):
        adapter.request_body(HELLO, stream=True)
    with pytest.raises(NotImplementedError, match="path"):
        adapter.endpoint(HELLO, stream=True)
    with pytest.raises(NotImplementedError, match="parser_class"):
        adapter.stream_parser(HELLO)


class OwnSampleAdapter(ProviderAdapter):
    """An adapter written before the template: its own sample() over the documented helpers."""

    family = "own"

    async def sample(self, request: ModelRequest, *, stream: bool) -> AsyncIterator[Any]:
        response = await self.open_stream("POST", self.url("x"), json_body={}, headers=self.headers())
        try:
            async for event, data in self.iter_sse(response):
                if data == "[DONE]":
                    break
                yield TextDelta(f"{event}:{data}" if event else data)
        finally:
            await response.aclose()
        yield Finish("stop")


def test_an_adapter_with_its_own_sample_keeps_the_helpers_and_the_guard(upstream: FakeUpstream) -> None:
    frames = [b"data: a\n\n", f"event: e\ndata: {KEY}\n\n".encode(), b"data: [DONE]\n\n"]
    upstream.queue(Reply(content_type="text/event-stream", chunks=frames))
    chunks, error = collect_until_error(adapter_for(OwnSampleAdapter, upstream, name="o"), HELLO)
    assert error is None and chunks == [TextDelta("a"), TextDelta(f"e:{KEY}"), Finish("stop")]
    upstream.queue(Reply.json({"error": {"message": f"bad key {KEY}"}}, status=401))
    _, error = collect_until_error(adapter_for(OwnSampleAdapter, upstream, name="o", api_key=KEY), HELLO)
    assert isinstance(error, UpstreamError) and error.code == "upstream_auth_failed"
    assert KEY not in error.message  # the guard masks the key of a hand-written sample() too
