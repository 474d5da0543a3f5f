"""Durable loops, in process: the takeover of orphans and the resumed loop (mock provider, SQLite)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from providers_app.adapters.base import Finish, TextDelta, ToolCallDelta, ToolCallStart, UsageReport
from responses_app.events.emitter import ResponseEmitter
from responses_app.gateway import metrics
from responses_app.loop.runner import resume_response
from responses_app.loop.supervision import reaper
from responses_app.loop.tools import hosted_tool_from_callable
from responses_app.models import Response, ResponseEvent, ResponseItem
from responses_app.resource import build_resource
from responses_app.selectors import response_context_items
from responses_app.states import ResponseStatus
from tests.support import hosted_tools
from tests.support.spec import assert_valid_stream

pytestmark = pytest.mark.django_db(transaction=True)
TOOLS = ("logged_tool", "blocking_tool", "once_only_tool")


@pytest.fixture(autouse=True)
def durable_settings(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRESPONSES_TEST_TOOL_LOG", str(tmp_path / "tools.log"))
    monkeypatch.setattr(metrics, "record_response", lambda **kw: None)
    settings.OPENRESPONSES = {
        **settings.OPENRESPONSES,
        "MAX_TAKEOVERS": 2,
        "HOSTED_TOOLS": [f"tests.support.hosted_tools.{name}" for name in TOOLS],
        "TOOL_TIMEOUT": 5.0,
    }


class Rows:
    """Stores the emitter's events as a lost loop's sink would have."""

    def __init__(self, response: Response) -> None:
        self.response = response

    def add(self, sequence_number: int, event_type: str, payload: str) -> None:
        ResponseEvent.objects.create(
            response=self.response,
            sequence_number=sequence_number,
            type=event_type,
            payload=payload,
            created_at=time.time(),
        )


def lost_response(
    *, takeovers: int = 1, checkpoint: dict | None = None, age: float = 3600, with_tools: bool = True
) -> Response:
    now = time.time()
    tools = [{"type": "function", "name": name, "hosted": True} for name in TOOLS] if with_tools else []
    response = Response.objects.create(
        id=f"resp_durable{int(now * 1e6)}",
        model="mock-1",
        provider="mock",
        owner="key:durable",
        params={"tools": tools, "tool_choice": "auto"},
        status=ResponseStatus.IN_PROGRESS,
        created_at=now - age,
        heartbeat_at=now - age,
        attempts=takeovers,
        takeovers=takeovers,
        checkpoint=checkpoint,
    )
    ResponseItem.objects.create(
        response=response,
        kind=ResponseItem.Kind.INPUT,
        position=0,
        item_id="msg_in",
        item_type="message",
        data={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
    )
    return response


def started_emitter(response: Response) -> ResponseEmitter:
    emitter = ResponseEmitter(build_resource(response, [], status="in_progress"), Rows(response))
    emitter.emit_lifecycle("response.created")
    emitter.emit_lifecycle("response.in_progress")
    return emitter


def events_of(response: Response) -> list[dict]:
    return [
        json.loads(payload)
        for payload in ResponseEvent.objects.filter(response=response)
        .order_by("sequence_number")
        .values_list("payload", flat=True)
    ]


def sampled_with_calls(response: Response, calls: list[tuple[str, str]], tools: dict) -> list[str]:
    """The lost loop's first sample (tool calls) and its checkpoint; returns the call ids."""
    emitter = started_emitter(response)
    emitter.start_sample()
    for call_id, name in calls:
        emitter.feed(ToolCallStart(call_id=call_id, name=name))
        emitter.feed(ToolCallDelta(arguments=json.dumps({"name": call_id})))
        emitter.flush_deltas()
    emitter.feed(UsageReport(input_tokens=7, output_tokens=3))
    emitter.feed(Finish("tool_calls"))
    emitter.end_sample()
    Response.objects.filter(id=response.id).update(
        checkpoint={
            "stage": "sampled",
            "iteration": 0,
            "sample_items": [item["id"] for item in emitter.output],
            "finish_reason": "tool_calls",
            "items": len(emitter.output),
            "usage": emitter.usage,
            "item_meta": {},
            "tool_calls": 0,
            "tools": tools,
        }
    )
    return [call_id for call_id, _ in calls]


def resume(response: Response, takeover: int = 1) -> str | None:
    return asyncio.run(resume_response(response.id, takeover=takeover))


