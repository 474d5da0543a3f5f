"""Deltas parsed from one network read leave as one event; an idle stream sends each at once."""

from __future__ import annotations

import asyncio
import json

from providers_app.adapters.base import Finish, TextDelta, ToolCallDelta, ToolCallStart
from responses_app.events.emitter import ResponseEmitter


class ListSink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, sequence_number: int, event_type: str, payload: str) -> None:
        event = json.loads(payload)
        assert event["sequence_number"] == sequence_number and event["type"] == event_type
        self.events.append(event)


def new_emitter() -> tuple[ResponseEmitter, ListSink]:
    sink = ListSink()
    return ResponseEmitter({"id": "resp_x", "output": [], "usage": None}, sink), sink


def deltas(sink: ListSink, kind: str = "response.output_text.delta") -> list[str]:
    return [e["delta"] for e in sink.events if e["type"] == kind]


def test_deltas_fed_in_one_turn_become_one_event() -> None:
    async def run() -> ListSink:
        emitter, sink = new_emitter()
        for word in ("a", "b", "c"):
            emitter.feed(TextDelta(word))
        assert deltas(sink) == []  # held until the read is processed
        await asyncio.sleep(0)
        emitter.feed(TextDelta("d"))
        await asyncio.sleep(0)
        emitter.feed(Finish())
        return sink

    sink = asyncio.run(run())
    assert deltas(sink) == ["abc", "d"]
    numbers = [e["sequence_number"] for e in sink.events]
    assert numbers == list(range(len(numbers)))
    done = next(e for e in sink.events if e["type"] == "response.output_text.done")
    assert done["text"] == "abcd"


def test_another_event_flushes_held_deltas_first() -> None:
    async def run() -> ListSink:
        emitter, sink = new_emitter()
        emitter.feed(TextDelta("hello "))
        emitter.feed(TextDelta("world"))
        emitter.feed(ToolCallStart(call_id="call_1", name="lookup"))  # closes the message
        emitter.feed(ToolCallDelta('{"q":'))
        emitter.feed(ToolCallDelta('"x"}'))
        emitter.feed(Finish("tool_calls"))
        return sink

    sink = asyncio.run(run())
    types = [e["type"] for e in sink.events]
    assert deltas(sink) == ["hello world"]
    assert deltas(sink, "response.function_call_arguments.delta") == ['{"q":"x"}']
    assert types.index("response.output_text.delta") < types.index("response.output_text.done")
    assert types.index("response.function_call_arguments.delta") < types.index(
        "response.function_call_arguments.done"
    )
    numbers = [e["sequence_number"] for e in sink.events]
    assert numbers == list(range(len(numbers)))


def test_without_an_event_loop_each_delta_leaves_at_once() -> None:
    emitter, sink = new_emitter()
    emitter.feed(TextDelta("a"))
    emitter.feed(TextDelta("b"))
    assert deltas(sink) == ["a", "b"]


def test_the_flush_interval_follows_the_streams_of_every_worker_process(monkeypatch) -> None:
    """40 streams in this process: 80 ms with one worker process, the 100 ms cap with two (80 in all)."""
    from responses_app.loop import runner

    class Activity:
        active = {f"resp_{n}": None for n in range(40)}

    monkeypatch.setattr(runner, "activity", lambda: Activity())
    monkeypatch.setattr(runner.openresponses_settings, "EVENT_FLUSH_INTERVAL", 0.05, raising=False)
    intervals = []
    for processes in ("1", "2"):
        monkeypatch.setenv("OPENRESPONSES_WORKER_PROCESSES", processes)
        runner._processes.cache_clear()
        intervals.append(runner.flush_interval())
    runner._processes.cache_clear()
    assert [round(i, 6) for i in intervals] == [0.08, 0.1]
