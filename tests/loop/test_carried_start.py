"""A loop whose message carried its response and input: the upstream request goes out while the
start is being stored, and nothing of the loop is stored, published or acknowledged before it is.

The start is held until the test lets it go (``runner._start_carried``), the provider is the
built-in mock behind a wrapper that notes when its request goes out and when it is cancelled, and
the event writes and publishes are recorded in one log with the start and the ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers_app.registry import aget_adapter, route_for_model
from responses_app.api.validation import validate_create
from responses_app.loop import runner
from responses_app.loop.supervision.dispatch import carried_start, response_from_carried
from responses_app.models import Response, ResponseEvent, ResponseItem
from responses_app.services.responses import response_create
from responses_app.states import ResponseStatus

pytestmark = pytest.mark.django_db(transaction=True)


class Watched:
    """The mock adapter, noting its request and its cancellation in ``log``; ``hold``: the request
    then waits (an upstream slow to answer) until it is cancelled; ``whole``: the answer comes in
    one read (every chunk fed without a wait between them) once the start is stored."""

    def __init__(self, real: Any, log: list[str], hold: bool, whole: bool = False) -> None:
        self._real, self._log, self._hold, self._whole = real, log, hold, whole

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def sample(self, request: Any, *, stream: bool) -> AsyncIterator[Any]:
        self._log.append("upstream request")
        try:
            if self._hold:
                await asyncio.Event().wait()
            if self._whole:  # (once the start is stored: an upstream slower than the start)
                while "start stored" not in self._log:
                    await asyncio.sleep(0.001)
                for chunk in [chunk async for chunk in self._real.sample(request, stream=stream)]:
                    yield chunk
                return
            async for chunk in self._real.sample(request, stream=stream):
                yield chunk
        except asyncio.CancelledError:
            self._log.append("upstream cancelled")
            raise


class RecordingBus:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.published: list[str] = []
        self.batches: list[list[str]] = []

    async def publish(self, response_id: str, batch: list[tuple[int, str, str]]) -> None:
        self.log.append("publish")
        self.batches.append([event_type for _, event_type, _ in batch])
        self.published += self.batches[-1]


def created(text: str = "hello there") -> tuple[Response, str]:
    """A stored queued response and what its message would carry."""
    request = validate_create(
        {"model": "mock-1", "input": text, "stream": True}, hosted_tool_names=frozenset()
    )
    response = response_create(
        request=request, owner=None, route=route_for_model("mock-1"), request_id="req_c"
    )
    items = list(
        ResponseItem.objects.filter(response=response, kind=ResponseItem.Kind.INPUT)
        .order_by("position")
        .values_list("data", flat=True)
    )
    carried = carried_start(response, items)
    assert carried is not None
    return response, carried


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The log, the start's release and the upstream's hold, wired into the runner."""
    state: dict[str, Any] = {"log": [], "hold": False, "whole": False}
    log = state["log"]
    bus = state["bus"] = RecordingBus(log)
    monkeypatch.setattr(runner, "get_bus", lambda: bus)
    real_start = runner._start_carried

    async def held_start(response_id: str, now: float) -> int | None:
        log.append("start sent")
        await state["release"].wait()
        attempts = await real_start(response_id, now)
        log.append("start stored" if attempts is not None else "start refused")
        return attempts

    monkeypatch.setattr(runner, "_start_carried", held_start)

    async def adapter(provider: str) -> Any:
        return Watched(await aget_adapter(provider), log, state["hold"], state["whole"])

    monkeypatch.setattr(runner, "aget_adapter", adapter)
    real_writer = runner.event_writer

    class Writer:
        async def write(self, response_id: str, batch: list) -> None:
            log.append("insert")
            await real_writer().write(response_id, batch)

    monkeypatch.setattr(runner, "event_writer", Writer)
    return state


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_the_upstream_request_goes_out_before_the_start_is_stored(watched: dict[str, Any]) -> None:
    """The request leaves while the start is held; the first events' INSERT, every publish and
    the ack wait for the start; the response is stored started as the message carried it."""
    response, carried = created()
    log = watched["log"]

    async def scenario() -> str | None:
        watched["release"] = asyncio.Event()
        task = asyncio.ensure_future(
            runner.run_response(response.id, carried=carried, on_start=lambda: log.append("ack"))
        )
        await until(lambda: "upstream request" in log)
        await asyncio.sleep(0.3)  # the answer is in; its events wait (the lifecycle hold is 0.25 s)
        assert log == ["start sent", "upstream request"], log
        watched["release"].set()
        return await task

    assert asyncio.run(scenario()) == "completed"
    assert log[:4] == ["start sent", "upstream request", "start stored", "ack"], log
    assert "insert" in log and log.index("insert") < log.index("publish"), log
    stored = Response.objects.get(id=response.id)
    assert stored.status == ResponseStatus.COMPLETED and stored.attempts == 1
    assert stored.started_at is not None and stored.started_at >= response.created_at
    types = list(
        ResponseEvent.objects.filter(response_id=response.id)
        .order_by("sequence_number")
        .values_list("type", flat=True)
    )
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert watched["bus"].published == types


