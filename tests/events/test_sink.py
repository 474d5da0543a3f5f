"""The batching sink's publishing policy: stored first, lifecycle events ride with the first output."""

from __future__ import annotations

import asyncio

from responses_app.events.sink import ALIGN_FRACTION, BatchingSink

Batch = list[tuple[int, str, str]]


class Recorder:
    """Stores and publishes into lists, in the order they happened."""

    def __init__(self) -> None:
        self.log: list[tuple[str, list[int]]] = []

    async def persist(self, batch: Batch) -> None:
        await asyncio.sleep(0)
        self.log.append(("stored", [event[0] for event in batch]))

    async def publish(self, batch: Batch) -> None:
        self.log.append(("published", [event[0] for event in batch]))


def sink_for(recorder: Recorder, *, publish_first: bool, hold: float = 0.25) -> BatchingSink:
    return BatchingSink(
        persist=recorder.persist,
        publish=recorder.publish,
        interval=0.05,
        publish_first=publish_first,
        lifecycle_hold=hold,
    )


def test_stored_first_lifecycle_events_leave_with_the_first_output() -> None:
    async def run() -> list:
        recorder = Recorder()
        sink = sink_for(recorder, publish_first=False)
        sink.add(0, "response.created", "{}")
        sink.add(1, "response.in_progress", "{}")
        await asyncio.sleep(0.02)  # the upstream thinks: nothing is stored or published meanwhile
        assert recorder.log == []
        sink.add(2, "response.output_item.added", "{}")
        sink.add(3, "response.output_text.delta", "{}")
        await asyncio.sleep(0.01)
        return recorder.log

    assert asyncio.run(run()) == [("stored", [0, 1, 2, 3]), ("published", [0, 1, 2, 3])]


def test_held_lifecycle_events_leave_alone_after_the_hold() -> None:
    async def run() -> list:
        recorder = Recorder()
        sink = sink_for(recorder, publish_first=False, hold=0.03)
        sink.add(0, "response.created", "{}")
        sink.add(1, "response.in_progress", "{}")
        await asyncio.sleep(0.01)
        assert recorder.log == []
        await asyncio.sleep(0.05)
        sink.add(2, "response.output_text.delta", "{}")
        await asyncio.sleep(0.01)
        return recorder.log

    assert asyncio.run(run()) == [
        ("stored", [0, 1]),
        ("published", [0, 1]),
        ("stored", [2]),
        ("published", [2]),
    ]


def test_drain_stores_then_publishes_held_lifecycle_events_with_the_terminal() -> None:
    async def run() -> list:
        recorder = Recorder()
        sink = sink_for(recorder, publish_first=False)
        sink.add(0, "response.created", "{}")
        sink.add(1, "response.in_progress", "{}")
        sink.add(2, "response.failed", "{}")
        await sink.drain()
        await asyncio.sleep(0.3)  # the hold's timer, cancelled, publishes nothing more
        return recorder.log

    assert asyncio.run(run()) == [("stored", [0, 1, 2]), ("published", [0, 1, 2])]


def test_publish_first_sinks_do_not_hold() -> None:
    async def run() -> list:
        recorder = Recorder()
        sink = sink_for(recorder, publish_first=True)
        sink.add(0, "response.created", "{}")
        await asyncio.sleep(0.005)
        return recorder.log

    assert asyncio.run(run())[0] == ("published", [0])


def test_the_first_output_waits_for_its_own_store_only() -> None:
    """Events added while the first batch is being stored go in the next store and message."""

    async def run() -> list:
        recorder = Recorder()
        sink = sink_for(recorder, publish_first=False)
        sink.add(0, "response.created", "{}")
        sink.add(1, "response.output_text.delta", "{}")
        await asyncio.sleep(0)  # its store is under way
        sink.add(2, "response.output_text.delta", "{}")
        await asyncio.sleep(0.2)
        return recorder.log

    assert asyncio.run(run()) == [
        ("stored", [0, 1]),
        ("published", [0, 1]),
        ("stored", [2]),
        ("published", [2]),
    ]


def test_stored_first_batches_of_several_streams_come_due_together() -> None:
    """Throttled batches of different streams, due at different moments within one tick of the
    grid, leave in the same turn of the event loop (one INSERT, one pipelined publish for
    all): never before their interval is up, at most a quarter interval after it."""
    interval = 0.2

    async def run() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        stored_at: list[float] = []

        async def persist(batch: Batch) -> None:
            if batch[0][0] == 1:  # (the second batch of a stream)
                stored_at.append(loop.time())

        async def publish(batch: Batch) -> None:
            pass

        sinks = [
            BatchingSink(persist=persist, publish=publish, interval=interval, publish_first=False)
            for _ in range(3)
        ]
        tick = interval * ALIGN_FRACTION
        await asyncio.sleep(tick - loop.time() % tick + 0.002)  # (just after a tick: one window)
        published: list[float] = []
        for sink in sinks:  # each stream's first output leaves at once; then it is throttled
            sink.add(0, "response.output_text.delta", "{}")
            await asyncio.sleep(0.01)
            published.append(sink._last_publish)
        for sink in sinks:
            sink.add(1, "response.output_text.delta", "{}")
        await asyncio.sleep(2 * interval)
        return published, stored_at

    published, stored_at = asyncio.run(run())

    assert len(stored_at) == 3 and max(stored_at) - min(stored_at) < 0.005
    assert stored_at[0] >= max(published) + interval - 0.002
    assert stored_at[0] <= min(published) + interval * 1.25 + 0.02


def _deques_held(sink: BatchingSink) -> int:
    """Deques among the sink's attributes, their containers and its locks' state."""
    import collections

    found, stack = 0, list(vars(sink).values())
    while stack:
        value = stack.pop()
        if isinstance(value, collections.deque):
            found += 1
        elif isinstance(value, (list, tuple, set)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, asyncio.Lock):
            stack.extend(vars(value).values())
    return found


def test_a_sink_whose_locks_were_contended_keeps_no_waiting_queue_once_idle() -> None:
    """Both locks are contended (a publish waits behind another, a drain behind a store); once
    nothing waits the sink holds no waiters' deque — 760 bytes each, per open stream."""

    async def run() -> tuple[int, list]:
        recorder = Recorder()
        gate = asyncio.Event()

        async def slow_persist(batch: Batch) -> None:
            await gate.wait()
            await recorder.persist(batch)

        sink = BatchingSink(persist=slow_persist, publish=recorder.publish, interval=0.0, publish_first=False)
        sink.add(0, "response.output_text.delta", "{}")
        await asyncio.sleep(0.01)
        sink.add(1, "response.output_text.delta", "{}")  # its publish waits behind the first
        await asyncio.sleep(0.01)
        draining = asyncio.ensure_future(sink.drain())
        await asyncio.sleep(0.01)
        gate.set()
        await draining
        await asyncio.sleep(0.01)
        return _deques_held(sink), recorder.log

    deques, log = asyncio.run(run())
    assert [entry for entry in log if entry[0] == "published"] == [("published", [0]), ("published", [1])]
    assert deques == 0
