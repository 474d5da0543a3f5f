"""A fast fake provider for the benchmark: raw asyncio HTTP/1.1 on 127.0.0.1, keep-alive, no framework.

It answers ``POST /v1/responses`` (Responses API, SSE or JSON) and ``POST /v1/chat/completions``
(Chat Completions, SSE or JSON). The shape of every answer — time to first token, number of
tokens, gap between tokens — is set with ``POST /_config {"ttft_ms": .., "tokens": .., "gap_ms": ..}``.
Token ``i`` is ``"w<i> "`` so a client can check that every delta arrived, in order.

When the request declares tools and carries fewer than ``tool_turns`` tool outputs, the answer is a
function call of the first declared tool (the agentic shape: call, output, call, output, answer).

Frames are pre-encoded once per (api, model, tokens) and written with one ``transport.write`` per
token, paced with ``loop.call_later`` (no coroutine per stream), so thousands of streams cost little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
from functools import lru_cache
from typing import Any

SHAPE: dict[str, float] = {"ttft_ms": 0.0, "tokens": 20, "gap_ms": 0.0, "tool_turns": 2}
STATS = {"requests": 0, "open_streams": 0, "max_open_streams": 0}
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


def token(i: int) -> str:
    return f"w{i} "


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _sse(event: dict[str, Any], named: bool = True) -> bytes:
    head = f"event: {event['type']}\n" if named else ""
    return f"{head}data: {_dumps(event)}\n\n".encode()


def _usage(tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12 + tokens,
    }


def _resource(
    model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": "resp_bench0001",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
        "completed_at": 1700000001 if status == "completed" else None,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": 0,
        "max_tool_calls": None,
        "background": False,
        "service_tier": "default",
        "prompt_cache_key": None,
        "safety_identifier": None,
    }


# --------------------------------------------------------------------------- Responses API frames


@lru_cache(maxsize=64)
def responses_text(model: str, tokens: int) -> tuple[bytes, list[bytes], bytes, bytes]:
    """(head, per-token frames, tail, whole JSON body) of a text answer."""
    text = "".join(token(i) for i in range(tokens))
    msg = {
        "id": "msg_bench0001",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    done_part = {"type": "output_text", "text": text, "annotations": []}
    done_msg = {**msg, "status": "completed", "content": [done_part]}
    seq = 0

    def ev(body: dict[str, Any]) -> bytes:
        nonlocal seq
        body = {"type": body.pop("type"), "sequence_number": seq, **body}
        seq += 1
        return _sse(body)

    head = ev({"type": "response.created", "response": _resource(model, "in_progress", [], None)})
    head += ev({"type": "response.in_progress", "response": _resource(model, "in_progress", [], None)})
    first = ev({"type": "response.output_item.added", "output_index": 0, "item": msg})
    first += ev(
        {
            "type": "response.content_part.added",
            "item_id": msg["id"],
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        }
    )
    frames = []
    for i in range(tokens):
        frame = ev(
            {
                "type": "response.output_text.delta",
                "item_id": msg["id"],
                "output_index": 0,
                "content_index": 0,
                "delta": token(i),
            }
        )
        frames.append(first + frame if i == 0 else frame)
    tail = ev(
        {
            "type": "response.output_text.done",
            "item_id": msg["id"],
            "output_index": 0,
            "content_index": 0,
            "text": text,
        }
    )
    tail += ev(
        {
            "type": "response.content_part.done",
            "item_id": msg["id"],
            "output_index": 0,
            "content_index": 0,
            "part": done_part,
        }
    )
    tail += ev({"type": "response.output_item.done", "output_index": 0, "item": done_msg})
    tail += ev(
        {"type": "response.completed", "response": _resource(model, "completed", [done_msg], _usage(tokens))}
    )
    whole = _dumps(_resource(model, "completed", [done_msg], _usage(tokens))).encode()
    return head, frames, tail, whole


def responses_call(model: str, name: str, call_id: str) -> tuple[bytes, list[bytes], bytes, bytes]:
    """A function call of ``name`` with one arguments delta."""
    args = _dumps({"query": "bench"})
    item = {
        "id": "fc_bench0001",
        "type": "function_call",
        "status": "in_progress",
        "call_id": call_id,
        "name": name,
        "arguments": "",
    }
    done = {**item, "status": "completed", "arguments": args}
    head = _sse(
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": _resource(model, "in_progress", [], None),
        }
    )
    frame = _sse(
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": item}
    )
    frame += _sse(
        {
            "type": "response.function_call_arguments.delta",
            "sequence_number": 2,
            "item_id": item["id"],
            "output_index": 0,
            "delta": args,
        }
    )
    tail = _sse(
        {
            "type": "response.function_call_arguments.done",
            "sequence_number": 3,
            "item_id": item["id"],
            "output_index": 0,
            "arguments": args,
        }
    )
    tail += _sse({"type": "response.output_item.done", "sequence_number": 4, "output_index": 0, "item": done})
    tail += _sse(
        {
            "type": "response.completed",
            "sequence_number": 5,
            "response": _resource(model, "completed", [done], _usage(5)),
        }
    )
    whole = _dumps(_resource(model, "completed", [done], _usage(5))).encode()
    return head, [frame], tail, whole


# --------------------------------------------------------------------------- Chat Completions frames


def _chat_chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        body["choices"] = []
        body["usage"] = usage
    return b"data: " + _dumps(body).encode() + b"\n\n"


def _chat_usage(tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}


@lru_cache(maxsize=64)
def chat_text(model: str, tokens: int) -> tuple[bytes, list[bytes], bytes, bytes]:
    text = "".join(token(i) for i in range(tokens))
    frames = [
        _chat_chunk(model, {"role": "assistant", "content": token(0)} if i == 0 else {"content": token(i)})
        for i in range(tokens)
    ]
    tail = (
        _chat_chunk(model, {}, "stop")
        + _chat_chunk(model, {}, usage=_chat_usage(tokens))
        + b"data: [DONE]\n\n"
    )
    whole = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _chat_usage(tokens),
    }
    return b"", frames, tail, _dumps(whole).encode()


def chat_call(model: str, name: str, call_id: str) -> tuple[bytes, list[bytes], bytes, bytes]:
    args = _dumps({"query": "bench"})
    call = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
    frame = _chat_chunk(model, {"role": "assistant", "content": None, "tool_calls": [call]})
    tail = (
        _chat_chunk(model, {}, "tool_calls")
        + _chat_chunk(model, {}, usage=_chat_usage(5))
        + b"data: [DONE]\n\n"
    )
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{k: v for k, v in call.items() if k != "index"}],
    }
    whole = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": _chat_usage(5),
    }
    return b"", [frame], tail, _dumps(whole).encode()


# --------------------------------------------------------------------------- the server


def _tool_turn(body: dict[str, Any], chat: bool) -> str | None:
    """The tool to call when this request is an unfinished agentic turn, else None."""
    tools = body.get("tools") or []
    if not tools:
        return None
    if chat:
        outputs = sum(
            1 for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "tool"
        )
        name = (tools[0].get("function") or {}).get("name") or tools[0].get("name")
    else:
        items = body.get("input") if isinstance(body.get("input"), list) else []
        outputs = sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output")
        name = tools[0].get("name") or (tools[0].get("function") or {}).get("name")
    return name if outputs < int(SHAPE["tool_turns"]) else None


class Stream:
    """One paced answer being written; advanced by timer callbacks only."""

    __slots__ = ("proto", "frames", "tail", "index", "gap", "handle")

    def __init__(self, proto: UpstreamProtocol, frames: list[bytes], tail: bytes, gap: float) -> None:
        self.proto = proto
        self.frames = frames
        self.tail = tail
        self.index = 0
        self.gap = gap
        self.handle: asyncio.TimerHandle | None = None

    def step(self) -> None:
        proto = self.proto
        if proto.transport is None or proto.transport.is_closing():
            return
        frames = self.frames
        if self.gap <= 0:
            proto.transport.write(chunk(b"".join(frames) + self.tail) + b"0\r\n\r\n")
            proto.stream_done()
            return
        i = self.index
        self.index = i + 1
        if i + 1 >= len(frames):
            proto.transport.write(chunk(frames[i] + self.tail) + b"0\r\n\r\n")
            proto.stream_done()
            return
        proto.transport.write(chunk(frames[i]))
        self.handle = asyncio.get_running_loop().call_later(self.gap, self.step)


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.stream: Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            if self.stream.handle is not None:
                self.stream.handle.cancel()
            self.stream_done()
        self.transport = None

    def stream_done(self) -> None:
        if self.stream is not None:
            self.stream = None
            STATS["open_streams"] -= 1
            if self.buffer:
                self._parse()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.stream is None:
            self._parse()

    def _parse(self) -> None:
        while self.stream is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._handle(method, path.split("?", 1)[0], body)

    def _reply(self, status: int, payload: bytes, content_type: bytes = b"application/json") -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, REASONS.get(status, b"OK"), content_type, len(payload), payload)
        )

    def _handle(self, method: str, path: str, raw: bytes) -> None:
        STATS["requests"] += 1
        if path == "/_config" and method == "POST":
            SHAPE.update(json.loads(raw or b"{}"))
            self._reply(200, _dumps(SHAPE).encode())
            return
        if path == "/_stats":
            self._reply(200, _dumps({**STATS, "shape": SHAPE, "pid": os.getpid()}).encode())
            return
        chat = path.endswith("/chat/completions")
        if method != "POST" or not (chat or path.endswith("/responses")):
            self._reply(404, b'{"error":{"message":"not found"}}')
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply(400, b'{"error":{"message":"body is not JSON"}}')
            return
        model = str(body.get("model") or "bench-model")
        tool = _tool_turn(body, chat)
        if tool is not None:
            call_id = f"call_{STATS['requests']}"
            head, frames, tail, whole = (
                chat_call(model, tool, call_id) if chat else responses_call(model, tool, call_id)
            )
        else:
            tokens = int(SHAPE["tokens"])
            head, frames, tail, whole = chat_text(model, tokens) if chat else responses_text(model, tokens)
        ttft = float(SHAPE["ttft_ms"]) / 1000
        gap = float(SHAPE["gap_ms"]) / 1000
        if not body.get("stream"):
            loop = asyncio.get_running_loop()
            if ttft + gap * max(0, len(frames) - 1) > 0:
                STATS["open_streams"] += 1
                self.stream = Stream(self, [], b"", 0)
                loop.call_later(ttft + gap * max(0, len(frames) - 1), self._finish_json, whole)
            else:
                self._reply(200, whole)
            return
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
            + (chunk(head) if head else b"")
        )
        self.stream = stream = Stream(self, frames, tail, gap)
        STATS["open_streams"] += 1
        STATS["max_open_streams"] = max(STATS["max_open_streams"], STATS["open_streams"])
        if ttft > 0:
            stream.handle = asyncio.get_running_loop().call_later(ttft, stream.step)
        else:
            stream.step()

    def _finish_json(self, whole: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._reply(200, whole)
        self.stream_done()


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 65536
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096, reuse_address=True)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_fd_limit()
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