def test_a_streamed_answer_is_stored_and_published_before_the_finish_begins(
    watched: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that arrives whole (in one read) has its output stored and published on its own,
    its INSERT under way before the finish's transaction begins: the first token does not wait for
    the finish (whose transaction would otherwise take the queued output with the final state)."""
    response, carried = created()
    watched["whole"] = True
    log = watched["log"]
    real_finish = runner.LoopRun._finish

    async def finish(run: runner.LoopRun, outcome: Any) -> str:
        log.append("finish")
        return await real_finish(run, outcome)

    monkeypatch.setattr(runner.LoopRun, "_finish", finish)

    async def scenario() -> str | None:
        watched["release"] = asyncio.Event()
        watched["release"].set()
        return await runner.run_response(response.id, carried=carried)

    assert asyncio.run(scenario()) == "completed"
    assert "insert" in log and log.index("insert") < log.index("finish"), log
    batches = watched["bus"].batches
    assert any(t.endswith(".delta") for t in batches[0]) and batches[-1] == ["response.completed"], batches


@pytest.mark.parametrize("stored_as", [ResponseStatus.IN_PROGRESS, ResponseStatus.CANCELLED, None])
def test_a_refused_start_cancels_the_upstream_request_and_leaves_no_trace(
    watched: dict[str, Any], stored_as: str | None
) -> None:
    """Started by another run, cancelled, or deleted before this start: the request already sent
    is cancelled and the run's events are neither stored nor published; the response then goes
    the ordinary way (a cancelled one gets its terminal event from there, as before)."""
    response, carried = created()
    if stored_as is None:
        Response.objects.filter(id=response.id).delete()
    else:
        Response.objects.filter(id=response.id).update(status=stored_as)
    log = watched["log"]
    watched["hold"] = True

    async def scenario() -> str | None:
        watched["release"] = asyncio.Event()
        task = asyncio.ensure_future(
            runner.run_response(response.id, carried=carried, on_start=lambda: log.append("ack"))
        )
        await until(lambda: "upstream request" in log)
        await asyncio.sleep(0.3)  # the lifecycle events are due: they wait for the start
        watched["release"].set()
        result = await asyncio.wait_for(task, 10)
        await asyncio.sleep(0.6)  # (a retry of a refused batch would come within this)
        return result

    result = asyncio.run(scenario())
    refused = log.index("start refused")
    assert log[: refused + 1] == ["start sent", "upstream request", "start refused"][: refused + 1], log
    assert "upstream cancelled" in log, log
    events = list(ResponseEvent.objects.filter(response_id=response.id).values_list("type", flat=True))
    if stored_as == ResponseStatus.CANCELLED:  # the ordinary way: its terminal event, nothing of this run
        assert result == "cancelled" and len(events) == 2 and events[0] == "response.created", events
        assert events[1].endswith("response.cancelled") and watched["bus"].published == events
    else:
        assert result is None and events == [] and watched["bus"].published == []
        assert "ack" not in log and "insert" not in log and "publish" not in log
    if stored_as == ResponseStatus.IN_PROGRESS:
        assert Response.objects.get(id=response.id).attempts == 0  # (not started by this run)


def test_what_a_message_carries_is_the_response_as_stored() -> None:
    """Only a response whose context is its own input is carried, and it reads back as stored."""
    response, carried = created("what is carried")
    back, context = response_from_carried(carried)
    stored = Response.objects.get(id=response.id)
    for field in Response._meta.concrete_fields:
        assert getattr(back, field.attname) == getattr(stored, field.attname), field.name
    assert context == list(ResponseItem.objects.filter(response=response).values_list("data", flat=True))
    follow = validate_create(
        {"model": "mock-1", "input": "and then", "previous_response_id": response.id},
        hosted_tool_names=frozenset(),
    )
    second = response_create(request=follow, owner=None, route=route_for_model("mock-1"), request_id="req_d")
    assert carried_start(second, []) is None  # its context is the chain's: read back by the worker
    assert carried_start(stored, [{"type": "message", "content": "x" * 70_000}]) is None  # too large
