"""Scripted provider wire data for end-to-end tests, shaped like the recorded fixtures (served by
the one fake upstream, ``tests.support.upstream``).

One class per provider family. Each makes replies (``text``, ``tool_call``, ``reasoning_text``)
in that provider's own wire format, streamed or not, and reads back what the adapter sent
upstream (``system``, ``roles``, ``tool_names``, ``tool_results``…), so one scenario can be run
against every provider and checked on both sides.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from .upstream import Recorded, Reply


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for part in content or []:
        if isinstance(part, dict):
            out.append(part.get("text") or "")
    return "".join(out)


class Wire:
    """The interface; ``provider`` is the server's provider name, ``model`` a model routed to it."""

    provider = ""
    model = ""
    family = ""
    key = ""
    #: Whether the provider takes PDFs (others answer such a request with a 400).
    takes_files = True

    def text(self, text: str, *, stream: bool) -> Reply:
        raise NotImplementedError

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        raise NotImplementedError

    def reasoning_text(self, thought: str, signature: str, text: str, *, stream: bool) -> Reply:
        raise NotImplementedError

    # ---- reading the upstream request
    def is_stream(self, recorded: Recorded) -> bool:
        return bool(recorded.json().get("stream"))

    def sent_model(self, recorded: Recorded) -> str:
        return recorded.json().get("model")

    def system(self, body: dict[str, Any]) -> str:
        raise NotImplementedError

    def roles(self, body: dict[str, Any]) -> list[str]:
        """Conversation roles in order (``user``/``assistant``), one per upstream message."""
        raise NotImplementedError

    def texts(self, body: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def images(self, body: dict[str, Any]) -> int:
        raise NotImplementedError

    def files(self, body: dict[str, Any]) -> int:
        raise NotImplementedError

    def reasoning_sent(self, body: dict[str, Any]) -> list[str]:
        """Opaque reasoning artefacts (signatures, encrypted content) sent back upstream."""
        raise NotImplementedError


# --------------------------------------------------------------------------- OpenAI Responses


class OpenAIWire(Wire):
    provider, model, family, key = "openai", "gpt-4o", "openai", "sk-test-openai-secret-0001"

    def _response(self, output: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
        return {
            "id": "resp_" + secrets.token_hex(12),
            "object": "response",
            "created_at": 1754000000,
            "status": status,
            "model": "gpt-4o-2024-08-06",
            "output": output,
            "parallel_tool_calls": True,
            "store": False,
            "usage": {
                "input_tokens": 12,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 7,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 19,
            },
        }

    def _stream(self, items: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> Reply:
        base = self._response([], "in_progress")
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": base},
            {"type": "response.in_progress", "response": base},
        ]
        for index, (item, deltas) in enumerate(items):
            added = {**item, "status": "in_progress"}
            if item["type"] == "message":
                added["content"] = []
            if item["type"] == "function_call":
                added["arguments"] = ""
            events.append({"type": "response.output_item.added", "output_index": index, "item": added})
            for delta in deltas:
                events.append({**delta, "output_index": index, "item_id": item["id"]})
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        events.append({"type": "response.completed", "response": self._response([i for i, _ in items])})
        out = []
        for seq, event in enumerate(events):
            out.append((event["type"], {**event, "sequence_number": seq}))
        return Reply.sse(out)

    def _message(self, text: str) -> dict[str, Any]:
        return {
            "id": "msg_" + secrets.token_hex(8),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }

    def text(self, text: str, *, stream: bool) -> Reply:
        item = self._message(text)
        if not stream:
            return Reply.json(self._response([item]))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        deltas = [{"type": "response.content_part.added", "content_index": 0, "part": part}]
        deltas += [
            {"type": "response.output_text.delta", "content_index": 0, "delta": p, "logprobs": []}
            for p in _pieces(text)
        ]
        deltas += [
            {"type": "response.output_text.done", "content_index": 0, "text": text, "logprobs": []},
            {"type": "response.content_part.done", "content_index": 0, "part": {**part, "text": text}},
        ]
        return self._stream([(item, deltas)])

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        arguments = json.dumps(args)
        item = {
            "id": "fc_" + secrets.token_hex(8),
            "type": "function_call",
            "status": "completed",
            "name": name,
            "call_id": "call_" + secrets.token_hex(8),
            "arguments": arguments,
        }
        if not stream:
            return Reply.json(self._response([item]))
        deltas = [{"type": "response.function_call_arguments.delta", "delta": p} for p in _pieces(arguments)]
        deltas.append({"type": "response.function_call_arguments.done", "arguments": arguments})
        return self._stream([(item, deltas)])

    def reasoning_text(self, thought: str, signature: str, text: str, *, stream: bool) -> Reply:
        reasoning = {
            "id": "rs_" + secrets.token_hex(8),
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": thought}],
            "encrypted_content": signature,
        }
        message = self._message(text)
        if not stream:
            return Reply.json(self._response([reasoning, message]))
        r_deltas = [
            {
                "type": "response.reasoning_summary_part.added",
                "summary_index": 0,
                "part": {"type": "summary_text", "text": ""},
            },
            {"type": "response.reasoning_summary_text.delta", "summary_index": 0, "delta": thought},
            {"type": "response.reasoning_summary_text.done", "summary_index": 0, "text": thought},
            {
                "type": "response.reasoning_summary_part.done",
                "summary_index": 0,
                "part": {"type": "summary_text", "text": thought},
            },
        ]
        m_deltas = [
            {
                "type": "response.content_part.added",
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
            {"type": "response.output_text.delta", "content_index": 0, "delta": text},
            {"type": "response.output_text.done", "content_index": 0, "text": text},
            {
                "type": "response.content_part.done",
                "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []},
            },
        ]
        return self._stream([(reasoning, r_deltas), (message, m_deltas)])

    def _input(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return body.get("input") or []

    def system(self, body: dict[str, Any]) -> str:
        parts = [body.get("instructions") or ""] + [
            _text_of(i.get("content")) for i in self._input(body) if i.get("role") in ("system", "developer")
        ]
        return "\n".join(p for p in parts if p)

    def roles(self, body: dict[str, Any]) -> list[str]:
        return [
            i["role"]
            for i in self._input(body)
            if i.get("type", "message") == "message" and i.get("role") in ("user", "assistant")
        ]

    def texts(self, body: dict[str, Any]) -> list[str]:
        return [
            _text_of(i.get("content"))
            for i in self._input(body)
            if i.get("type", "message") == "message" and i.get("role") in ("user", "assistant")
        ]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [t["name"] for t in body.get("tools") or []]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        calls = {i["call_id"] for i in self._input(body) if i.get("type") == "function_call"}
        return [
            i["output"]
            for i in self._input(body)
            if i.get("type") == "function_call_output" and i["call_id"] in calls
        ]

    def _parts(self, body: dict[str, Any], kind: str) -> int:
        return sum(
            1
            for i in self._input(body)
            if isinstance(i.get("content"), list)
            for p in i["content"]
            if p.get("type") == kind
        )

    def images(self, body: dict[str, Any]) -> int:
        return self._parts(body, "input_image")

    def files(self, body: dict[str, Any]) -> int:
        return self._parts(body, "input_file")

    def reasoning_sent(self, body: dict[str, Any]) -> list[str]:
        return [i.get("encrypted_content") for i in self._input(body) if i.get("type") == "reasoning"]


# --------------------------------------------------------------------------- Anthropic (and z.ai)


class AnthropicWire(Wire):
    provider, model, family, key = "anthropic", "claude-sonnet-4-5", "anthropic", "sk-ant-test-secret-0002"

    def _message(self, content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
        return {
            "id": "msg_01" + secrets.token_hex(11),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 21,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 4,
                "output_tokens": 9,
                "service_tier": "standard",
            },
        }

    def _stream(self, blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]], stop: str) -> Reply:
        start = self._message([], None)  # type: ignore[arg-type]
        start["usage"] = {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4,
            "output_tokens": 1,
        }
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, (block, deltas) in enumerate(blocks):
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            if index == 0:
                events.append(("ping", {"type": "ping"}))
            for delta in deltas:
                events.append(
                    ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 9},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return Reply.sse(events)

    def text(self, text: str, *, stream: bool) -> Reply:
        if not stream:
            return Reply.json(self._message([{"type": "text", "text": text}], "end_turn"))
        return self._stream(
            [({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in _pieces(text)])],
            "end_turn",
        )

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        tool_id = "toolu_01" + secrets.token_hex(11)
        if not stream:
            return Reply.json(
                self._message(
                    [
                        {"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": tool_id, "name": name, "input": args},
                    ],
                    "tool_use",
                )
            )
        arguments = json.dumps(args)
        return self._stream(
            [
                ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me check."}]),
                (
                    {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
                    [{"type": "input_json_delta", "partial_json": ""}]
                    + [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments)],
                ),
            ],
            "tool_use",
        )

    def reasoning_text(self, thought: str, signature: str, text: str, *, stream: bool) -> Reply:
        if not stream:
            return Reply.json(
                self._message(
                    [
                        {"type": "thinking", "thinking": thought, "signature": signature},
                        {"type": "text", "text": text},
                    ],
                    "end_turn",
                )
            )
        return self._stream(
            [
                (
                    {"type": "thinking", "thinking": "", "signature": ""},
                    [{"type": "thinking_delta", "thinking": p} for p in _pieces(thought)]
                    + [{"type": "signature_delta", "signature": signature}],
                ),
                ({"type": "text", "text": ""}, [{"type": "text_delta", "text": text}]),
            ],
            "end_turn",
        )

    def system(self, body: dict[str, Any]) -> str:
        system = body.get("system") or ""
        return system if isinstance(system, str) else _text_of(system)

    def roles(self, body: dict[str, Any]) -> list[str]:
        return [m["role"] for m in body["messages"]]

    def texts(self, body: dict[str, Any]) -> list[str]:
        return [
            "".join(b.get("text", "") for b in m["content"] if b.get("type") == "text")
            for m in body["messages"]
        ]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [t["name"] for t in body.get("tools") or []]

    def _blocks(self, body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        return [b for m in body["messages"] for b in m["content"] if b.get("type") == kind]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        uses = {b["id"] for b in self._blocks(body, "tool_use")}
        return [
            _text_of(b.get("content")) for b in self._blocks(body, "tool_result") if b["tool_use_id"] in uses
        ]

    def images(self, body: dict[str, Any]) -> int:
        return len(self._blocks(body, "image"))

    def files(self, body: dict[str, Any]) -> int:
        return len(self._blocks(body, "document"))

    def reasoning_sent(self, body: dict[str, Any]) -> list[str]:
        return [
            b.get("signature") or b.get("data")
            for m in body["messages"]
            for b in m["content"]
            if b.get("type") in ("thinking", "redacted_thinking")
        ]


class ZaiWire(AnthropicWire):
    provider, model, family, key = "zai", "glm-4.6", "anthropic", "zai-test-secret-0005"


# --------------------------------------------------------------------------- Gemini


class GeminiWire(Wire):
    provider, model, family, key = "gemini", "gemini-2.5-flash", "gemini", "gemini-test-secret-0003"

    def _frame(self, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": 15,
                "candidatesTokenCount": 8,
                "thoughtsTokenCount": 3,
                "totalTokenCount": 26,
            },
            "modelVersion": self.model,
            "responseId": secrets.token_urlsafe(16),
        }

    def _reply(self, parts: list[dict[str, Any]], *, stream: bool) -> Reply:
        if not stream:
            return Reply.json(self._frame(parts, "STOP"))
        frames = [self._frame([p], "STOP" if i == len(parts) - 1 else None) for i, p in enumerate(parts)]
        return Reply.sse([(None, f) for f in frames], crlf=True)

    def text(self, text: str, *, stream: bool) -> Reply:
        return self._reply([{"text": p} for p in (_pieces(text, 12) if stream else [text])], stream=stream)

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        return self._reply(
            [{"functionCall": {"name": name, "args": args}, "thoughtSignature": "c2lnLWdlbWluaS10b29s"}],
            stream=stream,
        )

    def reasoning_text(self, thought: str, signature: str, text: str, *, stream: bool) -> Reply:
        return self._reply(
            [{"text": thought, "thought": True}, {"text": text, "thoughtSignature": signature}], stream=stream
        )

    def is_stream(self, recorded: Recorded) -> bool:
        return ":streamGenerateContent" in recorded.path

    def sent_model(self, recorded: Recorded) -> str:
        return recorded.path.split("/models/")[1].split(":")[0]

    def system(self, body: dict[str, Any]) -> str:
        return "\n".join(p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts") or [])

    def roles(self, body: dict[str, Any]) -> list[str]:
        return [{"model": "assistant"}.get(c["role"], c["role"]) for c in body["contents"]]

    def texts(self, body: dict[str, Any]) -> list[str]:
        return [
            "".join(p.get("text", "") for p in c["parts"] if not p.get("thought")) for c in body["contents"]
        ]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [d["name"] for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]

    def _parts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [p for c in body["contents"] for p in c["parts"]]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        calls = {p["functionCall"]["name"] for p in self._parts(body) if "functionCall" in p}
        out = []
        for p in self._parts(body):
            if "functionResponse" in p and p["functionResponse"]["name"] in calls:
                response = p["functionResponse"]["response"]
                out.append(
                    response.get("output")
                    if isinstance(response.get("output"), str)
                    else json.dumps(response)
                )
        return out

    def images(self, body: dict[str, Any]) -> int:
        return sum(
            1
            for p in self._parts(body)
            if (p.get("inlineData") or p.get("fileData") or {}).get("mimeType", "").startswith("image/")
        )

    def files(self, body: dict[str, Any]) -> int:
        return sum(
            1
            for p in self._parts(body)
            if (p.get("inlineData") or p.get("fileData") or {}).get("mimeType") == "application/pdf"
        )

    def reasoning_sent(self, body: dict[str, Any]) -> list[str]:
        return [p["thoughtSignature"] for p in self._parts(body) if p.get("thoughtSignature")]


# --------------------------------------------------------------------------- Ollama


class OllamaWire(Wire):
    provider, model, family, key = "ollama", "llama3.2", "ollama", ""
    takes_files = False

    def _line(self, **message: Any) -> dict[str, Any]:
        return {
            "model": self.model,
            "created_at": "2025-07-07T20:22:19.184789Z",
            "message": {"role": "assistant", "content": "", **message},
            "done": False,
        }

    def _done(self) -> dict[str, Any]:
        return {
            **self._line(),
            "done_reason": "stop",
            "done": True,
            "total_duration": 182242375,
            "prompt_eval_count": 26,
            "eval_count": 15,
        }

    def _reply(self, lines: list[dict[str, Any]], *, stream: bool) -> Reply:
        if stream:
            return Reply.ndjson(lines + [self._done()])
        merged = self._done()
        for line in lines:
            for key, value in line["message"].items():
                if key in ("content", "thinking"):
                    merged["message"][key] = merged["message"].get(key, "") + value
                elif key != "role":
                    merged["message"][key] = value
        return Reply(content_type="application/json; charset=utf-8", chunks=[json.dumps(merged).encode()])

    def text(self, text: str, *, stream: bool) -> Reply:
        return self._reply([self._line(content=p) for p in _pieces(text)], stream=stream)

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        return self._reply(
            [self._line(tool_calls=[{"function": {"name": name, "arguments": args}}])], stream=stream
        )

    def reasoning_text(self, thought: str, signature: str, text: str, *, stream: bool) -> Reply:
        return self._reply([self._line(thinking=thought), self._line(content=text)], stream=stream)

    def system(self, body: dict[str, Any]) -> str:
        return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")

    def roles(self, body: dict[str, Any]) -> list[str]:
        return [m["role"] for m in body["messages"] if m["role"] in ("user", "assistant")]

    def texts(self, body: dict[str, Any]) -> list[str]:
        return [m.get("content") or "" for m in body["messages"] if m["role"] in ("user", "assistant")]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [t["function"]["name"] for t in body.get("tools") or []]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        return [m["content"] for m in body["messages"] if m["role"] == "tool"]

    def images(self, body: dict[str, Any]) -> int:
        return sum(len(m.get("images") or []) for m in body["messages"])

    def files(self, body: dict[str, Any]) -> int:
        return 0

    def reasoning_sent(self, body: dict[str, Any]) -> list[str]:
        return [m["thinking"] for m in body["messages"] if m.get("thinking")]


# --------------------------------------------------------------------------- Chat Completions


class ChatWire(Wire):
    provider, model, family, key = "local-chat", "chat-qwen3", "openai_chat", "sk-local-chat-secret-0004"

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-abc123",
            "object": "chat.completion.chunk",
            "created": 1754688908,
            "model": self.model,
            "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    def _usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def _stream(self, deltas: list[dict[str, Any]], finish: str) -> Reply:
        chunks = (
            [self._chunk({"role": "assistant", "content": ""})]
            + [self._chunk(d) for d in deltas]
            + [self._chunk({}, finish)]
        )
        chunks.append({**self._chunk({}), "choices": [], "usage": self._usage()})
        return Reply.sse([(None, c) for c in chunks], done=True)

    def _completion(self, message: dict[str, Any], finish: str) -> Reply:
        return Reply.json(
            {
                "id": "chatcmpl-abc123",
                "object": "chat.completion",
                "created": 1754688908,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": self._usage(),
            }
        )

    def text(self, text: str, *, stream: bool) -> Reply:
        if not stream:
            return self._completion({"content": text}, "stop")
        return self._stream([{"content": p} for p in _pieces(text)], "stop")

    def tool_call(self, name: str, args: dict[str, Any], *, stream: bool) -> Reply:
        call_id = "call_" + secrets.token_hex(12)
        arguments = json.dumps(args)
        if not stream:
            return self._completion(
                {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                },
                "tool_calls",
            )
        deltas = [
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        ]
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in _pieces(arguments)]
        return self._stream(deltas, "tool_calls")

    def reasoning_text(self, thought: str, signature: str, text: str, *, stream: bool) -> Reply:
        if not stream:
            return self._completion({"content": text, "reasoning_content": thought}, "stop")
        return self._stream([{"reasoning_content": thought}, {"content": text}], "stop")

    def system(self, body: dict[str, Any]) -> str:
        return "\n".join(
            _text_of(m["content"]) for m in body["messages"] if m["role"] in ("system", "developer")
        )

    def roles(self, body: dict[str, Any]) -> list[str]:
        return [m["role"] for m in body["messages"] if m["role"] in ("user", "assistant")]

    def texts(self, body: dict[str, Any]) -> list[str]:
        return [_text_of(m.get("content")) for m in body["messages"] if m["role"] in ("user", "assistant")]

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [t["function"]["name"] for t in body.get("tools") or []]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        ids = {c["id"] for m in body["messages"] for c in m.get("tool_calls") or []}
        return [
            _text_of(m["content"])
            for m in body["messages"]
            if m["role"] == "tool" and m["tool_call_id"] in ids
        ]

    def _parts(self, body: dict[str, Any], kind: str) -> int:
        return sum(
            1
            for m in body["messages"]
            if isinstance(m.get("content"), list)
            for p in m["content"]
            if p.get("type") == kind
        )

    def images(self, body: dict[str, Any]) -> int:
        return self._parts(body, "image_url")

    def files(self, body: dict[str, Any]) -> int:
        return self._parts(body, "file")

    def reasoning_sent(self, body: dict[str, Any]) -> list[str]:
        return [m.get("reasoning_content") for m in body["messages"] if m.get("reasoning_content")]


ALL_WIRES: list[Wire] = [OpenAIWire(), AnthropicWire(), ZaiWire(), GeminiWire(), OllamaWire(), ChatWire()]
