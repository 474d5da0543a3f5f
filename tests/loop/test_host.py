"""The loop host: a task's thread is held only until its loop starts; loops are capped per process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from responses_app.loop.supervision.host import LoopHost, prefetch_follows_loops, worker_loops


class Gate:
    """Loops that start at once and end when released (from any thread)."""

    def __init__(self, host: LoopHost) -> None:
        self.host = host
        self.release = threading.Event()

    def loop(self, *, start: bool = True, result: str = "done") -> Callable:
        async def run(started: Callable[[], None]) -> str:
            if start:
                started()
            while not self.release.is_set():
                await asyncio.sleep(0.005)
            return result

        return run


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def host():
    made = LoopHost()
    yield made
    loop = made.loop()
    loop.call_soon_threadsafe(loop.stop)


def test_start_returns_once_started_while_the_loop_goes_on(host: LoopHost) -> None:
    gate = Gate(host)
    assert host.start(gate.loop()) is None
    assert host.running == 1
    gate.release.set()
    assert host.wait_idle(timeout=5)
    assert host.running == 0


def test_a_loop_that_ends_before_starting_returns_its_result_or_error(host: LoopHost) -> None:
    async def nothing(started: Callable[[], None]) -> str:
        return "not runnable"

    async def broken(started: Callable[[], None]) -> str:
        raise ValueError("no such response")

    assert host.start(nothing) == "not runnable"
    with pytest.raises(ValueError, match="no such response"):
        host.start(broken)
    assert host.running == 0


def test_capacity_holds_the_next_start_until_a_loop_ends(host: LoopHost) -> None:
    seen: list[int] = []
    host.limit(2, seen.append)
    first, later = Gate(host), Gate(host)
    host.start(first.loop())
    host.start(first.loop())
    with ThreadPoolExecutor(max_workers=1) as pool:
        third = pool.submit(host.start, later.loop())
        with pytest.raises(TimeoutError):
            third.result(timeout=0.3)
        assert host.running == 2
        first.release.set()  # the first two end: the third starts once one of them has
        assert third.result(timeout=5) is None
        assert _eventually(lambda: host.running == 1)  # the other of the first two ends too
    later.release.set()
    assert host.wait_idle(timeout=5)
    assert max(seen) == 2 and seen[-1] == 0


def test_ready_runs_on_the_calling_thread_once_a_slot_is_held(host: LoopHost) -> None:
    """``ready`` (a task storing its response's start) runs only with a slot held, on the task's
    thread; when it finds nothing to run, no loop is made and the slot is free again."""
    host.limit(1)
    calls: list[tuple[str, int]] = []

    def ready(answer: bool) -> Callable[[], bool]:
        def check() -> bool:
            calls.append((threading.current_thread().name, host.running))
            return answer

        return check

    made: list[str] = []

    def make(started: Callable[[], None]) -> object:
        made.append("made")
        return Gate(host).loop()(started)

    assert host.start(make, ready=ready(False)) is None
    assert made == [] and host.running == 0
    gate, later = Gate(host), Gate(host)
    assert host.start(gate.loop(), ready=ready(True)) is None
    assert host.running == 1
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="task") as pool:
        waiting = pool.submit(host.start, later.loop(), ready(True))
        with pytest.raises(TimeoutError):
            waiting.result(timeout=0.3)
        assert len(calls) == 2  # the full host has not let the third one store its start
        gate.release.set()
        assert waiting.result(timeout=5) is None
    assert calls[0] == (threading.current_thread().name, 0)
    assert calls[2][0].startswith("task")
    later.release.set()
    assert host.wait_idle(timeout=5)


def test_wait_idle_times_out_while_a_loop_runs(host: LoopHost) -> None:
    gate = Gate(host)
    host.start(gate.loop())
    assert host.wait_idle(timeout=0.2) is False
    gate.release.set()
    assert host.wait_idle(timeout=5) is True


def test_prefetch_shrinks_by_the_loops_running_down_to_one() -> None:
    consumer = SimpleNamespace(initial_prefetch_count=3, qos=SimpleNamespace(value=3))
    on_running = prefetch_follows_loops(consumer, 3)
    on_running(1)
    assert consumer.qos.value == 2
    on_running(5)
    assert consumer.qos.value == 1
    on_running(0)
    assert consumer.qos.value == 3


def test_prefetch_is_the_threads_until_the_free_slots_are_fewer() -> None:
    """16 threads start loops for 500 slots: prefetch 16 until fewer than 16 slots are free."""
    consumer = SimpleNamespace(initial_prefetch_count=16, qos=SimpleNamespace(value=16))
    on_running = prefetch_follows_loops(consumer, 500)
    on_running(400)
    assert consumer.qos.value == 16
    on_running(490)
    assert consumer.qos.value == 10
    on_running(500)
    assert consumer.qos.value == 1


def test_worker_loops_default_to_the_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENRESPONSES_WORKER_CONCURRENCY", raising=False)
    assert worker_loops(16) == 16
    monkeypatch.setenv("OPENRESPONSES_WORKER_CONCURRENCY", "500")
    assert worker_loops(16) == 500


def test_prefetch_follows_the_full_count_after_a_reduced_one() -> None:
    """After a broker reconnect Celery lowers ``initial_prefetch_count``; the full count stays the base."""
    consumer = SimpleNamespace(max_prefetch_count=4, initial_prefetch_count=2, qos=SimpleNamespace(value=2))
    prefetch_follows_loops(consumer, 4)(1)
    assert consumer.qos.value == 3


def test_a_loop_failing_after_it_started_is_logged(host: LoopHost, caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    async def fails_later(started: Callable[[], None]) -> str:
        started()
        while not gate.is_set():
            await asyncio.sleep(0.005)
        raise RuntimeError("lost the upstream")

    with caplog.at_level("ERROR", logger="responses_app.loop.supervision.host"):
        assert host.start(fails_later) is None
        gate.set()
        assert host.wait_idle(timeout=5)
    assert any("failed after it started" in r.message and r.exc_info for r in caplog.records)


def test_a_begun_loop_runs_at_once_and_its_task_joins_it(host: LoopHost) -> None:
    """``begin`` (Celery's consumer thread, as a message arrives) runs the loop without waiting;
    the task's ``start`` with the same key then waits for that loop's start and runs nothing
    itself."""
    host.limit(2)
    gate = Gate(host)
    assert host.begin("task-1", gate.loop(), quiet=4) is True
    assert host.running == 1
    made: list[str] = []

    def make(started: Callable[[], None]) -> object:
        made.append("made")
        return Gate(host).loop()(started)

    def ready() -> bool:
        made.append("ready")
        return True

    assert host.start(make, ready=ready, key="task-1") is None
    assert made == [] and host.running == 1
    gate.release.set()
    assert host.wait_idle(timeout=5)


def test_begin_leaves_a_busy_or_full_host_to_the_task(host: LoopHost) -> None:
    """No slot free, or ``quiet`` loops running already: nothing is begun (no slot is held), and
    the task's ``start`` with that key starts the loop itself."""
    host.limit(2)
    gate = Gate(host)
    host.start(gate.loop())
    assert host.begin("busy", Gate(host).loop(), quiet=1) is False
    assert host.running == 1
    later = Gate(host)
    assert host.start(later.loop(), key="busy") is None
    assert host.running == 2
    assert host.begin("full", Gate(host).loop(), quiet=10) is False  # both slots are held
    assert host.running == 2
    gate.release.set()
    later.release.set()
    assert host.wait_idle(timeout=5)


def test_a_begun_loop_that_ends_before_starting_gives_its_task_the_result_or_error(host: LoopHost) -> None:
    async def nothing(started: Callable[[], None]) -> str:
        return "not runnable"

    async def broken(started: Callable[[], None]) -> str:
        raise ValueError("no such response")

    assert host.begin("broken", broken, quiet=4)
    with pytest.raises(ValueError, match="no such response"):
        host.start(Gate(host).loop(), key="broken")
    assert host.begin("nothing", nothing, quiet=4)
    # Ended well before its task came: the task goes the ordinary way (here: a loop of its own).
    assert host.wait_idle(timeout=5)
    assert host.start(nothing, key="nothing") == "not runnable"
    assert host.running == 0


def test_a_response_message_begins_its_loop_unless_it_has_an_eta_or_a_rate_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from responses_app import tasks
    from responses_app.loop import runner
    from responses_app.loop.supervision import host as host_module
    from responses_app.loop.supervision.dispatch import START_HEADER

    begun: list[tuple[str, int]] = []
    made: list[dict[str, object]] = []

    async def run_response(response_id: str, **kwargs: object) -> None:
        made.append(kwargs)

    def begin(key: str, make: Callable, *, quiet: int) -> bool:
        begun.append((key, quiet))
        asyncio.run(make("started"))
        return True

    monkeypatch.setattr(runner, "run_response", run_response)

    monkeypatch.setattr(host_module.loop_host, "begin", begin)

    def message(**fields: object) -> SimpleNamespace:
        base: dict[str, object] = {
            "id": "task-1",
            "name": tasks.run_response_task.name,
            "eta": None,
            "kwargs": {},
            "args": ["resp_1"],
            "task": SimpleNamespace(rate_limit=None),
        }
        return SimpleNamespace(**{**base, **fields})

    tasks.begin_loop(request=message())
    assert begun == [("task-1", tasks.EARLY_BEGIN_BELOW)]
    assert made[-1] == {"on_start": "started", "carried": None}
    tasks.begin_loop(request=message(request_dict={START_HEADER: '{"response": {}}'}))
    assert made[-1]["carried"] == '{"response": {}}'  # the start its message carries goes to the loop
    begun.pop()
    tasks.begin_loop(request=message(eta="2026-01-01T00:00:00"))
    tasks.begin_loop(request=message(task=SimpleNamespace(rate_limit="10/s")))
    tasks.begin_loop(request=message(name=tasks.resume_response_task.name, args=["resp_1", 1]))
    assert len(begun) == 1


def test_a_loop_that_says_started_twice_then_ends_is_counted_once(host: LoopHost) -> None:
    async def twice(started: Callable[[], None]) -> str:
        started()
        started()
        await asyncio.sleep(0.01)
        return "done"

    host.limit(1)
    assert host.start(twice) is None
    assert host.wait_idle(timeout=5) and host.running == 0
    assert host.start(twice) is None  # the one slot was given back exactly once
    assert host.wait_idle(timeout=5)
