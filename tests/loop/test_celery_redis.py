"""Celery messages pushed with one LPUSH: the message kombu sends, consumed by a real Celery worker.

Against the real Redis (skipped without it, failed under ``CI=true``): a Celery app configured
as the site's (``CELERY_*`` settings) with its broker on Redis and a queue of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from typing import Any

import pytest
from celery import Celery
from celery.signals import before_task_publish

from responses_app.loop.supervision import celery_redis
from tests.support.production import REDIS_HOST, REDIS_PORT

REDIS = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
TASK = "responses_app.tasks.run_response"
received: list[tuple[str, ...]] = []
arrived = threading.Event()


def _record(*args: str) -> None:
    received.append(args)
    arrived.set()


def make_app(queue: str, **transport_options: Any) -> Celery:
    app = Celery(f"openresponses-test-{queue}", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(
        broker_url=REDIS,
        task_default_queue=queue,
        broker_transport_options=transport_options,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)(_record)
    return app


def pop(redis_client: Any, key: str) -> dict[str, Any]:
    raw = redis_client.rpop(key)
    assert raw is not None, f"nothing on {key!r}"
    return json.loads(raw)


def normalized(message: dict[str, Any]) -> dict[str, Any]:
    """The message with what is new per message (task id, delivery tag) replaced by placeholders."""
    message = json.loads(json.dumps(message))
    task_id = message["headers"]["id"]
    for name in ("id", "root_id"):
        assert message["headers"][name] == task_id
        message["headers"][name] = "<task id>"
    assert message["properties"]["correlation_id"] == task_id
    message["properties"]["correlation_id"] = "<task id>"
    uuid.UUID(message["properties"]["delivery_tag"])
    message["properties"]["delivery_tag"] = "<tag>"
    return message


@pytest.mark.parametrize(
    ("options", "transport_options", "suffix"),
    [
        ({}, {}, ""),
        ({"priority": 5}, {}, "\x06\x163"),
        ({}, {"global_keyprefix": "orprefix:"}, ""),
    ],
    ids=["default", "priority", "global-keyprefix"],
)
def test_the_pushed_message_is_the_one_kombu_pushes(
    redis_client: Any, queue: str, options: dict, transport_options: dict, suffix: str
) -> None:
    app = make_app(queue, **transport_options)
    task = app.tasks[TASK]
    task.apply_async(("resp_same",), ignore_result=True, **options)  # kombu's own publish
    prefix = transport_options.get("global_keyprefix", "")
    kombu_message = pop(redis_client, prefix + queue + suffix)
    key, payload = celery_redis.capture(task, ("resp_same",), ignore_result=True, **options)
    assert key == prefix + queue + suffix
    ours = json.loads(payload)
    assert list(ours) == list(kombu_message)
    assert list(ours["properties"]) == list(kombu_message["properties"])
    assert list(ours["headers"]) == list(kombu_message["headers"])
    assert normalized(ours) == normalized(kombu_message)
    body = json.loads(base64.b64decode(ours["body"]))
    assert body == [["resp_same"], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert ours["headers"]["task"] == TASK and ours["headers"]["ignore_result"] is True
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}


def test_a_celery_worker_runs_the_pushed_task(redis_client: Any, queue: str) -> None:
    from celery.contrib.testing.worker import start_worker

    app = make_app(queue)
    task = app.tasks[TASK]
    received.clear()
    arrived.clear()
    asyncio.run(celery_redis.apply_async(task, ("resp_pushed",), ignore_result=True))
    assert redis_client.llen(queue) == 1  # pushed, not yet consumed
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        assert arrived.wait(20), "the worker never ran the task"
    assert received == [("resp_pushed",)]
    assert redis_client.llen(queue) == 0


def test_what_is_not_reproduced_takes_apply_async() -> None:
    app = make_app("ortest-unused")
    assert celery_redis.broker_url(app) == REDIS
    other = make_app("ortest-unused")
    other.conf.broker_url = "memory://"
    assert celery_redis.broker_url(other) is None

    def receiver(**kwargs: Any) -> None:
        pass

    before_task_publish.connect(receiver)
    try:
        assert celery_redis.broker_url(app) is None
    finally:
        before_task_publish.disconnect(receiver)
    with pytest.raises(celery_redis.Unsupported):
        celery_redis.CapturingProducer({}).publish({}, routing_key="q", exchange="named")


def test_a_queue_with_x_expires_is_published_by_kombu_once(redis_client: Any, queue: str) -> None:
    from kombu import Queue

    app = make_app(queue)
    app.conf.task_queues = [Queue(queue, expires=60)]
    task = app.tasks[TASK]
    with pytest.raises(celery_redis.Unsupported):
        celery_redis.capture(task, ("resp_expiring",), ignore_result=True)
    asyncio.run(celery_redis.apply_async(task, ("resp_expiring",), ignore_result=True))
    assert redis_client.llen(queue) == 1
    assert 0 < redis_client.pttl(queue) <= 60_000  # kombu's own publish refreshed the expiry
    assert pop(redis_client, queue)["headers"]["argsrepr"] == "('resp_expiring',)"
