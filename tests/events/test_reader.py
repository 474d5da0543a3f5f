"""The reader: live batches and the store, merged without gaps or repeats, and lost messages recovered."""

from __future__ import annotations

import asyncio
import json

import pytest

from responses_app.events import reader
from responses_app.events.bus import Subscription


class FakeSubscription(Subscription):
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    async def get(self, timeout: float):
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None

    async def close(self) -> None:
        pass


class FakeStore:
    """The stored log of one response, and how often the reader looked at it."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str]] = []
        self.reads = 0
        self.status = "in_progress"

    async def after(self, response_id: str, after: int):
        self.reads += 1
        return [e for e in self.events if e[0] > after]

    async def status_of(self, response_id: str) -> str:
        return self.status


def event(seq: int, kind: str = "response.output_text.delta") -> tuple[int, str, str]:
    payload = {"type": kind, "sequence_number": seq}
    if kind == "response.completed":
        payload["response"] = {"id": "resp_1", "status": "completed"}
    return (seq, kind, json.dumps(payload))


@pytest.fixture
def store(monkeypatch) -> FakeStore:
    fake = FakeStore()
    monkeypatch.setattr(reader, "_events_after", fake.after)
    monkeypatch.setattr(reader, "_page_after", fake.after)
    monkeypatch.setattr(reader, "_status", fake.status_of)
    return fake


async def collect(subscription: Subscription, **kwargs) -> list:
    out = []
    async for batch in reader.follow("resp_1", subscription, **kwargs):
        out.append(batch)
    return out


async def _test_a_lost_terminal_message_is_read_from_the_store_long_before_the_keepalive(
    store, monkeypatch
) -> None:
    """The terminal event was stored but its live message never came (a dropped subscription)."""
    monkeypatch.setattr(reader, "SILENCE_CHECK_SECONDS", 0.05)
    subscription = FakeSubscription()
    await subscription.queue.put([event(0), event(1)])
    store.events = [event(0), event(1), event(2, "response.completed")]
    batches = await asyncio.wait_for(collect(subscription, catch_up=False, keepalive=30.0), timeout=5)
    seen = [e[0] for batch in batches for e in batch]
    assert seen == [0, 1, 2]
    assert [] not in batches  # no keep-alive was needed: the store answered after a moment


async def _test_silence_reads_the_store_less_and_less_and_keeps_alive_on_time(store, monkeypatch) -> None:
    monkeypatch.setattr(reader, "SILENCE_CHECK_SECONDS", 0.05)
    subscription = FakeSubscription()
    keepalive = 0.8
    loop = asyncio.get_running_loop()
    agen = reader.follow("resp_1", subscription, catch_up=False, keepalive=keepalive)
    # Nothing delivered yet (the loop has not started): the store is read at the keep-alive only.
    started = loop.time()
    assert await asyncio.wait_for(agen.__anext__(), timeout=5) == []
    assert keepalive <= loop.time() - started < keepalive + 0.5
    assert store.reads == 1, store.reads
    # Once the stream flows, silence is checked soon, then less and less, and the keep-alive keeps time.
    store.events = [event(0)]
    await subscription.queue.put([event(0)])
    assert await asyncio.wait_for(agen.__anext__(), timeout=5) == [event(0)]
    reads, started = store.reads, loop.time()
    assert await asyncio.wait_for(agen.__anext__(), timeout=5) == []
    assert keepalive <= loop.time() - started < keepalive + 0.5
    # 0.05, 0.1, 0.2, 0.4 (… then the keep-alive): a handful of reads, not one per poll tick.
    assert 3 <= store.reads - reads <= 6, store.reads - reads
    # A terminal event stored without its live message arrives after the first short check.
    store.events.append(event(1, "response.completed"))
    await subscription.queue.put([])  # (a live, empty batch: the stream flows again)
    assert await asyncio.wait_for(agen.__anext__(), timeout=0.5) == [event(1, "response.completed")]
    await agen.aclose()


async def _test_live_events_beyond_a_gap_wait_for_the_store(store) -> None:
    subscription = FakeSubscription()
    await subscription.queue.put([event(0)])
    await subscription.queue.put([event(2), event(3, "response.completed")])  # 1 was lost on the bus
    store.events = [event(0)]
    task = asyncio.ensure_future(collect(subscription, catch_up=False, keepalive=30.0))
    await asyncio.sleep(0.2)
    assert not task.done()  # 2 and 3 wait: 1 is neither live nor stored yet
    store.events += [event(1), event(2), event(3, "response.completed")]
    batches = await asyncio.wait_for(task, timeout=5)
    assert [e[0] for batch in batches for e in batch] == [0, 1, 2, 3]


def test_a_lost_terminal_message_is_read_from_the_store_long_before_the_keepalive(store, monkeypatch) -> None:
    asyncio.run(
        _test_a_lost_terminal_message_is_read_from_the_store_long_before_the_keepalive(store, monkeypatch)
    )


def test_silence_reads_the_store_less_and_less_and_keeps_alive_on_time(store, monkeypatch) -> None:
    asyncio.run(_test_silence_reads_the_store_less_and_less_and_keeps_alive_on_time(store, monkeypatch))


def test_live_events_beyond_a_gap_wait_for_the_store(store) -> None:
    asyncio.run(_test_live_events_beyond_a_gap_wait_for_the_store(store))


async def _test_an_unreachable_store_is_read_again_and_the_stream_goes_on(store, monkeypatch) -> None:
    """PostgreSQL restarting: store reads fail for a while; the stream neither ends nor skips."""
    from django.db import OperationalError

    monkeypatch.setattr(reader, "SILENCE_CHECK_SECONDS", 0.02)
    monkeypatch.setattr(reader, "BROKEN_STORE_POLL_SECONDS", 0.01)
    monkeypatch.setattr(reader, "GAP_GIVE_UP_SECONDS", 0.05)  # the outage outlasts it: no skip
    failures = {"left": 8}
    healthy = store.after

    async def after(response_id: str, after: int):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("terminating connection due to administrator command")
        return await healthy(response_id, after)

    async def status_of(response_id: str) -> str:
        if failures["left"]:
            raise OperationalError("the server closed the connection")
        return store.status

    monkeypatch.setattr(reader, "_events_after", after)
    monkeypatch.setattr(reader, "_page_after", after)
    monkeypatch.setattr(reader, "_status", status_of)
    subscription = FakeSubscription()
    await subscription.queue.put([event(0)])
    await subscription.queue.put([event(2)])  # event 1's live message was lost: a gap
    store.events = [event(0), event(1), event(2), event(3, "response.completed")]
    batches = await asyncio.wait_for(collect(subscription, catch_up=True, keepalive=30.0), timeout=5)
    assert [e[0] for batch in batches for e in batch] == [0, 1, 2, 3]
    assert failures["left"] == 0


def test_an_unreachable_store_is_read_again_and_the_stream_goes_on(store, monkeypatch) -> None:
    asyncio.run(_test_an_unreachable_store_is_read_again_and_the_stream_goes_on(store, monkeypatch))


class Payload(str):
    """An event's JSON whose life a weak reference can watch."""


async def _test_a_stream_waiting_for_events_holds_none_it_has_sent() -> list[bool]:
    import gc
    import weakref

    from responses_app.api.streaming import sse_stream

    subscription = FakeSubscription()
    sent = Payload('{"type":"response.output_text.delta","sequence_number":0,"delta":"hi"}')
    sent_ref = weakref.ref(sent)
    await subscription.queue.put([(0, "response.output_text.delta", sent)])
    del sent
    stream = sse_stream("resp_1", subscription, catch_up=False)
    first = await stream.__anext__()
    assert b'"delta":"hi"' in first
    del first  # (sent: the server's handler keeps no part either)
    waiting = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.01)  # the stream waits for its next events
    gc.collect()
    held = [sent_ref() is not None]
    await subscription.queue.put([event(1, "response.completed")])
    assert b"response.completed" in await waiting
    await stream.aclose()
    return held


def test_a_stream_waiting_for_events_holds_none_it_has_sent(store) -> None:
    """An open stream between two batches holds neither the last batch nor its frames."""
    assert asyncio.run(_test_a_stream_waiting_for_events_holds_none_it_has_sent()) == [False]
