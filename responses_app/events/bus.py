"""Where published events go: a Channels layer (production) or a local fan-out (in-process).

A subscription yields batches of ``(sequence_number, type, json)``. Readers dedupe by sequence
number and catch up from the store on a gap, so a dropped message is never a lost event.

On channels_redis's PubSub layer a subscription subscribes Redis to its response's group channel
only (no "specific" channel per consumer, which nothing sends to), on this event loop's own
receiving connection (:mod:`responses_app.events.subscriber`), not through the layer's receiver:
one SUBSCRIBE when opened, one UNSUBSCRIBE when closed, each message parsed once and put in the
stream's inbox. Publishing there goes through :class:`_Publisher`: the PUBLISHes that come while
one round trip is in flight leave together in the next pipeline (one write and one read for many
streams under load; an idle process sends each at once).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from typing import Any

from responses_app.events.sink import Batch
from responses_app.events.subscriber import Subscriber


def group_name(response_id: str) -> str:
    return f"or.{response_id}"


class Subscription:
    async def get(self, timeout: float) -> Batch | None:
        """The next batch, or None after ``timeout`` seconds of silence."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Inbox:
    """The batches waiting for one reader: what a subscription holds per open stream.

    Lighter than ``asyncio.Queue`` with ``asyncio.timeout`` (three deques of a 64-slot block
    each, and on every silent wait a cancellation whose exception, traceback and frames stay
    behind as a reference cycle until the collector runs): a list, at most one waiting future
    and a timer. One reader per inbox.
    """

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: list[Batch | None] = []
        self.waiter: asyncio.Future | None = None

    def put_nowait(self, batch: Batch | None) -> None:
        self.items.append(batch)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self.items

    def get_nowait(self) -> Batch | None:
        return self.items.pop(0)

    async def get(self, timeout: float) -> Batch | None:
        """The next batch, or None after ``timeout`` seconds without one."""
        if not self.items:
            loop = asyncio.get_running_loop()
            waiter = self.waiter = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self.waiter = None
            if not self.items:
                return None
        return self.items.pop(0)


class _LocalSubscription(Subscription):
    __slots__ = ("bus", "response_id", "queue")

    def __init__(self, bus: LocalBus, response_id: str) -> None:
        self.bus = bus
        self.response_id = response_id
        self.queue = Inbox()

    async def get(self, timeout: float) -> Batch | None:
        return await self.queue.get(timeout)

    async def close(self) -> None:
        queues = self.bus._queues.get(self.response_id)
        if queues is not None:
            queues.discard(self.queue)
            if not queues:
                self.bus._queues.pop(self.response_id, None)


class LocalBus:
    """Fan-out inside one process: the loop and its readers share an event loop."""

    def __init__(self) -> None:
        self._queues: dict[str, set[Inbox]] = defaultdict(set)

    async def publish(self, response_id: str, batch: Batch) -> None:
        for queue in self._queues.get(response_id, ()):
            queue.put_nowait(batch)

    async def subscribe(self, response_id: str) -> Subscription:
        subscription = _LocalSubscription(self, response_id)
        self._queues[response_id].add(subscription.queue)
        return subscription


class _ChannelSubscription(Subscription):
    """A channel in the response's group, drained by one receiver task into a local queue.

    (Cancelling a channels_redis PubSub ``receive`` unsubscribes the channel, so timeouts are
    taken on the local queue, never on ``receive`` itself.)
    """

    def __init__(self, layer: Any, group: str, channel: str) -> None:
        self.layer = layer
        self.group = group
        self.channel = channel
        self.queue = Inbox()
        self.failure: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                message = await self.layer.receive(self.channel)
                self.queue.put_nowait([tuple(event) for event in message.get("events", [])])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which polls the store
            self.failure = exc
            self.queue.put_nowait(None)

    async def get(self, timeout: float) -> Batch | None:
        batch = await self.queue.get(timeout)
        if batch is None and self.failure is not None:
            failure, self.failure = self.failure, None
            self.task = asyncio.get_running_loop().create_task(self._pump())
            raise failure
        return batch

    async def close(self) -> None:
        self.task.cancel()
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:  # noqa: BLE001 - best effort on a broken layer
            pass


class _PubSubSubscription(Subscription):
    """A response's group channel on Redis PubSub, received by this event loop's
    :class:`~responses_app.events.subscriber.Subscriber` into the subscription's inbox."""

    __slots__ = ("layer", "subscriber", "channel", "queue")

    def __init__(self, layer: Any, subscriber: Subscriber, channel: str, queue: Inbox) -> None:
        self.layer = layer
        self.subscriber = subscriber
        self.channel = channel
        self.queue = queue

    async def get(self, timeout: float) -> Batch | None:
        raw = await self.queue.get(timeout)
        if raw is None:
            return None
        return [tuple(event) for event in self.layer.deserialize(raw).get("events", [])]

    async def close(self) -> None:
        self.subscriber.unsubscribe(self.channel, self.queue)


