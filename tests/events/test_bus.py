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
    monkeypatch.setattr(bus, "_keepers", {})
    return layer


def test_a_subscription_receives_its_group_and_subscribes_redis_to_the_group_only(pubsub_bus: Any) -> None:
    async def scenario() -> None:
        channels_bus = bus.ChannelsBus()
        loop_layer = pubsub_bus._get_layer()
        shard = loop_layer._shards[0]
        await bus._keep_receiver_subscribed(pubsub_bus)
        before = set(shard._subscribed_to)  # the keeper channel of this loop
        subscription = await channels_bus.subscribe("resp_bus")
        other = await channels_bus.subscribe("resp_other")
        group_channel = loop_layer._get_group_channel_name(bus.group_name("resp_bus"))
        assert shard._subscribed_to - before == {
            group_channel,
            loop_layer._get_group_channel_name(bus.group_name("resp_other")),
        }
        await channels_bus.publish("resp_bus", [(0, "response.created", "{}"), (1, "x", '{"a":1}')])
        assert await subscription.get(5) == [(0, "response.created", "{}"), (1, "x", '{"a":1}')]
        assert await other.get(0.05) is None  # another response's group
        assert await subscription.get(0.05) is None
        await subscription.close()
        assert group_channel not in shard._subscribed_to
        assert subscription.channel not in loop_layer.channels
        await channels_bus.publish("resp_other", [(3, "y", "{}")])
        assert await other.get(5) == [(3, "y", "{}")]
        await other.close()
        assert shard._subscribed_to == before
        await pubsub_bus.flush()

    asyncio.run(scenario())


def test_a_failed_group_subscribe_leaves_no_channel_behind(
    pubsub_bus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        loop_layer = pubsub_bus._get_layer()
        await bus._keep_receiver_subscribed(pubsub_bus)
        known = set(loop_layer.channels)

        async def broken(group: str, channel: str) -> None:
            raise ConnectionError("Redis is away")

        monkeypatch.setattr(loop_layer, "group_add", broken)
        with pytest.raises(ConnectionError):
            await bus.ChannelsBus().subscribe("resp_broken")
        assert set(loop_layer.channels) == known
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
