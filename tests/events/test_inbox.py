"""The inbox a subscription keeps per open stream: batches in order, a timeout returns None."""

from __future__ import annotations

import asyncio

from responses_app.events.bus import Inbox, LocalBus


def test_batches_come_out_in_order_and_silence_is_none() -> None:
    async def main() -> list:
        inbox = Inbox()
        inbox.put_nowait([(0, "a", "{}")])
        inbox.put_nowait([(1, "b", "{}")])
        got = [await inbox.get(5), await inbox.get(5)]
        got.append(await inbox.get(0.01))  # nothing more: None once the wait is over
        return got

    assert asyncio.run(main()) == [[(0, "a", "{}")], [(1, "b", "{}")], None]


def test_a_waiting_reader_is_woken_by_a_batch_and_a_failure_marker_passes_as_none() -> None:
    async def main() -> list:
        inbox = Inbox()
        loop = asyncio.get_running_loop()
        loop.call_soon(inbox.put_nowait, [(0, "a", "{}")])
        first = await inbox.get(60)
        loop.call_soon(inbox.put_nowait, None)
        second = await inbox.get(60)
        assert inbox.empty() and inbox.waiter is None
        return [first, second]

    assert asyncio.run(main()) == [[(0, "a", "{}")], None]


def test_a_cancelled_reader_leaves_the_inbox_usable() -> None:
    async def main() -> list:
        inbox = Inbox()
        reader = asyncio.ensure_future(inbox.get(60))
        await asyncio.sleep(0)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        assert inbox.waiter is None
        inbox.put_nowait([(3, "c", "{}")])
        return [await inbox.get(60)]

    assert asyncio.run(main()) == [[(3, "c", "{}")]]


def test_the_local_bus_delivers_to_every_subscription_of_a_response() -> None:
    async def main() -> list:
        bus = LocalBus()
        one, two = await bus.subscribe("r"), await bus.subscribe("r")
        other = await bus.subscribe("s")
        await bus.publish("r", [(0, "a", "{}")])
        got = [await one.get(5), await two.get(5), await other.get(0.01)]
        await one.close()
        await bus.publish("r", [(1, "b", "{}")])
        got.append(await two.get(5))
        return got

    assert asyncio.run(main()) == [[(0, "a", "{}")], [(0, "a", "{}")], None, [(1, "b", "{}")]]
