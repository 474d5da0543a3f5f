"""Loop middleware: classes named in ``OPENRESPONSES["MIDDLEWARE"]`` with two optional hooks.

``before_sample(context)`` may change ``context.model_request`` (what the model is asked) or
raise :class:`StopLoop`; ``after_sample(context)`` may inspect or change ``context.sample_items``
(the items the model just produced) or raise :class:`StopLoop`. Hooks may be plain or async.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.utils.module_loading import import_string

from providers_app.adapters.base import ModelRequest


class StopLoop(Exception):  # noqa: N818 - it is a signal, not only an error
    """Raised by a middleware hook to end the response as ``failed`` with this message.

    A policy's refusal, not a server bug: before any output the client gets HTTP ``status``
    (403 unless the hook says otherwise).
    """

    def __init__(self, message: str, code: str = "stopped_by_middleware", status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass
class LoopContext:
    response_id: str
    model: str
    provider: str
    iteration: int
    model_request: ModelRequest
    sample_items: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


class LoopMiddleware:
    """Base class (optional): override either hook."""

    def before_sample(self, context: LoopContext) -> None:  # noqa: B027 - optional hook
        pass

    def after_sample(self, context: LoopContext) -> None:  # noqa: B027 - optional hook
        pass


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> list[Any]:
    return [import_string(path)() for path in paths]


def loop_middleware() -> list[Any]:
    from responses_app.conf import openresponses_settings

    return _load(tuple(openresponses_settings.MIDDLEWARE or []))


async def call_hook(middleware: list[Any], hook: str, context: LoopContext) -> None:
    for instance in middleware:
        method = getattr(instance, hook, None)
        if method is None:
            continue
        result = method(context)
        if inspect.isawaitable(result):
            await result
