"""Celery task messages pushed onto a Redis broker with one async command from the event loop.

``apply_async`` on the Redis transport blocks the event loop on a producer from the pool, a
channel and a client per message, then LPUSHes. Here Celery still builds the message itself
(``Task.apply_async`` with a producer that only captures what kombu's ``Producer.publish`` is
handed), this module wraps it as kombu's Redis channel would (the same envelope: base64 body,
``delivery_info``, ``delivery_tag``, the priority's list key and the transport's
``global_keyprefix``), and one ``LPUSH`` on the process's shared ``redis.asyncio`` client sends
it. Any stock Celery worker consumes it. Whatever this module does not reproduce (another
transport, a named exchange, queues with ``x-expires``, publish signals, eager mode) takes
``apply_async`` as before.

Celery's message building costs ~0.6 ms of CPU per message (its configuration is read through
Django's settings at every lookup). The messages of one task with the same options differ only
in the task id, the delivery tag, the arguments and the values of their own headers (``headers=``,
by name), so the first one Celery builds becomes a template (:func:`message`): checked to be
exactly that, then filled in for the next ones.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import weakref
from bisect import bisect
from collections.abc import Iterator
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

logger = logging.getLogger(__name__)

#: The Redis transport's separator between a queue's name and its priority (kombu's ``Channel.sep``).
PRIORITY_SEP = "\x06\x16"
#: The Celery configuration read once per app (it goes through Django's settings at each read).
_broker_urls: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()
#: Message templates per app: (task name, options, arity, thread oid: the reply_to) -> _Template,
#: or None (Celery builds each).
_templates: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], _Template | None]] = (
    weakref.WeakKeyDictionary()
)
#: Options that are the same in every message they are given for (no time, no links, no ids).
TEMPLATE_OPTIONS = frozenset({"ignore_result", "priority", "queue"})
#: Longest argument repr filled in (Celery's ``saferepr`` shortens long ones).
TEMPLATE_REPR_MAX = 256


class Unsupported(Exception):
    """The message needs something kombu's Redis channel does and this module does not."""


class _Connection:
    """What Celery asks of a producer's connection while it sends."""

    @contextlib.contextmanager
    def _reraise_as_library_errors(self) -> Iterator[None]:
        yield


class CapturingProducer:
    """A stand-in for kombu's ``Producer``: ``publish`` builds the Redis channel's message, sends nothing."""

    def __init__(self, transport_options: dict[str, Any]) -> None:
        self.connection = _Connection()
        self.options = transport_options
        self.captured: tuple[str, str] | None = None

    def publish(
        self,
        body: Any,
        routing_key: str | None = None,
        delivery_mode: Any = None,
        mandatory: bool = False,
        immediate: bool = False,
        priority: int = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
        headers: dict[str, Any] | None = None,
        compression: str | None = None,
        exchange: Any = None,
        retry: bool = False,
        retry_policy: dict[str, Any] | None = None,
        declare: list[Any] | None = None,
        expiration: float | None = None,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **properties: Any,
    ) -> None:
        """kombu's ``Producer.publish`` + ``Channel.prepare_message`` + ``basic_publish`` on the
        anonymous exchange (``routing_key`` is the queue), as the Redis transport does them."""
        from kombu import Exchange, Queue
        from kombu.compression import compress
        from kombu.entity import maybe_delivery_mode
        from kombu.serialization import dumps
        from kombu.utils.json import dumps as json_dumps
        from kombu.utils.uuid import uuid

        if getattr(exchange, "name", exchange) or not routing_key:
            raise Unsupported("a named exchange (kombu looks its bindings up in Redis)")
        for entity in declare or ():
            if isinstance(entity, Queue) and (
                entity.expires or (entity.queue_arguments or {}).get("x-expires")
            ):
                raise Unsupported("a queue with x-expires (kombu refreshes its expiry on publish)")
        headers = {} if headers is None else headers
        # Producer.publish: the anonymous exchange inherits the producer's default Exchange('').
        properties["delivery_mode"] = maybe_delivery_mode(delivery_mode or Exchange("").delivery_mode)
        if expiration is not None:
            properties["expiration"] = str(int(expiration * 1000))
        if not content_type:
            content_type, content_encoding, body = dumps(body, serializer=serializer)
        elif isinstance(body, str):
            content_encoding = content_encoding or "utf-8"
            body = body.encode(content_encoding)
        elif not content_encoding:
            content_encoding = "binary"
        if compression:
            body, headers["compression"] = compress(body, compression)
        reply_to = properties.get("reply_to")
        if isinstance(reply_to, Queue):
            properties["reply_to"] = reply_to.name
        # Channel.prepare_message
        properties.setdefault("delivery_info", {})
        properties.setdefault("priority", priority or 0)
        message = {
            "body": body,
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers or {},
            "properties": properties,
        }
        # Channel.basic_publish (_inplace_augment_message), then the Redis Channel's _put
        body_encoding = self.options.get("body_encoding", "base64")
        message["body"] = _encode_body(message["body"], body_encoding)
        properties.update(body_encoding=body_encoding, delivery_tag=uuid())
        properties["delivery_info"].update(exchange="", routing_key=routing_key)
        self.captured = (queue_key(routing_key, properties, self.options), json_dumps(message))


