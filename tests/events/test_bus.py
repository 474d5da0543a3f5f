"""The Channels bus on channels_redis's PubSub layer, against the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from responses_app.events import bus
from tests.support.production import REDIS_HOST, REDIS_PORT, require_services


@pytest.fixture
def pubsub_bus(monkeypatch: pytest.MonkeyPatch) -> Any:
    require_services()
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(
        hosts=[f"redis://{REDIS_HOST}:{REDIS_PORT}/0"], prefix=f"ortest-bus-{uuid.uuid4().hex[:8]}"
    )
    monkeypatch.setattr(bus.ChannelsBus, "_layer", lambda self: layer)
    return layer


def _subscribed(layer: Any) -> set[str]:
    """The channels of ``layer``'s prefix that Redis has subscribers for."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        return {name.decode() for name in client.pubsub_channels(f"{layer._get_layer().prefix}*")}
    finally:
        client.close()


async def _until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


def test_a_subscription_receives_its_group_and_subscribes_redis_to_the_group_only(pubsub_bus: Any) -> None:
    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        loop_layer = pubsub_bus._get_layer()
        subscription = await channels_bus.subscribe("resp_bus")
        other = await channels_bus.subscribe("resp_other")
        group_channel = loop_layer._get_group_channel_name(bus.group_name("resp_bus"))
        other_channel = loop_layer._get_group_channel_name(bus.group_name("resp_other"))
        await _until(lambda: _subscribed(pubsub_bus) == {group_channel, other_channel}, "subscribed")
        await channels_bus.publish("resp_bus", [(0, "response.created", "{}"), (1, "x", '{"a":1}')])
        assert await subscription.get(5) == [(0, "response.created", "{}"), (1, "x", '{"a":1}')]
        assert await other.get(0.05) is None  # another response's group
        assert await subscription.get(0.05) is None
        await subscription.close()
        await _until(lambda: _subscribed(pubsub_bus) == {other_channel}, "unsubscribed once closed")
        await channels_bus.publish("resp_other", [(3, "y", "{}")])
        assert await other.get(5) == [(3, "y", "{}")]
        await other.close()
        await _until(lambda: _subscribed(pubsub_bus) == set(), "nothing left subscribed")
        assert not bus._subscriber(loop_layer, group_channel).inboxes
        await pubsub_bus.flush()

    asyncio.run(scenario())


def test_two_streams_of_one_response_share_the_channel_until_both_close(pubsub_bus: Any) -> None:
    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        group_channel = pubsub_bus._get_layer()._get_group_channel_name(bus.group_name("resp_two"))
        first = await channels_bus.subscribe("resp_two")
        second = await channels_bus.subscribe("resp_two")
        await channels_bus.publish("resp_two", [(0, "x", "{}")])
        assert await first.get(5) == [(0, "x", "{}")]
        assert await second.get(5) == [(0, "x", "{}")]
        await first.close()
        await channels_bus.publish("resp_two", [(1, "x", "{}")])
        assert await second.get(5) == [(1, "x", "{}")]
        assert await first.get(0.05) is None
        assert _subscribed(pubsub_bus) == {group_channel}
        await second.close()
        await _until(lambda: _subscribed(pubsub_bus) == set(), "unsubscribed once both closed")
        await pubsub_bus.flush()

    asyncio.run(scenario())


def test_a_subscribe_while_redis_is_unreachable_raises_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from redis.exceptions import RedisError

    from tests.support.server import free_port

    layer = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"], prefix="ortest-away")
    monkeypatch.setattr(bus.ChannelsBus, "_layer", lambda self: layer)

    async def scenario() -> None:
        with pytest.raises((RedisError, OSError)):
            await bus.ChannelsBus().subscribe("resp_broken")
        loop_layer = layer._get_layer()
        channel = loop_layer._get_group_channel_name(bus.group_name("resp_broken"))
        subscriber = bus._subscriber(loop_layer, channel)
        assert not subscriber.inboxes and not subscriber.connected

    asyncio.run(scenario())


