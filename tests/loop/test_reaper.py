"""The reaper, in process: orphans end through ``response_finish`` with the emitter's events.

(With ``MAX_TAKEOVERS`` 0: the takeover of orphans is tested in ``test_durability``.)"""

from __future__ import annotations

import json
import time

import pytest

from responses_app.events.emitter import ResponseEmitter
from responses_app.gateway import metrics
from responses_app.loop.supervision import reaper
from responses_app.models import Response, ResponseEvent, ResponseItem, UsageRecord
from responses_app.resource import build_resource
from responses_app.states import ResponseStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_takeovers(settings):
    settings.OPENRESPONSES = {**settings.OPENRESPONSES, "MAX_TAKEOVERS": 0}


class Rows:
    """A sink storing the emitter's events as the loop's sink would."""

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


def stored_response(*, status: str, heartbeat_age: float, owner: str = "key:reaped") -> Response:
    now = time.time()
    return Response.objects.create(
        id=f"resp_reap{int(now * 1e6)}",
        model="mock-1",
        provider="mock",
        owner=owner,
        params={},
        status=status,
        created_at=now - heartbeat_age,
        heartbeat_at=now - heartbeat_age,
        request_id="req_reaper_test",
    )


def events_of(response: Response) -> list[dict]:
    return [
        json.loads(payload)
        for payload in ResponseEvent.objects.filter(response=response)
        .order_by("sequence_number")
        .values_list("payload", flat=True)
    ]


def half_run(response: Response) -> None:
    """What a loop stored before its process died: created, in_progress, one finished message."""
    from providers_app.adapters.base import ItemEnd, TextDelta

    emitter = ResponseEmitter(build_resource(response, [], status="in_progress"), Rows(response))
    emitter.emit_lifecycle("response.created")
    emitter.emit_lifecycle("response.in_progress")
    emitter.feed(TextDelta("partial answer"))
    emitter.flush_deltas()
    emitter.feed(ItemEnd())
    emitter.feed(TextDelta("never finished"))
    emitter.flush_deltas()


def test_an_orphan_that_ran_keeps_its_finished_items_and_gets_terminal_events(settings, monkeypatch):
    recorded = []
    monkeypatch.setattr(metrics, "record_response", lambda **kw: recorded.append(kw))
    response = stored_response(status=ResponseStatus.IN_PROGRESS, heartbeat_age=3600)
    half_run(response)
    before = events_of(response)

    assert reaper.reap_orphans() == 1

    response.refresh_from_db()
    assert response.status == ResponseStatus.FAILED
    assert response.error["code"] == "worker_lost" and response.completed_at is not None
    events = events_of(response)
    assert events[: len(before)] == before
    added = events[len(before) :]
    # The unfinished message ends ``incomplete`` with what was streamed; error + failed follow.
    assert [e["type"] for e in added] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    assert added[2]["item"]["status"] == "incomplete"
    assert added[2]["item"]["content"][0]["text"] == "never finished"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert added[-2]["error"]["code"] == "worker_lost"
    failed = added[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_lost"
    texts = [(i["content"][0]["text"], i["status"]) for i in failed["output"]]
    assert texts == [("partial answer", "completed"), ("never finished", "incomplete")]
    stored = ResponseItem.objects.filter(response=response, kind="output").order_by("position")
    assert [row.data["content"][0]["text"] for row in stored] == ["partial answer", "never finished"]
    # Finished like any response: a usage record and the metrics.
    usage = UsageRecord.objects.get(response_id=response.id)
    assert (usage.status, usage.error_code, usage.owner) == ("failed", "worker_lost", "key:reaped")
    assert [(r["model"], r["status"]) for r in recorded] == [("mock-1", "failed")]


def test_a_queued_orphan_that_never_started_gets_a_whole_stream(monkeypatch):
    monkeypatch.setattr(metrics, "record_response", lambda **kw: None)
    response = stored_response(status=ResponseStatus.QUEUED, heartbeat_age=reaper.QUEUED_TIMEOUT_SECONDS + 60)
    assert reaper.reap_orphans() == 1
    events = events_of(response)
    assert [e["type"] for e in events] == ["response.created", "error", "response.failed"]
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    assert events[0]["response"]["status"] == "queued"
    assert events[2]["response"]["output"] == []
    assert UsageRecord.objects.filter(response_id=response.id, status="failed").exists()


def test_live_finished_and_local_responses_are_left_alone(monkeypatch):
    monkeypatch.setattr(metrics, "record_response", lambda **kw: None)
    fresh = stored_response(status=ResponseStatus.IN_PROGRESS, heartbeat_age=0)
    done = stored_response(status=ResponseStatus.COMPLETED, heartbeat_age=3600)
    recent_queue = stored_response(status=ResponseStatus.QUEUED, heartbeat_age=60)
    local = stored_response(status=ResponseStatus.IN_PROGRESS, heartbeat_age=3600)
    assert reaper._reap(None, {local.id}) == ([], [])
    for response in (fresh, done, recent_queue, local):
        status = response.status
        response.refresh_from_db()
        assert response.status == status
        assert not ResponseEvent.objects.filter(response=response).exists()
    assert not UsageRecord.objects.exists()


def test_fail_orphan_checks_again_before_ending(monkeypatch):
    monkeypatch.setattr(metrics, "record_response", lambda **kw: None)
    response = stored_response(status=ResponseStatus.IN_PROGRESS, heartbeat_age=0)
    assert reaper.fail_orphan(response_id=response.id, stale_before=time.time() - 60) is False
    assert reaper.fail_orphan(response_id=response.id, stale_before=time.time() + 60) is True
    response.refresh_from_db()
    assert response.status == ResponseStatus.FAILED
    assert reaper.fail_orphan(response_id=response.id, stale_before=time.time() + 60) is False