def _pubsub_loop_layer(layer: Any) -> Any:
    """The running loop's channels_redis PubSub layer behind ``layer``, or None for other layers."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # pragma: no cover - channels_redis is a dependency
        return None
    if type(layer) is not RedisPubSubChannelLayer:
        return None
    loop_layer = layer._get_layer()
    shards = getattr(loop_layer, "_shards", None)
    if not shards or not all(isinstance(getattr(shard, "host", None), dict) for shard in shards):
        return None  # not the layout this module reads (hosts, shards, group channel names)
    return loop_layer


class _Publisher:
    """The PUBLISHes of one event loop's PubSub layer, pipelined: one round trip at a time,
    carrying everything queued while the previous one was in flight (in order).

    A publish that finds nothing in flight sends its own round trip at once, from its caller:
    handed to a task it would wait for the event loop's next turn, behind whatever else was
    ready then (at one client: the rest of the stream and its finish, ~1 ms before the first
    token left the worker)."""

    def __init__(self, loop_layer: Any) -> None:
        self.loop_layer = loop_layer
        self.queued: list[tuple[str, bytes, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        self.sending = False

    async def publish(self, channel: str, payload: bytes) -> None:
        if not self.sending and self.task is None:
            self.sending = True
            try:
                await self._send([(channel, payload)])
            finally:
                self.sending = False
                if self.queued:  # what came meanwhile: the next round trip, from a task
                    self.task = asyncio.get_running_loop().create_task(self._run())
            return
        future = asyncio.get_running_loop().create_future()
        self.queued.append((channel, payload, future))
        if self.task is None and not self.sending:
            self.task = asyncio.get_running_loop().create_task(self._run())
        await future

    async def _send(self, messages: list[tuple[str, bytes]]) -> None:
        """One pipeline per shard with the PUBLISHes of ``messages``, in order."""
        by_shard: dict[Any, list[tuple[str, bytes]]] = {}
        for channel, payload in messages:
            by_shard.setdefault(self.loop_layer._get_shard(channel), []).append((channel, payload))
        for shard, sent in by_shard.items():
            shard._ensure_redis()
            pipe = shard._redis.pipeline(transaction=False)
            for channel, payload in sent:
                pipe.publish(channel, payload)
            await pipe.execute()

    async def _run(self) -> None:
        try:
            while self.queued:
                work, self.queued = self.queued, []
                try:
                    await self._send([(channel, payload) for channel, payload, _ in work])
                except asyncio.CancelledError:
                    for _, _, future in work + self.queued:
                        future.cancel()
                    self.queued = []
                    raise
                except Exception as exc:  # noqa: BLE001 - each publisher gets the failure
                    for _, _, future in work:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, _, future in work:
                    if not future.done():
                        future.set_result(None)
        finally:
            self.task = None


_publishers: weakref.WeakKeyDictionary[Any, _Publisher] = weakref.WeakKeyDictionary()


def _publisher(loop_layer: Any) -> _Publisher | None:
    """The pipelining publisher of a channels_redis PubSub loop layer (None if it lacks what we use)."""
    publisher = _publishers.get(loop_layer)
    if publisher is None:
        shards = getattr(loop_layer, "_shards", None)
        if not shards or not all(hasattr(s, "_ensure_redis") for s in shards):
            return None
        publisher = _publishers[loop_layer] = _Publisher(loop_layer)
    return publisher


_subscribers: weakref.WeakKeyDictionary[Any, Subscriber] = weakref.WeakKeyDictionary()


def _subscriber(loop_layer: Any, channel: str) -> Subscriber:
    """This event loop's subscriber to the Redis host that carries ``channel``."""
    shard = loop_layer._get_shard(channel)
    subscriber = _subscribers.get(shard)
    if subscriber is None:
        subscriber = _subscribers[shard] = Subscriber(shard.host)
    return subscriber


_keepers: dict[int, str] = {}


async def _keep_receiver_subscribed(layer: Any) -> None:
    """Hold one channel open per event loop for the life of the process.

    channels_redis's PubSub receiver sleeps 100 ms between checks while it has no subscription
    at all; between two requests it would have none, and every new stream's first events would
    wait for that sleep. A permanent subscription keeps it blocked on the socket instead.
    """
    key = id(asyncio.get_running_loop())
    if key not in _keepers:
        _keepers[key] = await layer.new_channel()


class ChannelsBus:
    """Publish through the Channels layer: one group per response, batches as messages."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def _layer(self) -> Any:
        from channels.layers import get_channel_layer

        return get_channel_layer(self.alias)

    async def publish(self, response_id: str, batch: Batch) -> None:
        layer = self._layer()
        message = {"type": "events", "events": batch}
        loop_layer = _pubsub_loop_layer(layer)
        publisher = None if loop_layer is None else _publisher(loop_layer)
        if publisher is None:
            await layer.group_send(group_name(response_id), message)
            return
        # What the layer's group_send sends, through the pipelining publisher.
        channel = loop_layer._get_group_channel_name(group_name(response_id))
        await publisher.publish(channel, layer.serialize(message))

    async def subscribe(self, response_id: str) -> Subscription:
        layer = self._layer()
        group = group_name(response_id)
        loop_layer = _pubsub_loop_layer(layer)
        if loop_layer is not None:
            # The group's channel, as the layer's group_send publishes it, on our own receiver.
            channel = loop_layer._get_group_channel_name(group)
            subscriber = _subscriber(loop_layer, channel)
            queue = Inbox()
            await subscriber.subscribe(channel, queue)
            return _PubSubSubscription(layer, subscriber, channel, queue)
        await _keep_receiver_subscribed(layer)
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        return _ChannelSubscription(layer, group, channel)


_local_bus = LocalBus()


def get_bus() -> LocalBus | ChannelsBus:
    """The bus for the configured dispatch: local when loops run in-process."""
    from responses_app.conf import openresponses_settings

    if openresponses_settings.DISPATCH == "inline":
        return _local_bus
    return ChannelsBus()
