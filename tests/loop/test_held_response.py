"""A running loop holds its response's values in slots (``loop/held.py``), not the model
instance: none is left in the process while the loop waits for its upstream, whichever way the
loop was started, and the finish makes the model again from the values the loop holds."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django_fsm import ConcurrentTransition

from providers_app.registry import aget_adapter
from responses_app.loop import runner
from responses_app.loop.held import FIELD_NAMES, HeldResponse
from responses_app.models import Response
from responses_app.states import ResponseStatus
from tests.loop.test_carried_start import created, until

pytestmark = pytest.mark.django_db(transaction=True)


class Held:
    """The mock adapter, its answer held back until ``release`` is set."""

    def __init__(self, real: Any, state: dict[str, Any]) -> None:
        self._real, self._state = real, state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def sample(self, request: Any, *, stream: bool) -> AsyncIterator[Any]:
        self._state["asked"] = True
        await self._state["release"].wait()
        async for chunk in self._real.sample(request, stream=stream):
            yield chunk


@pytest.fixture
def held_upstream(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"asked": False}

    async def adapter(provider: str) -> Any:
        return Held(await aget_adapter(provider), state)

    monkeypatch.setattr(runner, "aget_adapter", adapter)
    return state


def _models_of(response_id: str, besides: Response) -> list[Response]:
    gc.collect()
    return [o for o in gc.get_objects() if type(o) is Response and o.id == response_id and o is not besides]


@pytest.mark.parametrize("start", ["carried", "started", "ordinary"])
def test_a_running_loop_holds_no_model_of_its_response(held_upstream: dict[str, Any], start: str) -> None:
    """While its upstream has not answered, the loop's response is a ``HeldResponse`` and no
    model instance of it is alive (the test's own aside); then it finishes, stored completed."""
    response, carried = created()
    given = [runner.start_now(response.id)] if start == "started" else []
    seen: dict[str, Any] = {}

    async def scenario() -> str | None:
        held_upstream["release"] = asyncio.Event()
        if start == "carried":
            task = asyncio.ensure_future(runner.run_response(response.id, carried=carried))
        elif start == "started":
            task = asyncio.ensure_future(runner.run_response(response.id, started=given.pop()))
        else:
            task = asyncio.ensure_future(runner.run_response(response.id))
        await until(lambda: held_upstream["asked"])
        seen["models"] = _models_of(response.id, besides=response)
        seen["held"] = [o for o in gc.get_objects() if type(o) is HeldResponse and o.id == response.id]
        held_upstream["release"].set()
        return await task

    assert asyncio.run(scenario()) == "completed"
    assert seen["models"] == [], [o.__dict__ for o in seen["models"]]
    assert len(seen["held"]) == 1
    stored = Response.objects.get(id=response.id)
    assert stored.status == ResponseStatus.COMPLETED and stored.attempts == 1
    assert stored.started_at is not None and stored.completed_at >= stored.started_at


def test_the_model_made_again_is_the_one_held_and_keeps_its_transition_check() -> None:
    """``instance()`` gives the model as loaded from the database with the held values, set ones
    included; its state machine checks the status held against the row, as the loaded one does."""
    response, _ = created()
    started = runner.start_now(response.id)
    held = HeldResponse.of(started)
    held.attempts = 7
    again = held.instance()
    assert type(again) is Response and not again._state.adding and again._state.db == "default"
    assert {n: getattr(again, n) for n in FIELD_NAMES} == {
        n: (7 if n == "attempts" else getattr(started, n)) for n in FIELD_NAMES
    }
    Response.objects.filter(id=response.id).update(status=ResponseStatus.CANCELLED)
    again.complete()
    with pytest.raises(ConcurrentTransition):
        again.save()
    assert Response.objects.get(id=response.id).status == ResponseStatus.CANCELLED


def test_held_values_cost_a_fraction_of_the_model() -> None:
    """Beyond the values themselves (shared by both here), the held copy of a response costs less
    than a third of a model instance made from the same row (its dict, ``_state``, django-fsm's
    record): measured, ~0.3 KB against ~1.9 KB on CPython 3.11."""
    response, _ = created()
    values = [getattr(response, name) for name in FIELD_NAMES]

    def allocated(make: Any, count: int = 300) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = [make() for _ in range(count)]
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(kept) == count
        return (after - before) / count

    model = allocated(lambda: Response.from_db("default", list(FIELD_NAMES), values))
    held = allocated(lambda: HeldResponse.of(response))
    assert held < model / 3, (held, model)