def _encode_body(body: Any, encoding: str | None) -> Any:
    if encoding and encoding.lower() != "utf-8":
        from kombu.transport.virtual.base import Channel

        return Channel.codecs[encoding].encode(body)
    return body


def queue_key(queue: str, properties: dict[str, Any], options: dict[str, Any]) -> str:
    """The Redis list of ``queue`` for the message's priority, with the global key prefix (kombu's
    ``_get_message_priority`` and ``_q_for_pri``)."""
    from kombu.transport.redis import PRIORITY_STEPS

    try:
        priority = max(min(int(properties["priority"]), 9), 0)
    except (TypeError, ValueError, KeyError):
        priority = 0
    steps = options.get("priority_steps") or PRIORITY_STEPS
    step = steps[bisect(steps, priority) - 1]
    key = f"{queue}{PRIORITY_SEP}{step}" if step else queue
    return str(options.get("global_keyprefix") or "") + key


def broker_url(app: Any) -> str | None:
    """The Redis URL to push to, or None when the broker is anything else (or several URLs, TLS
    options, eager mode, sent events) or publish signals have receivers (they expect the publish)."""
    from celery.signals import after_task_publish, before_task_publish

    if before_task_publish.receivers or after_task_publish.receivers:
        return None
    try:
        return _broker_urls[app]
    except KeyError:
        pass
    url: str | None = str(app.conf.broker_write_url or app.conf.broker_url or "")
    if (
        not url.startswith(("redis://", "rediss://"))
        or ";" in url
        or app.conf.broker_use_ssl
        or app.conf.task_always_eager
        or app.conf.task_send_sent_event
    ):
        url = None
    _broker_urls[app] = url
    return url


def capture(task: Any, args: tuple[Any, ...], **options: Any) -> tuple[str, str]:
    """The Redis list key and the message ``task.apply_async(args, **options)`` would push."""
    producer = CapturingProducer(dict(task.app.conf.broker_transport_options or {}))
    task.apply_async(args, producer=producer, **options)
    if producer.captured is None:
        raise Unsupported("Celery sent nothing through the producer")
    return producer.captured


class _Template:
    """A captured message of one task and set of options, with its per-message parts left out."""

    __slots__ = ("key", "message", "embed")

    def __init__(self, key: str, message: dict[str, Any], embed: Any) -> None:
        self.key = key
        self.message = message
        self.embed = embed

    def fill(self, args: tuple[Any, ...], extra: dict[str, Any] | None = None) -> tuple[str, str]:
        """The message of ``args`` with the own headers ``extra`` (the same names as the template's)."""
        from kombu.utils.json import dumps
        from kombu.utils.uuid import uuid

        task_id = uuid()
        template = self.message
        headers = dict(template["headers"], **(extra or {}), id=task_id, root_id=task_id, argsrepr=repr(args))
        properties = dict(template["properties"], correlation_id=task_id, delivery_tag=uuid())
        properties["delivery_info"] = dict(properties["delivery_info"])
        body = json.dumps([list(args), {}, self.embed]).encode()
        message = dict(template, body=base64.b64encode(body).decode(), headers=headers, properties=properties)
        return self.key, dumps(message)


def _plain_args(args: tuple[Any, ...]) -> bool:
    """Arguments whose ``repr`` is Celery's ``saferepr`` and whose JSON is kombu's."""
    return (
        type(args) is tuple
        and all(type(a) is int or (type(a) is str and a.isascii() and a.isprintable()) for a in args)
        and len(repr(args)) <= TEMPLATE_REPR_MAX
    )


