"""The broker transport's channel (``openresponses_site.broker``) against the real Redis."""

from __future__ import annotations

from typing import Any

from kombu import Connection

from tests.support.production import REDIS_HOST, REDIS_PORT


def test_unacked_index_writes_share_one_client_per_pool(redis_client: Any, queue: str) -> None:
    """kombu made a client per unacked-index write; ours reuses one until the pool is replaced."""
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    with Connection(url, transport="openresponses_site.broker:Transport") as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
            first.hset(f"{queue}-probe", "a", "1")
        given = object()
        with channel.conn_or_acquire(given) as passed:
            assert passed is given
        channel._pool = None  # what kombu does on a lost connection
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.connection_pool is channel.pool
    assert redis_client.hget(f"{queue}-probe", "a") == b"1"
