"""The emitter's event grammar, without database or network: order, sequence numbers, output_index."""

from __future__ import annotations

import json

import pytest

from providers_app.adapters.base import (
    Finish,
    ItemEnd,
    ReasoningDelta,
    ReasoningDone,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from responses_app.events.emitter import ResponseEmitter


class ListSink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def add(self, sequence_number: int, event_type: str, payload: str) -> None:
        event = json.loads(payload)
        assert (event["sequence_number"], event["type"]) == (sequence_number, event_type)
        self.events.append(event)


def run(chunks: list, *, status: str = "completed", error: dict | None = None, start: int = 0) -> list[dict]:
    """Feed ``chunks`` as one sample of a fresh response (outside an event loop: no coalescing)."""
    sink = ListSink()
    emitter = ResponseEmitter(
        {"id": "resp_grammar", "status": "in_progress", "output": [], "usage": None},
        sink,
        sequence_start=start,
    )
    emitter.emit_lifecycle("response.created")
    emitter.emit_lifecycle("response.in_progress")
    emitter.start_sample()
    for chunk in chunks:
        emitter.feed(chunk)
    emitter.end_sample()
    emitter.finish(status, error=error)
    return sink.events


MIXED = [
    ReasoningDelta("thinking "),
    ReasoningDelta("hard"),
    ReasoningDone(encrypted_content="sealed"),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(call_id="call_1", name="lookup"),
    ToolCallDelta('{"city":'),
    ToolCallDelta('"Paris"}'),
    ToolCallStart(call_id="call_2", name="lookup"),
    ToolCallDelta('{"city":"Rome"}'),
    UsageReport(input_tokens=11, output_tokens=7),
    Finish("tool_calls"),
]


def test_sequence_numbers_count_up_from_the_start_without_gaps():
    for start in (0, 5):
        events = run(MIXED, start=start)
        assert [e["sequence_number"] for e in events] == list(range(start, start + len(events)))


def test_lifecycle_frames_the_stream():
    events = run(MIXED)
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["usage"]["input_tokens"] == 11 and final["usage"]["total_tokens"] == 18


def test_each_item_is_added_then_filled_then_done_at_its_output_index():
    events = run(MIXED)
    item_events = [e for e in events if "output_index" in e]
    added = [e["output_index"] for e in item_events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in item_events if e["type"] == "response.output_item.done"]
    assert added == done == [0, 1, 2, 3]
    for index in added:
        mine = [e["type"] for e in item_events if e["output_index"] == index]
        assert mine[0] == "response.output_item.added" and mine[-1] == "response.output_item.done"
        assert mine.count("response.output_item.added") == mine.count("response.output_item.done") == 1
    # Items never interleave: all of item n's events come before item n+1's.
    indexes = [e["output_index"] for e in item_events]
    assert indexes == sorted(indexes)
    # Events of one item carry that item's id.
    for index in added:
        ids = {e.get("item_id") or e["item"]["id"] for e in item_events if e["output_index"] == index}
        assert len(ids) == 1


def test_text_parts_open_before_their_deltas_and_close_before_the_item():
    events = run([TextDelta("Hello, "), TextDelta("world."), Finish()])
    types = [e["type"] for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[6]["text"] == "Hello, world."
    assert {e["content_index"] for e in events if "content_index" in e} == {0}


def test_a_refusal_after_text_is_a_second_content_part():
    events = run([TextDelta("Sure"), RefusalDelta("but no."), Finish()])
    parts = [(e["type"], e["content_index"]) for e in events if e["type"].startswith("response.content_part")]
    assert parts == [
        ("response.content_part.added", 0),
        ("response.content_part.done", 0),
        ("response.content_part.added", 1),
        ("response.content_part.done", 1),
    ]
    message = events[-1]["response"]["output"][0]
    assert [p["type"] for p in message["content"]] == ["output_text", "refusal"]


def test_function_call_arguments_are_closed_before_the_item():
    events = run(MIXED)
    call = [e for e in events if e.get("output_index") == 2]
    assert [e["type"] for e in call] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert call[3]["arguments"] == '{"city":"Paris"}'
    assert call[-1]["item"]["call_id"] == "call_1" and call[-1]["item"]["status"] == "completed"


def test_reasoning_summary_parts():
    events = run(MIXED)
    reasoning = [e["type"] for e in events if e.get("output_index") == 0]
    assert reasoning == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    item = events[-1]["response"]["output"][0]
    assert item["summary"] == [{"type": "summary_text", "text": "thinking hard"}]
    assert item["encrypted_content"] == "sealed"


def test_max_output_tokens_leaves_the_open_item_incomplete():
    events = run([TextDelta("cut sh"), Finish("max_output_tokens")], status="incomplete")
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["item"]["status"] == "incomplete"
    assert events[-1]["type"] == "response.incomplete"


@pytest.mark.parametrize("after_output", [False, True])
def test_a_failure_is_an_error_event_then_response_failed(after_output):
    chunks = [TextDelta("half"), ItemEnd()] if after_output else []
    error = {"code": "upstream_error", "message": "boom", "type": "server_error", "param": None}
    events = run(chunks, status="failed", error=error)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["error"] == {
        "type": "server_error",
        "code": "upstream_error",
        "message": "boom",
        "param": None,
    }
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "upstream_error", "message": "boom"}
    assert len(failed["output"]) == (1 if after_output else 0)


# --------------------------------------------------------------------------- web search and citations


def test_web_search_item_and_citations() -> None:
    from providers_app.adapters.base import Citation, WebSearchDone, WebSearchStart

    events = run(
        [
            WebSearchStart("srv_1"),
            WebSearchDone("srv_1", ["q"], [{"url": "https://a.example", "title": "A"}]),
            Citation("https://a.example", "A", 0, 3),  # no message open: nothing to mark
            TextDelta("Paris is big."),
            Citation("https://a.example", "A", 0, 5),
            Citation("https://a.example", "", 9, 99),  # clamped to the text
            Citation("https://a.example", "A", 4, 4),  # empty: dropped
            ItemEnd(),
            WebSearchStart("srv_2"),  # closed by the next item before its result came
            TextDelta("More."),
            Finish("stop"),
        ]
    )
    types = [e["type"] for e in events]
    search = [e for e in events if e.get("output_index") == 0]
    assert [e["type"] for e in search] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]
    assert search[-1]["item"]["action"] == {"type": "search", "query": "q"}, "no sources unless asked"
    added = [e["annotation"] for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [(a["start_index"], a["end_index"], a["title"]) for a in added] == [
        (0, 5, "A"),
        (9, 13, "https://a.example"),
    ]
    [part] = [e["part"] for e in events if e["type"] == "response.content_part.done"][:1]
    assert part["annotations"] == added
    assert types.index("response.output_text.annotation.added") < types.index("response.output_text.done")
    output = events[-1]["response"]["output"]
    assert [(i["type"], i["status"]) for i in output] == [
        ("web_search_call", "completed"),
        ("message", "completed"),
        ("web_search_call", "incomplete"),
        ("message", "completed"),
    ]


def test_a_taken_over_stream_keeps_its_citations_and_closes_an_open_search() -> None:
    """A loop lost mid-answer: the stored prefix rebuilds the open message with the citations it
    already streamed, and a search left open closes ``incomplete`` as the search it is."""
    from providers_app.adapters.base import Citation, WebSearchStart
    from responses_app.events.resume import resume_emitter

    class Store:
        def __init__(self) -> None:
            self.events: list[tuple[int, str, str]] = []

        def add(self, sequence_number: int, event_type: str, payload: str) -> None:
            self.events.append((sequence_number, event_type, payload))

    for tail, closed in (
        ([TextDelta("Paris is big."), Citation("https://a.example", "A", 0, 5)], "message"),
        ([WebSearchStart("srv_1")], "web_search_call"),
    ):
        store = Store()
        emitter = ResponseEmitter(
            {"id": "resp_1", "status": "in_progress", "output": [], "usage": None}, store
        )
        emitter.start_sample()
        for chunk in tail:
            emitter.feed(chunk)
        after = Store()
        resumed = resume_emitter({"id": "resp_1", "output": []}, after, store.events)
        [item] = resumed.output
        assert (item["type"], item["status"]) == (closed, "incomplete")
        if closed == "message":
            assert item["content"][0]["annotations"][0]["url"] == "https://a.example"


@pytest.mark.parametrize("delta", [TextDelta, lambda text: ReasoningDelta(text, "summary", 0)])
def test_a_long_open_text_is_held_as_a_few_strings_and_closes_whole(delta) -> None:
    """An open item's text is joined as it grows: a loop streaming a long answer does not hold
    one ~50-byte string object per delta until the item closes."""
    from responses_app.events.emitter import TEXT_PIECES_JOINED

    sink = ListSink()
    emitter = ResponseEmitter({"id": "resp_long", "status": "in_progress", "output": [], "usage": None}, sink)
    emitter.emit_lifecycle("response.created")
    emitter.start_sample()
    pieces = [f"w{i} " for i in range(1000)]
    for piece in pieces:
        emitter.feed(delta(piece))
        assert emitter.open is not None and len(emitter.open.buffer) < TEXT_PIECES_JOINED
    emitter.end_sample()
    emitter.finish("completed")
    done = [e for e in sink.events if e["type"].endswith("_text.done")]
    assert [e["text"] for e in done] == ["".join(pieces)]
