"""A real Celery worker (threads pool, Redis) with the loop host: loops outlive their tasks,
at most the worker's concurrency run at once, and a full worker leaves messages on the queue.

Against the real Redis (skipped without it, failed under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from responses_app.loop.supervision.host import LoopHost, prefetch_follows_loops
from tests.support.production import REDIS_HOST, REDIS_PORT

REDIS = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
CONCURRENCY = 2


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_loops_outlive_their_tasks_capped_and_a_full_worker_leaves_messages_queued(
    redis_client: Any, queue: str
) -> None:
    from celery.contrib.testing.worker import start_worker

    host = LoopHost()
    release = threading.Event()
    ran: list[str] = []
    tasks_returned: list[str] = []

    async def loop(name: str, started: Callable[[], None]) -> str:
        started()
        ran.append(name)
        while not release.is_set():
            await asyncio.sleep(0.01)
        return name

    app = Celery(f"openresponses-test-{queue}", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url=REDIS, task_default_queue=queue, worker_hijack_root_logger=False)

    @app.task(name="ortest.loop", acks_late=True, reject_on_worker_lost=True)
    def run_loop(name: str) -> None:
        host.start(lambda started: loop(name, started))
        tasks_returned.append(name)

    for index in range(4):
        run_loop.apply_async((f"loop{index}",))
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=CONCURRENCY,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=10,
        ) as worker:
            host.limit(CONCURRENCY, prefetch_follows_loops(worker.consumer, CONCURRENCY))
            # Two loops run and their tasks returned (acked): no pool thread is held for them.
            assert wait_for(lambda: len(ran) == CONCURRENCY and len(tasks_returned) == CONCURRENCY)
            time.sleep(1.0)  # a consumer that kept fetching would take the rest now
            assert len(ran) == CONCURRENCY and host.running == CONCURRENCY
            assert worker.consumer.qos.value == 1
            # At most one more message is taken (waiting for a slot); the last stays queued.
            assert redis_client.llen(queue) >= 1
            release.set()
            assert wait_for(lambda: len(ran) == 4 and host.wait_idle(timeout=0))
            assert wait_for(lambda: worker.consumer.qos.value == CONCURRENCY)
    finally:
        release.set()
        loop_ = host.loop()
        loop_.call_soon_threadsafe(loop_.stop)
    assert redis_client.llen(queue) == 0
