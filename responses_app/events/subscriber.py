"""The web process's side of Redis PubSub: one connection per event loop and Redis host, shared by
every open stream, its messages parsed as they arrive and handed to the streams' inboxes.

channels_redis's PubSub layer reads its connection through redis-py's ``PubSub.get_message``: per
message a timeout context, the retry wrapper and a pure-Python RESP3 reader line by line, then
its own dispatch; its SUBSCRIBE and UNSUBSCRIBE go through a lock and redis-py's command path.
That was about a fifth of the web process's CPU per stream. Here a subscription is one write of
``SUBSCRIBE`` on the shared connection (not awaited for its confirmation, as redis-py does not),
and every network read is parsed at once, whatever number of messages it holds, by hiredis's
reader (the C parser redis-py itself uses when it is installed).

The connection is opened by redis-py (so URL options, TLS, AUTH, the database and the protocol
version are its own), then only read from here. A lost connection is opened again while streams
are subscribed (every channel subscribed again in one command); meanwhile the readers hear
nothing and read the store (``reader.follow``), as they do for any silence. What the workers
publish is unchanged: channels_redis's group channels and serialized messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import hiredis

logger = logging.getLogger(__name__)
RECONNECT_SECONDS = 0.5
READ_SIZE = 1 << 16
#: How long a channel no stream follows any more may stay subscribed, waiting to leave in the
#: same write as the next SUBSCRIBE (under load every UNSUBSCRIBE does: one write per stream
#: instead of two). Its messages meanwhile reach no inbox.
UNSUBSCRIBE_DELAY = 0.1


def _command(*parts: bytes) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)


class Subscriber:
    """The channels subscribed for this event loop's streams on one Redis host, and the
    connection that receives them. Each channel maps to the inboxes (``put_nowait(bytes)``) of
    the streams that follow it."""

    def __init__(self, host: dict[str, Any]) -> None:
        self.host = host
        self.inboxes: dict[bytes, set[Any]] = {}
        #: Channels to unsubscribe with the next write (subscribed in Redis until then).
        self.leaving: dict[bytes, None] = {}
        self._leave_timer: asyncio.TimerHandle | None = None
        self._connection: Any = None
        self._writer: Any = None
        self._connecting: asyncio.Future | None = None
        self._reading: asyncio.Task | None = None
        self._reconnecting: asyncio.Task | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def subscribe(self, channel: str, inbox: Any) -> None:
        """``inbox`` gets every message of ``channel`` from now on. Raises (redis-py's
        ``ConnectionError``, ``OSError``) when Redis cannot be reached."""
        if self._writer is None:
            await self._connect()
        key = channel.encode()
        inboxes = self.inboxes.get(key)
        if inboxes is not None:
            inboxes.add(inbox)
            return
        self.inboxes[key] = {inbox}
        if key in self.leaving:  # still subscribed: it stays
            del self.leaving[key]
            return
        command = _command(b"SUBSCRIBE", key)
        if self.leaving:
            command = self._leave_command() + command
        self._write(command)

    def unsubscribe(self, channel: str, inbox: Any) -> None:
        """``inbox`` gets nothing more; the channel is unsubscribed once no inbox follows it
        (with the next SUBSCRIBE, or after :data:`UNSUBSCRIBE_DELAY`)."""
        key = channel.encode()
        inboxes = self.inboxes.get(key)
        if inboxes is None:
            return
        inboxes.discard(inbox)
        if not inboxes:
            del self.inboxes[key]
            if self._writer is not None:
                self.leaving[key] = None
                if self._leave_timer is None:
                    self._leave_timer = asyncio.get_running_loop().call_later(UNSUBSCRIBE_DELAY, self._leave)

    def _leave_command(self) -> bytes:
        command = _command(b"UNSUBSCRIBE", *self.leaving)
        self.leaving.clear()
        if self._leave_timer is not None:
            self._leave_timer.cancel()
            self._leave_timer = None
        return command

    def _leave(self) -> None:
        self._leave_timer = None
        if self.leaving and self._writer is not None:
            self._write(self._leave_command())

    async def close(self) -> None:
        for task in (self._reconnecting, self._reading):
            if task is not None:
                task.cancel()
        self.inboxes.clear()
        self._forget_leaving()
        self._drop()

    # ------------------------------------------------------------------ the connection

    def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except (RuntimeError, OSError, AttributeError):
            # The transport is closing: the reader sees the connection end and subscribes every
            # channel again on the next one.
            pass

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> None:
        from channels_redis.utils import create_pool

        pool = create_pool(self.host)
        connection = pool.make_connection()
        await connection.connect()
        self._connection = connection
        self._writer = connection._writer
        self._forget_leaving()  # a new connection has subscribed nothing
        if self.inboxes:  # after a lost connection: everything followed so far
            self._write(_command(b"SUBSCRIBE", *self.inboxes))
        self._reading = asyncio.get_running_loop().create_task(self._read(connection._reader))

    def _forget_leaving(self) -> None:
        self.leaving.clear()
        if self._leave_timer is not None:
            self._leave_timer.cancel()
            self._leave_timer = None

    def _drop(self) -> None:
        writer, self._writer, self._connection = self._writer, None, None
        if writer is not None:
            try:
                writer.close()
            except (RuntimeError, OSError):  # pragma: no cover - already gone
                pass

    async def _read(self, stream: asyncio.StreamReader) -> None:
        replies = hiredis.Reader()
        inboxes = self.inboxes
        try:
            while True:
                data = await stream.read(READ_SIZE)
                if not data:
                    raise ConnectionError("Redis closed the PubSub connection")
                replies.feed(data)
                while (reply := replies.gets()) is not False:
                    # A message is [b"message", channel, data]; confirmations and the rest are not.
                    # (hiredis gives a RESP3 push as a list subclass.)
                    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                        for inbox in inboxes.get(reply[1], ()):
                            inbox.put_nowait(reply[2])
                    elif isinstance(reply, hiredis.ReplyError):
                        logger.warning("Redis refused a PubSub command: %s", reply)
        except asyncio.CancelledError:
            self._drop()
            raise
        except Exception as exc:  # noqa: BLE001 - the connection is lost: open another
            logger.warning("the PubSub connection to Redis was lost (%r); opening another", exc)
            self._drop()
            if self.inboxes and self._reconnecting is None:
                self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            while self.inboxes and self._writer is None:
                try:
                    await self._connect()
                except Exception:  # noqa: BLE001 - Redis still away: the readers poll the store
                    await asyncio.sleep(RECONNECT_SECONDS)
        finally:
            self._reconnecting = None
