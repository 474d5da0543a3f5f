"""The web's PubSub reader: RESP replies parsed from any split of the bytes, messages to their inboxes."""

from __future__ import annotations

import asyncio

import pytest

from responses_app.events import subscriber as sub

MESSAGE_RESP2 = b"*3\r\n$7\r\nmessage\r\n$4\r\nch.a\r\n$7\r\nx\r\ny\r\nz\r\n"
MESSAGE_RESP3 = b">3\r\n$7\r\nmessage\r\n$4\r\nch.b\r\n$0\r\n\r\n"
CONFIRMATION = b">3\r\n$9\r\nsubscribe\r\n$4\r\nch.a\r\n:1\r\n"
BIG = b"w" * 100_000
MESSAGE_BIG = b"*3\r\n$7\r\nmessage\r\n$4\r\nch.a\r\n$%d\r\n%b\r\n" % (len(BIG), BIG)


class _Inbox:
    def __init__(self) -> None:
        self.items: list[bytes] = []

    def put_nowait(self, item: bytes) -> None:
        self.items.append(item)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_messages_reach_the_inboxes_of_their_channel_whatever_the_network_reads(chunk: int) -> None:
    stream = CONFIRMATION + MESSAGE_RESP2 + MESSAGE_RESP3 + MESSAGE_BIG + MESSAGE_RESP2

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        subscriber = sub.Subscriber({})
        a, a2, b = _Inbox(), _Inbox(), _Inbox()
        subscriber.inboxes = {b"ch.a": {a, a2}, b"ch.b": {b}}
        reader = asyncio.StreamReader()
        task = asyncio.get_running_loop().create_task(subscriber._read(reader))
        for start in range(0, len(stream), chunk):
            reader.feed_data(stream[start : start + chunk])
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return a.items, a2.items, b.items

    a, a2, b = asyncio.run(scenario())
    assert a == a2 == [b"x\r\ny\r\nz", BIG, b"x\r\ny\r\nz"]
    assert b == [b""]


def test_a_refused_command_is_logged_and_bytes_that_are_not_resp_drop_the_connection(caplog) -> None:
    async def scenario() -> tuple[list[bytes], bool]:
        subscriber = sub.Subscriber({})
        a = _Inbox()
        subscriber.inboxes = {b"ch.a": {a}}
        dropped: list[bool] = []
        subscriber._drop = lambda: dropped.append(True)  # type: ignore[method-assign]
        reconnects: list[bool] = []

        async def reconnect() -> None:
            reconnects.append(True)

        subscriber._reconnect = reconnect  # type: ignore[method-assign]
        reader = asyncio.StreamReader()
        reader.feed_data(b"-ERR unknown command\r\n" + MESSAGE_RESP2 + b"!garbage\r\n" + MESSAGE_RESP2)
        await subscriber._read(reader)  # returns: the connection is given up, not the task
        await asyncio.sleep(0)
        return a.items, bool(dropped) and bool(reconnects)

    with caplog.at_level("WARNING", logger=sub.__name__):
        items, dropped = asyncio.run(scenario())
    assert items == [b"x\r\ny\r\nz"]  # what followed the garbage is never delivered
    assert dropped
    assert "ERR unknown command" in caplog.text
    assert "was lost" in caplog.text
