"""Celery messages pushed with one LPUSH: the message kombu sends, consumed by a real Celery worker.

Against the real Redis (skipped without it, failed under ``CI=true``): a Celery app configured
as the site's (``CELERY_*`` settings) with its broker on Redis and a queue of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
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


# A default message, one with a priority (kombu's priority queue suffix) and one under a key prefix.
MESSAGE_CASES = pytest.mark.parametrize(
    ("options", "transport_options", "suffix"),
    [
        ({}, {}, ""),
        ({"priority": 5}, {}, "\x06\x163"),
        ({}, {"global_keyprefix": "orprefix:"}, ""),
    ],
    ids=["default", "priority", "global-keyprefix"],
)


@MESSAGE_CASES
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


@MESSAGE_CASES
def test_a_message_from_the_template_is_the_one_kombu_pushes(
    redis_client: Any, queue: str, options: dict, transport_options: dict, suffix: str
) -> None:
    """After Celery built one message of a task, the next ones are filled in from it: the same
    message kombu pushes for their own arguments, each with a new task id and delivery tag."""
    app = make_app(queue, **transport_options)
    task = app.tasks[TASK]
    prefix = transport_options.get("global_keyprefix", "")
    first_key, first = celery_redis.message(task, ("resp_first",), ignore_result=True, **options)
    assert list(celery_redis._templates[app].values()) != [None]  # the first became a template
    seen = {json.loads(first)["headers"]["id"]}
    for args in (("resp_second",), ("resp_third",)):
        task.apply_async(args, ignore_result=True, **options)  # kombu's own publish
        kombu_message = pop(redis_client, prefix + queue + suffix)
        key, payload = celery_redis.message(task, args, ignore_result=True, **options)
        assert key == first_key == prefix + queue + suffix
        ours = json.loads(payload)
        assert list(ours) == list(kombu_message)
        assert list(ours["properties"]) == list(kombu_message["properties"])
        assert list(ours["headers"]) == list(kombu_message["headers"])
        assert normalized(ours) == normalized(kombu_message)
        assert ours["headers"]["id"] not in seen
        seen.add(ours["headers"]["id"])
        assert ours["properties"]["delivery_tag"] != kombu_message["properties"]["delivery_tag"]


def test_a_message_with_own_headers_is_the_one_kombu_pushes_and_the_worker_reads_them(
    redis_client: Any, queue: str
) -> None:
    """A message with a header of its own (the start a loop's message carries): filled in from a
    template like the others, the same message kombu pushes with that header, and a Celery worker
    sees the header on the request its ``task_received`` gets."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_received

    app = make_app(queue)
    task = app.tasks[TASK]
    header = "openresponses_start"
    celery_redis.message(task, ("resp_first",), headers={header: '{"a":1}'}, ignore_result=True)
    assert [t for t in celery_redis._templates[app].values() if t is not None]  # it became a template
    for value in ('{"b":2}', '{"c":"quote \\" and unicode é"}'):
        task.apply_async(("resp_h",), ignore_result=True, headers={header: value})  # kombu's own publish
        kombu_message = pop(redis_client, queue)
        key, payload = celery_redis.message(task, ("resp_h",), headers={header: value}, ignore_result=True)
        ours = json.loads(payload)
        assert key == queue and list(ours["headers"]) == list(kombu_message["headers"])
        assert normalized(ours) == normalized(kombu_message) and ours["headers"][header] == value
    seen: list[Any] = []

    def on_received(request: Any = None, **_: Any) -> None:
        seen.append(request.request_dict.get(header))

    task_received.connect(on_received, weak=False)
    received.clear()
    arrived.clear()
    try:
        asyncio.run(
            celery_redis.apply_async(task, ("resp_carried",), ignore_result=True, headers={header: "{}"})
        )
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
        ):
            deadline = time.monotonic() + 20
            while not received and time.monotonic() < deadline:
                arrived.wait(0.5)
    finally:
        task_received.disconnect(on_received)
    assert received == [("resp_carried",)] and "{}" in seen


def test_what_a_template_cannot_fill_is_built_by_celery(queue: str) -> None:
    """Time-dependent options (an expiry), arguments Celery would repr otherwise, a changed
    configuration: Celery builds the message."""
    app = make_app(queue)
    task = app.tasks[TASK]
    _, first = celery_redis.message(task, ("resp_a",), ignore_result=True, expires=60)
    _, second = celery_redis.message(task, ("resp_b",), ignore_result=True, expires=60)
    assert json.loads(first)["headers"]["expires"] and json.loads(second)["headers"]["expires"]
    assert celery_redis._templates.get(app, {}) == {}
    _, odd = celery_redis.message(task, ("résumé",), ignore_result=True)
    assert json.loads(odd)["headers"]["argsrepr"] == "('résumé',)"
    assert celery_redis._templates.get(app, {}) == {}
    celery_redis.message(task, ("resp_c",), ignore_result=True)
    assert celery_redis._templates[app]
    app.conf.task_default_queue = f"{queue}-other"  # Celery reads its configuration anew…
    from django.test.signals import setting_changed

    setting_changed.send(sender=None, setting="CELERY_TASK_DEFAULT_QUEUE", value=None, enter=True)
    assert app not in celery_redis._templates  # …and so do the templates


def test_a_celery_worker_runs_the_pushed_task(redis_client: Any, queue: str) -> None:
    from celery.contrib.testing.worker import start_worker

    app = make_app(queue)
    task = app.tasks[TASK]
    received.clear()
    arrived.clear()
    asyncio.run(celery_redis.apply_async(task, ("resp_pushed",), ignore_result=True))
    asyncio.run(celery_redis.apply_async(task, ("resp_templated",), ignore_result=True))
    assert redis_client.llen(queue) == 2  # pushed (the second from the template), not yet consumed
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        deadline = time.monotonic() + 20
        while len(received) < 2 and time.monotonic() < deadline:
            arrived.wait(0.5)
    assert sorted(received) == [("resp_pushed",), ("resp_templated",)]
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