def _template_of(
    key: str, payload: str, args: tuple[Any, ...], extra: dict[str, Any] | None = None
) -> _Template | None:
    """The template of a captured message, if it is what :meth:`_Template.fill` makes of ``args``
    and the own headers ``extra``."""
    message = json.loads(payload)
    headers, properties = message.get("headers") or {}, message.get("properties") or {}
    task_id = headers.get("id")
    if not (
        task_id
        and headers.get("root_id") == task_id
        and properties.get("correlation_id") == task_id
        and headers.get("parent_id") is None
        and headers.get("group") is None
        and headers.get("eta") is None
        and headers.get("expires") is None
        and headers.get("argsrepr") == repr(args)
        and headers.get("kwargsrepr") == "{}"
        and message.get("content-type") == "application/json"
        and message.get("content-encoding") == "utf-8"
        and properties.get("body_encoding") == "base64"
        and isinstance(properties.get("delivery_info"), dict)
    ):
        return None
    try:
        body = json.loads(base64.b64decode(message["body"]))
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(body, list) and len(body) == 3 and body[0] == list(args) and body[1] == {}):
        return None
    template = _Template(key, message, body[2])
    filled = json.loads(template.fill(args, extra)[1])
    for name in ("id", "root_id"):
        filled["headers"][name] = task_id
    filled["properties"]["correlation_id"] = task_id
    filled["properties"]["delivery_tag"] = properties.get("delivery_tag")
    return template if filled == message else None


def message(
    task: Any, args: tuple[Any, ...], headers: dict[str, Any] | None = None, **options: Any
) -> tuple[str, str]:
    """:func:`capture`, from the task's template once Celery has built one message like it (the
    same options, the same names of own ``headers``)."""
    key: tuple[Any, ...] | None = None
    extra = dict(headers or {})
    if (
        options.keys() <= TEMPLATE_OPTIONS
        and _plain_args(args)
        and task.app.current_worker_task is None  # else Celery sets parent and root ids
    ):
        key = (
            task.name,
            tuple(sorted(options.items())),
            tuple(sorted(extra)),
            len(args),
            task.app.thread_oid,
        )
        templates = _templates.setdefault(task.app, {})
        template = templates.get(key, False)
        if template:
            return template.fill(args, extra)
        if template is None:
            key = None  # its messages are not templates: Celery builds each
    if extra:
        options["headers"] = extra
    captured = capture(task, args, **options)
    if key is not None:
        _templates[task.app][key] = _template_of(*captured, args, extra)
    return captured


def _client(url: str) -> Any:
    from responses_app.gateway.shared_state import async_redis, redis_url

    if url == redis_url():
        return async_redis()  # the process's shared connection pool for this loop
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        import redis.asyncio as aioredis

        client = clients[url] = aioredis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
    return client


class Prepared:
    """A task message built ahead of its :meth:`push` (say, while the row it names is being
    committed): the push is then one ``LPUSH`` and nothing else."""

    __slots__ = ("task", "args", "options", "url", "captured")

    def __init__(self, task: Any, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        self.task, self.args, self.options = task, args, options
        self.url = broker_url(task.app)
        self.captured: tuple[str, str] | None = None
        if self.url is not None:
            try:
                self.captured = message(task, args, **options)
            except Exception as exc:  # noqa: BLE001 - nothing was sent: Celery's own publish instead
                logger.debug("publishing %s through apply_async: %r", task.name, exc)

    async def push(self) -> None:
        """Send the message (once). A failed push (Redis away) falls back to ``apply_async`` with
        its retry policy, on a thread; its error (``kombu.exceptions.OperationalError``) is the
        caller's. A message pushed twice that way starts one loop (a response is started once,
        by a conditional UPDATE)."""
        task, args, options = self.task, self.args, self.options
        if self.url is not None and self.captured is not None:
            key, payload = self.captured
            try:
                await _client(self.url).lpush(key, payload)
                return
            except Exception:  # noqa: BLE001 - Celery's own publish retries and reconnects
                logger.warning("pushing %s to Redis failed; using apply_async", task.name, exc_info=True)
                # On a thread: its retries (and a connect to an unreachable broker) would
                # otherwise hold every request of this event loop meanwhile.
                await asyncio.to_thread(task.apply_async, args, **options)
                return
        task.apply_async(args, **options)


def prepare(task: Any, args: tuple[Any, ...], **options: Any) -> Prepared:
    """The message of ``task.apply_async(args, **options)``, built now and sent by ``push()``."""
    return Prepared(task, args, options)


async def apply_async(task: Any, args: tuple[Any, ...], **options: Any) -> None:
    """``task.apply_async(args, **options)`` as one ``LPUSH`` on a Redis broker; else Celery's own
    (see :meth:`Prepared.push`)."""
    await prepare(task, args, **options).push()


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("CELERY_", "REDIS_URL", "OPENRESPONSES")):
        _broker_urls.clear()
        _templates.clear()
