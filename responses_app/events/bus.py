"""Where published events go: a Channels layer (production) or a local fan-out (in-process).

A subscription yields batches of ``(sequence_number, type, json)``. Readers dedupe by sequence
number and catch up from the store on a gap, so a dropped message is never a lost event.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from .sink import Batch


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


class LocalBus:
    """Fan-out inside one process: the loop and its readers share an event loop."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue]] = defaultdict(set)

    async def publish(self, response_id: str, batch: Batch) -> None:
        for queue in self._queues.get(response_id, ()):
            queue.put_nowait(batch)

    async def subscribe(self, response_id: str) -> Subscription:
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[response_id].add(queue)
        bus = self

        class _Local(Subscription):
            async def get(self, timeout: float) -> Batch | None:
                try:
                    return await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return None

            async def close(self) -> None:
                queues = bus._queues.get(response_id)
                if queues is not None:
                    queues.discard(queue)
                    if not queues:
                        bus._queues.pop(response_id, None)

        return _Local()


class ChannelsBus:
    """Publish through the Channels layer: one group per response, batches as messages."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def _layer(self) -> Any:
        from channels.layers import get_channel_layer

        return get_channel_layer(self.alias)

    async def publish(self, response_id: str, batch: Batch) -> None:
        await self._layer().group_send(group_name(response_id), {"type": "events", "events": batch})

    async def subscribe(self, response_id: str) -> Subscription:
        layer = self._layer()
        channel = await layer.new_channel()
        group = group_name(response_id)
        await layer.group_add(group, channel)

        class _Channel(Subscription):
            async def get(self, timeout: float) -> Batch | None:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), timeout)
                except TimeoutError:
                    return None
                return [tuple(event) for event in message.get("events", [])]

            async def close(self) -> None:
                try:
                    await layer.group_discard(group, channel)
                except Exception:  # noqa: BLE001 - best effort on a broken layer
                    pass

        return _Channel()


_local_bus = LocalBus()


def get_bus() -> LocalBus | ChannelsBus:
    """The bus for the configured dispatch: local when loops run in-process."""
    from ..conf import openresponses_settings

    if openresponses_settings.DISPATCH == "inline":
        return _local_bus
    return ChannelsBus()
