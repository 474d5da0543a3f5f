"""Hosted tools and middleware used by the loop tests."""

from __future__ import annotations

import threading

from responses_app.loop.middleware import LoopContext, LoopMiddleware, StopLoop

_barrier = threading.Barrier(2, timeout=5)


def rendezvous(name: str) -> str:
    """Wait until a second call arrives: succeeds only when two calls run at the same time."""
    try:
        _barrier.wait()
    except threading.BrokenBarrierError:
        _barrier.reset()
        raise RuntimeError("no concurrent call arrived") from None
    return f"met {name}"


class GuardMiddleware(LoopMiddleware):
    """Stops the loop when the user says FORBIDDEN; tags every sample it saw in the instructions."""

    def before_sample(self, context: LoopContext) -> None:
        last = context.model_request.items[-1] if context.model_request.items else {}
        text = " ".join(p.get("text", "") for p in last.get("content") or [] if isinstance(p, dict))
        if "FORBIDDEN" in text:
            raise StopLoop("This request is not allowed here.", code="forbidden_by_policy")
        context.model_request.instructions = (
            f"{context.model_request.instructions or ''}[iteration {context.iteration}]".strip()
        )

    async def after_sample(self, context: LoopContext) -> None:
        for item in context.sample_items:
            if item.get("type") == "function_call" and item.get("name") == "never_allowed":
                raise StopLoop("The model tried a forbidden tool.", code="forbidden_tool")