def test_a_loop_lost_mid_sample_closes_the_partial_item_and_samples_again():
    response = lost_response(checkpoint=None, with_tools=False)
    emitter = started_emitter(response)
    emitter.feed(TextDelta("half an ans"))
    emitter.flush_deltas()
    before = events_of(response)

    assert resume(response) == "completed"

    events = events_of(response)
    assert events[: len(before)] == before
    assert_valid_stream(events)
    added = [e["type"] for e in events[len(before) :]]
    assert added[:3] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert "response.created" not in added and "response.in_progress" not in added
    final = events[-1]["response"]
    assert [(i["type"], i["status"]) for i in final["output"]] == [
        ("message", "incomplete"),
        ("message", "completed"),
    ]
    assert final["output"][0]["content"][0]["text"] == "half an ans"
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1]
    response.refresh_from_db()
    assert response.status == "completed" and response.attempts == 2
    stored = ResponseItem.objects.filter(response=response, kind="output").order_by("position")
    assert [row.data["id"] for row in stored] == [i["id"] for i in final["output"]]
    # The partial item stays in the output; a later turn's context leaves it out.
    assert stored[0].data["_meta"]["abandoned"] is True
    context_ids = [item.get("id") for item in response_context_items(response=response)]
    assert final["output"][0]["id"] not in context_ids and final["output"][1]["id"] in context_ids


def test_a_completed_call_is_never_run_again_and_a_started_one_runs_with_its_key():
    response = lost_response()
    done, started = sampled_with_calls(
        response,
        [("call_done", "logged_tool"), ("call_started", "blocking_tool")],
        {"call_done": {"output": "stored result"}, "call_started": {}},
    )
    # The retry of a call that may have started: the tool sees the same key again and finishes it.
    hosted_tools._log(f"start blocking_tool {response.id}:{started}")

    assert resume(response) == "completed"

    assert hosted_tools.tool_log() == [
        f"start blocking_tool {response.id}:{started}",
        f"start blocking_tool {response.id}:{started}",
        f"done blocking_tool {response.id}:{started}",
    ]
    events = events_of(response)
    assert_valid_stream(events)
    final = events[-1]["response"]
    outputs = {i["call_id"]: i["output"] for i in final["output"] if i["type"] == "function_call_output"}
    assert outputs == {done: "stored result", started: "blocked call_started"}
    assert final["usage"]["input_tokens"] >= 7  # the lost loop's sample counts
    response.refresh_from_db()
    assert response.checkpoint["stage"] == "tools_done"


def test_a_started_call_of_a_tool_not_safe_to_retry_fails_the_response_cleanly():
    response = lost_response()
    sampled_with_calls(response, [("call_once", "once_only_tool")], {"call_once": {}})

    assert resume(response) == "failed"

    assert hosted_tools.tool_log() == []  # not run again
    events = events_of(response)
    assert_valid_stream(events)
    assert events[-2]["error"]["code"] == "tool_not_retryable"
    response.refresh_from_db()
    assert response.error["code"] == "tool_not_retryable"


def test_a_stale_or_repeated_claim_does_nothing():
    response = lost_response(takeovers=2, checkpoint=None, with_tools=False)
    started_emitter(response)
    assert resume(response, takeover=1) is None  # an older takeover's task
    assert resume(response, takeover=2) == "completed"
    assert resume(response, takeover=2) is None


def test_the_reaper_takes_orphans_over_until_the_limit_then_fails_them(monkeypatch):
    counted = []
    monkeypatch.setattr(metrics, "record_takeover", lambda **kw: counted.append(kw["outcome"]))
    response = lost_response(takeovers=0, checkpoint=None)
    started_emitter(response)
    for takeover in (1, 2):
        failed, taken = reaper._reap(None)
        assert (failed, taken) == ([], [(response.id, takeover)])
        assert reaper._reap(None) == ([], [])  # its heartbeat was renewed: not an orphan now
        Response.objects.filter(id=response.id).update(heartbeat_at=time.time() - 3600)
    failed, taken = reaper._reap(None)
    assert taken == [] and [rid for rid, _ in failed] == [response.id]
    response.refresh_from_db()
    assert response.status == "failed" and response.takeovers == 2
    assert response.error["code"] == "worker_lost_repeatedly"
    assert counted == ["resumed", "resumed", "failed"]
    assert_valid_stream(events_of(response))


def test_hosted_tools_take_the_idempotency_key_out_of_their_schema():
    tool = hosted_tool_from_callable(hosted_tools.blocking_tool)
    assert tool.takes_idempotency_key and tool.retry_safe
    assert "idempotency_key" not in tool.parameters["properties"]
    once = hosted_tool_from_callable(hosted_tools.once_only_tool)
    assert not once.retry_safe and not once.takes_idempotency_key


def test_takeovers_are_exported_by_outcome():
    from prometheus_client.parser import text_string_to_metric_families

    metrics.reset_local()
    for outcome in ("resumed", "resumed", "failed"):
        metrics.record_takeover(outcome=outcome)
    found = {f.name: f for f in text_string_to_metric_families(metrics.exposition())}
    samples = {s.labels["outcome"]: s.value for s in found["openresponses_takeovers"].samples}
    assert samples == {"resumed": 2, "failed": 1}