def test_a_lost_connection_is_opened_again_with_every_channel_subscribed(pubsub_bus: Any) -> None:
    """Redis drops the receiving connection (a restart, a client kill): the streams open then hear
    nothing meanwhile, and every message published once it is back reaches them."""
    import redis

    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        ids = ["resp_lost1", "resp_lost2"]
        subscriptions = [await channels_bus.subscribe(i) for i in ids]
        loop_layer = pubsub_bus._get_layer()
        subscriber = bus._subscriber(loop_layer, loop_layer._get_group_channel_name(bus.group_name(ids[0])))
        host, port = subscriber._writer.get_extra_info("sockname")[:2]
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        try:
            assert client.client_kill(f"{host}:{port}")
        finally:
            client.close()
        channels = {loop_layer._get_group_channel_name(bus.group_name(i)) for i in ids}

        def back() -> bool:
            own = subscriber._writer
            return own is not None and own.get_extra_info("sockname")[1] != port

        await _until(back, "a new connection")
        await _until(lambda: _subscribed(pubsub_bus) == channels, "every channel subscribed again")
        for seq, (response_id, subscription) in enumerate(zip(ids, subscriptions, strict=True)):
            await channels_bus.publish(response_id, [(seq, "x", "{}")])
            assert await subscription.get(5) == [(seq, "x", "{}")]
            await subscription.close()
        await pubsub_bus.flush()

    asyncio.run(scenario())


def test_publishes_that_meet_leave_in_one_pipeline_in_order(
    pubsub_bus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUBLISHes made while a round trip is in flight share the next one; each response's batches
    still arrive in the order they were published, and every publish returns once sent."""
    import redis.asyncio.client

    rounds: list[int] = []
    original = redis.asyncio.client.Pipeline.execute

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        rounds.append(len(self.command_stack))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(redis.asyncio.client.Pipeline, "execute", counted)

    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        ids = [f"resp_pipe{i}" for i in range(5)]
        subscriptions = [await channels_bus.subscribe(i) for i in ids]

        async def publish_all(response_id: str) -> None:
            for seq in range(4):
                await channels_bus.publish(response_id, [(seq, "x", "{}")])

        await asyncio.gather(*(publish_all(i) for i in ids))
        for subscription in subscriptions:
            got = []
            while len(got) < 4:
                batch = await subscription.get(5)
                assert batch is not None, "a published batch never arrived"
                got += [event[0] for event in batch]
            assert got == [0, 1, 2, 3]
            await subscription.close()
        await pubsub_bus.flush()

    asyncio.run(scenario())
    assert sum(rounds) == 20  # every publish was sent…
    assert len(rounds) < 20 and max(rounds) > 1  # …several in one round trip


def test_a_failed_publish_reaches_its_publisher(pubsub_bus: Any) -> None:
    import redis.asyncio.client

    original = redis.asyncio.client.Pipeline.execute

    async def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Redis is away")

    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        subscription = await channels_bus.subscribe("resp_ok")
        await channels_bus.publish("resp_ok", [(0, "x", "{}")])
        redis.asyncio.client.Pipeline.execute = broken  # type: ignore[method-assign]
        try:
            with pytest.raises(ConnectionError):
                await channels_bus.publish("resp_lost", [(0, "x", "{}")])
        finally:
            redis.asyncio.client.Pipeline.execute = original  # type: ignore[method-assign]
        await channels_bus.publish("resp_ok", [(1, "x", "{}")])  # the publisher goes on
        assert await subscription.get(5) == [(0, "x", "{}")]
        assert await subscription.get(5) == [(1, "x", "{}")]
        await subscription.close()
        await pubsub_bus.flush()

    asyncio.run(scenario())


def test_an_unsubscribe_leaves_with_the_next_subscribe_or_after_a_moment(
    pubsub_bus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel no stream follows any more is unsubscribed in the next SUBSCRIBE's write; a
    channel followed again meanwhile stays subscribed and its messages arrive; with no
    subscribe coming the unsubscribe leaves on its own."""
    from responses_app.events import subscriber

    monkeypatch.setattr(subscriber, "UNSUBSCRIBE_DELAY", 30.0)

    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        loop_layer = pubsub_bus._get_layer()

        def channel(response_id: str) -> str:
            return loop_layer._get_group_channel_name(bus.group_name(response_id))

        first = await channels_bus.subscribe("resp_leave1")
        await first.close()
        again = await channels_bus.subscribe("resp_leave1")  # followed again before it left
        await channels_bus.publish("resp_leave1", [(0, "x", "{}")])
        assert await again.get(5) == [(0, "x", "{}")]
        await again.close()
        await _until(lambda: _subscribed(pubsub_bus) == {channel("resp_leave1")}, "still subscribed")
        second = await channels_bus.subscribe("resp_leave2")
        await _until(lambda: _subscribed(pubsub_bus) == {channel("resp_leave2")}, "left with the subscribe")
        monkeypatch.setattr(subscriber, "UNSUBSCRIBE_DELAY", 0.05)
        await second.close()
        await _until(lambda: _subscribed(pubsub_bus) == set(), "left on its own")
        await pubsub_bus.flush()

    asyncio.run(scenario())
