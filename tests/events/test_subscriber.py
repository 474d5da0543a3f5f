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


def test_each_reply_type_parses_and_a_cut_reply_asks_for_more() -> None:
    assert sub.parse(MESSAGE_RESP2, 0) == ([b"message", b"ch.a", b"x\r\ny\r\nz"], len(MESSAGE_RESP2))
    assert sub.parse(MESSAGE_RESP3, 0) == ([b"message", b"ch.b", b""], len(MESSAGE_RESP3))
    assert sub.parse(CONFIRMATION, 0)[0] == [b"subscribe", b"ch.a", 1]
    assert sub.parse(b"+OK\r\n", 0) == ("OK", 5)
    assert sub.parse(b"$-1\r\n_\r\n", 0) == (None, 5)
    assert sub.parse(b"$-1\r\n_\r\n", 5) == (None, 8)
    error, _ = sub.parse(b"-ERR no\r\n", 0)
    assert isinstance(error, sub.ProtocolError) and str(error) == "ERR no"
    with pytest.raises(sub.ProtocolError):
        sub.parse(b"%1\r\n", 0)
    for reply in (MESSAGE_RESP2, MESSAGE_RESP3, CONFIRMATION):
        for cut in range(len(reply)):
            with pytest.raises(sub._Incomplete):
                sub.parse(reply[:cut], 0)


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
