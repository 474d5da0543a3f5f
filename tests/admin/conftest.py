"""Admin fixtures: stored responses made through the state machine, and clean caches per test."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """The provider registry and the key cache are per process: never leak rows between tests."""
    from providers_app.registry import registry
    from responses_app.gateway import keys

    registry.reset()
    keys.reset_cache()
    keys._last_used_written.clear()
    yield
    registry.reset()
    keys.reset_cache()


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{next(_ids)}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


@pytest.fixture
def make_response(db: Any) -> Callable[..., Any]:
    """A stored response with the given items, driven to ``status`` through its transitions."""
    from responses_app.models import Response, ResponseEvent, ResponseItem

    def make(
        *,
        status: str = "completed",
        model: str = "mock-1",
        provider: str = "mock",
        inputs: list[dict[str, Any]] | None = None,
        outputs: list[dict[str, Any]] | None = None,
        previous: Any = None,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        created_at: float | None = None,
        wire_log: Any = None,
        events: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> Any:
        now = created_at if created_at is not None else time.time()
        inputs = inputs if inputs is not None else [user_message("Hello there")]
        response = Response(
            id=f"resp_{next(_ids):06d}5Fx",  # "_00…" needs the admin's URL quoting
            model=model,
            provider=provider,
            previous_response=previous,
            ancestor_ids=(list(previous.ancestor_ids) + [previous.id]) if previous else [],
            params={"instructions": None},
            created_at=now,
            search_text="\n".join(
                p["text"] for i in inputs if i.get("type") == "message" for p in i["content"]
            ),
            wire_log=wire_log,
        )
        response.save(force_insert=True)
        if status != "queued":
            response.start()
            response.started_at = now + 0.01
        if status == "completed":
            response.complete()
        elif status == "failed":
            response.fail()
        elif status == "cancelled":
            response.cancel()
        if status not in {"queued", "in_progress"}:
            response.first_token_at = now + 0.2
            response.completed_at = now + 1.5
            response.usage = usage or {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
        response.error = error
        response.save()
        for kind, items in (("input", inputs), ("output", outputs or [])):
            ResponseItem.objects.bulk_create(
                ResponseItem(
                    response=response,
                    kind=kind,
                    position=i,
                    item_id=item.get("id", ""),
                    item_type=item.get("type", ""),
                    data=item,
                )
                for i, item in enumerate(items)
            )
        import json

        ResponseEvent.objects.bulk_create(
            ResponseEvent(
                response=response,
                sequence_number=n,
                type=t,
                payload=json.dumps({"type": t, "sequence_number": n, **data}),
                created_at=now + n * 0.05,
            )
            for n, (t, data) in enumerate(events or [])
        )
        return response

    return make
